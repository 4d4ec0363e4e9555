"""Configuration durations: the table of forms, rejects, and format/parse round trips."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ciwatch.config import format_duration, parse_duration

# --- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("4h", timedelta(hours=4)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1h 30m", timedelta(hours=1, minutes=30)),
        ("250ms", timedelta(milliseconds=250)),
        ("1d2h3m4s5ms", timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        (".5s", timedelta(milliseconds=500)),
        ("0s", timedelta(0)),
        ("90", timedelta(seconds=90)),
        (" 2.5 ", timedelta(seconds=2.5)),
        (90, timedelta(seconds=90)),
        (0.25, timedelta(milliseconds=250)),
        (timedelta(minutes=2), timedelta(minutes=2)),
    ],
)
def test_parse_duration(text: str | int | float | timedelta, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "bad",
    [
        *["5 minutes", "", "  ", "ms", "1w", "30m1h", "1m1m", "-5s", "1e3s", "5M", "1h30", "s5"],
        *[-1, float("nan"), float("inf"), True, None, [1], {"a": 1}, timedelta(seconds=-1)],
    ],
)
def test_parse_duration_rejects(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(bad)


def test_parse_duration_too_long() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("9999999999d")


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(seconds=60), "1m"),
        (timedelta(hours=24), "1d"),
        (timedelta(days=1, hours=1, seconds=1), "1d1h1s"),
        (timedelta(milliseconds=250), "250ms"),
        (timedelta(seconds=1, milliseconds=500), "1.5s"),
        (timedelta(microseconds=1), "0.000001s"),
        (timedelta(minutes=-5), "-5m"),
    ],
)
def test_format_duration(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10_000))


@given(durations)
def test_format_then_parse_is_identity(td: timedelta) -> None:
    assert parse_duration(format_duration(td)) == td


@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(["d", "h", "m", "s", "ms"])),
        min_size=1,
        max_size=5,
        unique_by=lambda part: part[1],
    )
)
def test_components_add_up_and_format_canonically(parts: list[tuple[int, str]]) -> None:
    order = ["d", "h", "m", "s", "ms"]
    parts.sort(key=lambda part: order.index(part[1]))
    text = "".join(f"{n}{unit}" for n, unit in parts)
    size = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    expected = timedelta(seconds=sum(n * size[unit] for n, unit in parts))
    parsed = parse_duration(text)
    assert abs(parsed - expected) < timedelta(microseconds=2)
    assert parse_duration(format_duration(parsed)) == parsed

"""Time parsing over every timestamp format found in the vendors' own payloads, and the one
duration format every surface shows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ciwatch.timeutil import from_epoch_ms, human_duration, iso_z, parse_time, seconds_between

FIXTURES = Path(__file__).parent / "fixtures"
TIME_KEYS = {
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "completed_at",
    "run_started_at",
    "pushed_at",
    "artifacts_expire_at",
    "build_created_at",
    "build_started_at",
    "build_finished_at",
    "committed_at",
}
MILLIS_KEYS = {"timestamp", "startTimeMillis", "endTimeMillis", "inQueueSince"}


def _walk(value: Any, path: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            sub = f"{path}.{key}"
            if key in TIME_KEYS or key in MILLIS_KEYS:
                if isinstance(item, str | int) and not isinstance(item, bool):
                    found.append((sub, item))
            else:
                found.extend(_walk(item, sub))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_walk(item, f"{path}[{index}]"))
    return found


FIXTURE_TIMES = [
    pytest.param(value, id=f"{path.relative_to(FIXTURES)}:{where}")
    for path in sorted(FIXTURES.rglob("*.json"))
    for where, value in _walk(json.loads(path.read_text()))
]


def test_fixtures_hold_every_documented_format() -> None:
    values = [param.values[0] for param in FIXTURE_TIMES]
    assert "2016-08-12 15:23:28 UTC" in values  # GitLab Pipeline Hook
    assert "2015-12-24T16:51:14.000+01:00" in values  # GitLab API with offset
    assert "2020-01-20T09:42:40.000-08:00" in values  # GitHub with offset
    assert "2020-01-22T19:33:08Z" in values  # GitHub Z
    assert 1461091892486 in values  # Jenkins epoch ms


@pytest.mark.parametrize("value", FIXTURE_TIMES)
def test_every_fixture_timestamp_parses_to_aware_utc(value: str | int) -> None:
    parsed = parse_time(value)
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(0)
    # Plausible, not 1970 or the far future (seconds read as ms or the reverse). The vendors'
    # examples include repositories created in 2013 (octokit check_run/requested_action).
    assert 2008 <= parsed.year <= 2100


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2016-08-12 15:23:28 UTC", datetime(2016, 8, 12, 15, 23, 28, tzinfo=UTC)),
        ("2015-12-24T16:51:14.000+01:00", datetime(2015, 12, 24, 15, 51, 14, tzinfo=UTC)),
        ("2022-09-21T01:05:07.200Z", datetime(2022, 9, 21, 1, 5, 7, 200000, tzinfo=UTC)),
        ("2020-01-20T09:42:40.000-08:00", datetime(2020, 1, 20, 17, 42, 40, tzinfo=UTC)),
        ("2020-01-22T19:33:08Z", datetime(2020, 1, 22, 19, 33, 8, tzinfo=UTC)),
        (1461091892486, datetime(2016, 4, 19, 18, 51, 32, 486000, tzinfo=UTC)),
        ("1461091892486", datetime(2016, 4, 19, 18, 51, 32, 486000, tzinfo=UTC)),
        (1461091892, datetime(2016, 4, 19, 18, 51, 32, tzinfo=UTC)),
        ("2021-03-04T05:06:07.123456789Z", datetime(2021, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)),
        ("2016-08-12T15:23:28", datetime(2016, 8, 12, 15, 23, 28, tzinfo=UTC)),
    ],
)
def test_known_values(text: str | int, expected: datetime) -> None:
    assert parse_time(text) == expected


def test_offsets_align_to_the_same_instant() -> None:
    # The same GitHub job step appears in both forms in the fixtures.
    assert parse_time("2020-01-20T09:44:39.000-08:00") == parse_time("2020-01-20T17:44:39Z")


def test_jenkins_millis() -> None:
    assert from_epoch_ms(1413459910289) == datetime(2014, 10, 16, 11, 45, 10, 289000, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_empty_is_none(value: str | None) -> None:
    assert parse_time(value) is None


@pytest.mark.parametrize("value", ["yesterday", "2016-13-45", "12:00", True])
def test_garbage_raises_with_the_value(value: str | bool) -> None:
    with pytest.raises(ValueError, match="not a timestamp"):
        parse_time(value)


@given(st.datetimes(timezones=st.timezones(), allow_imaginary=False))
def test_iso_round_trip(value: datetime) -> None:
    text = iso_z(value)
    assert text is not None and text.endswith("Z")
    assert parse_time(text) == value


@given(st.integers(min_value=-(14 * 60), max_value=14 * 60))
def test_any_offset_is_normalised(minutes: int) -> None:
    local = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(minutes=minutes)))
    parsed = parse_time(local.isoformat())
    assert parsed == local
    assert parsed is not None and parsed.tzinfo is UTC


def test_seconds_between() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    assert seconds_between(start, start + timedelta(seconds=90)) == 90.0
    assert seconds_between(start + timedelta(seconds=5), start) == 0.0
    assert seconds_between(None, start) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (59.4, "59s"),
        (59.6, "1m 00s"),  # rounded before the units are chosen: never "60s"
        (60, "1m 00s"),
        (185, "3m 05s"),
        (290, "4m 50s"),
        (3600, "1h 00m"),
        (7440, "2h 04m"),
        (86399, "23h 59m"),
        (86400, "1d 0h"),
        (30 * 3600, "1d 6h"),  # the dashboard used to say "30h 00m", notifications "1d 6h"
        (86400 * 3 + 3600 * 4, "3d 4h"),
        (timedelta(minutes=3, seconds=5), "3m 05s"),
        (timedelta(days=2), "2d 0h"),
    ],
)
def test_human_duration(value: float | timedelta, text: str) -> None:
    assert human_duration(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "—"),
        (float("nan"), "—"),
        (float("inf"), "—"),
        (float("-inf"), "—"),
        (timedelta(days=400, hours=3), "400d 3h"),
        (-5, "0s"),  # a clock skewed between two CI servers
        (timedelta(seconds=-1), "0s"),
    ],
)
def test_human_duration_edges(value: float | timedelta | None, text: str) -> None:
    assert human_duration(value) == text


@given(st.one_of(st.none(), st.floats(), st.integers(), st.timedeltas()))
def test_human_duration_never_raises(value: float | timedelta | None) -> None:
    text = human_duration(value)
    assert text == "—" or text[0].isdigit()

"""The top-level `timezone` key: an IANA name (zoneinfo), UTC by default; a bad one is a
config problem located at its line, with the closest name when there is one."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from ciwatch.config import parse_settings
from ciwatch.errors import ConfigError


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, env={})
    return caught.value.problems


def test_default_is_utc() -> None:
    settings = parse_settings("database: sqlite:///x.db\n", env={})
    assert settings.timezone == "UTC"
    assert settings.zone == ZoneInfo("UTC")


def test_an_iana_name() -> None:
    settings = parse_settings("timezone: Asia/Shanghai\n", env={})
    assert settings.zone == ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("Asia/Shangai", "unknown time zone 'Asia/Shangai'; did you mean 'Asia/Shanghai'?"),
        ("asia/shanghai", "unknown time zone 'asia/shanghai'; did you mean 'Asia/Shanghai'?"),
        ("Mars/Olympus", "unknown time zone 'Mars/Olympus' (e.g. Asia/Shanghai, UTC)"),
        (
            "../../etc/passwd",
            "'../../etc/passwd' is not an IANA time zone name (e.g. Asia/Shanghai)",
        ),
        ("''", "'' is not an IANA time zone name (e.g. Asia/Shanghai)"),
    ],
)
def test_a_bad_name_is_a_located_problem(value: str, message: str) -> None:
    assert problems(f"database: sqlite:///x.db\ntimezone: {value}\n") == [
        f"ciwatch.yaml:2 timezone: {message}"
    ]

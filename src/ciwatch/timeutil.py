"""Time parsing at the provider edge: every timestamp becomes an aware UTC datetime.

Formats seen in the vendors' payloads (../shared/fixtures):

- GitLab API: ISO 8601 with milliseconds and `Z` or an offset (`2015-12-24T16:51:14.000+01:00`);
- GitLab Pipeline Hook: `2016-08-12 15:23:28 UTC`;
- GitHub: ISO 8601 with `Z` (`2020-01-22T19:33:08Z`) or with an offset
  (`2020-01-20T09:42:40.000-08:00`);
- Jenkins: epoch milliseconds (`1413459910289`).

Every function here raises ValueError (never OverflowError or OSError) for a value no datetime
can hold: `9999-12-31T23:59:59-01:00`, an epoch of `1e20`. `window_problem` is the window the
edge holds every received timestamp to (1970-01-01 to a day past the server's clock).

`human_duration` is how every surface (dashboard, notifications, CLI) writes a length of time;
it never raises.

Pure: no I/O, no clock (the caller passes `now`).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, tzinfo

_UTC_SUFFIX = re.compile(r"\s+(UTC|GMT|Z)$", re.IGNORECASE)
_SPACE_OFFSET = re.compile(r"\s+([+-]\d{2}:?\d{2})$")
_FRACTION = re.compile(r"\.(\d+)")

# The window of a timestamp received from outside (see `window_problem`).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_SLACK = timedelta(days=1)

# Epoch values above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MS_THRESHOLD = 100_000_000_000


def parse_time(value: str | int | float | datetime | None) -> datetime | None:
    """Parse any provider timestamp into an aware UTC datetime; None and "" give None.

    Numbers are epoch seconds, or epoch milliseconds when large (Jenkins). A string without an
    offset is taken as UTC (GitLab hooks, Jenkins), never as local time. Raises ValueError with the
    offending value when it cannot be parsed.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return to_utc(value)
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        return from_epoch(value)
    text = value.strip()
    if not text:
        return None
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return from_epoch(float(text) if "." in text else int(text))
    return _parse_iso(text)


def _parse_iso(text: str) -> datetime:
    original = text
    text = _UTC_SUFFIX.sub("+00:00", text)
    text = _SPACE_OFFSET.sub(r"\1", text)
    if text.endswith(("z", "Z")):
        text = text[:-1] + "+00:00"
    # Python 3.11 accepts 1..6 fractional digits; some servers send 7 or 9 (nanoseconds).
    match = _FRACTION.search(text)
    if match and len(match.group(1)) > 6:
        text = text[: match.start(1)] + match.group(1)[:6] + text[match.end(1) :]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a timestamp: {original!r}") from None
    return to_utc(parsed)


def from_epoch(value: int | float) -> datetime:
    """Epoch seconds, or milliseconds when the value is that large, as an aware UTC datetime."""
    try:
        seconds = value / 1000 if abs(value) >= _MS_THRESHOLD else value
        return _from_seconds(seconds, value)
    except OverflowError:  # an int too large for a float
        raise ValueError(f"not a timestamp: {value!r}") from None


def from_epoch_ms(value: int | float) -> datetime:
    """Epoch milliseconds (Jenkins `timestamp`, wfapi `startTimeMillis`) as aware UTC."""
    try:
        return _from_seconds(value / 1000, value)
    except OverflowError:
        raise ValueError(f"not a timestamp: {value!r}") from None


def _from_seconds(seconds: float, given: int | float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):  # out of range, or NaN
        raise ValueError(f"timestamp out of range: {given!r}") from None


def to_utc(value: datetime) -> datetime:
    """An aware datetime moved to UTC; a naive one is taken to be UTC already. ValueError when
    the instant is outside what a datetime holds (year 9999 at a negative offset)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"timestamp out of range: {value.isoformat()}") from None


def window_problem(value: datetime | None, now: datetime) -> str | None:
    """Why a received timestamp is outside the window `EARLIEST` .. `now + FUTURE_SLACK`, or
    None when it is inside (or None)."""
    if value is None:
        return None
    if value < EARLIEST:
        return f"before {EARLIEST.date().isoformat()}"
    latest = now + FUTURE_SLACK
    if value > latest:
        return f"more than a day past the server's clock ({iso_z(latest)})"
    return None


def iso_z(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z` suffix (the JSON contract of
    docs/architecture.md#http-and-dashboard)."""
    if value is None:
        return None
    text = to_utc(value).isoformat()
    return text.removesuffix("+00:00") + "Z"


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """`end - start` in seconds, or None when either is missing; never negative."""
    if start is None or end is None:
        return None
    return max((end - start) / timedelta(seconds=1), 0.0)


# -- showing times in the configured zone -----------------------------------------------------
# Stored times stay UTC; pages and notifications show them in `Settings.zone` (the `timezone`
# key), converted by zoneinfo, never by the process's local time (`TZ`).


def zone_name(zone: tzinfo) -> str:
    """The zone's IANA name (`Asia/Shanghai`), `UTC` for UTC."""
    return str(getattr(zone, "key", None) or zone.tzname(None) or "UTC")


def utc_offset(when: datetime, zone: tzinfo) -> str:
    """The zone's offset at `when`: `UTC+08:00`, `UTC-03:30`, `UTC`."""
    offset = when.astimezone(zone).utcoffset() or timedelta(0)
    if not offset:
        return "UTC"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{rest:02d}"


def is_utc(zone: tzinfo) -> bool:
    return zone is UTC or getattr(zone, "key", None) == "UTC"


def local_time(when: datetime, zone: tzinfo, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """`when` in `zone` with its abbreviation and offset (`2026-01-05 22:10:00 CST
    (UTC+08:00)`); in UTC just `2026-01-05 14:10:00 UTC`."""
    if is_utc(zone):
        return f"{when.astimezone(UTC):{fmt}} UTC"
    local = when.astimezone(zone)
    name = local.tzname() or ""
    offset = utc_offset(when, zone)
    suffix = f"{name} ({offset})" if name and not name.startswith(("+", "-")) else offset
    return f"{local:{fmt}} {suffix}"


def zone_label(zone: tzinfo, now: datetime) -> str:
    """What a page says its times are in: `Asia/Shanghai (UTC+08:00)`, or `UTC`."""
    return "UTC" if is_utc(zone) else f"{zone_name(zone)} ({utc_offset(now, zone)})"


# -- showing durations ----------------------------------------------------------------------

UNKNOWN_DURATION = "—"


def human_duration(value: timedelta | float | None) -> str:
    """A length of time as people read it, the same on the dashboard, in notifications and in
    the CLI (docs/dashboard.md#durations): `45s`, `3m 05s`, `2h 04m`, `1d 6h`.

    The two largest units, the second zero-padded under a day so that columns line up;
    rounded to the second. None, NaN and infinities are unknown (`—`); a negative length (a
    clock skewed between two CI servers) is `0s`. Never raises.
    """
    if value is None:
        return UNKNOWN_DURATION
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds):
        return UNKNOWN_DURATION
    total = max(round(seconds), 0)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"

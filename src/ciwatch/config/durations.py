"""Durations as written in the configuration: `30s`, `5m`, `4h`, `1d`, `1h30m`, `250ms`.

Pure: no I/O. A bare number (int, float or a numeric string, as `${VAR}` expansion produces) is
seconds. Durations are never negative.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

HINT = "use e.g. 30s, 5m, 4h, 1d"

_US = 1
_MS = 1_000 * _US
_S = 1_000 * _MS
_M = 60 * _S
_H = 60 * _M
_D = 24 * _H
# Largest first: components must appear in this order, each at most once.
_UNITS: tuple[tuple[str, int], ...] = (("d", _D), ("h", _H), ("m", _M), ("s", _S), ("ms", _MS))
_UNIT_RANK = {unit: rank for rank, (unit, _) in enumerate(_UNITS)}
_UNIT_SIZE = dict(_UNITS)
_COMPONENT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|d|h|m|s)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """A configuration duration as a `timedelta`.

    Accepts `timedelta`, a number of seconds, or a string of unit components from largest to
    smallest (`1d`, `4h`, `1h30m`, `90s`, `250ms`, `1.5h`); whitespace between components is
    allowed. Raises ValueError (naming the value) for anything else or a negative duration.
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError(f"{format_duration(value)!r} is negative: durations are 0s or more")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a duration ({HINT}), got {_kind(value)}")
    if isinstance(value, int | float):
        return _from_seconds(value)
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return _from_micro(Decimal(text) * _S, value)
    total = Decimal(0)
    position = 0
    last_rank = -1
    while position < len(text):
        match = _COMPONENT.match(text, position)
        if match is None:
            raise ValueError(f"{value!r} is not a duration ({HINT})")
        rank = _UNIT_RANK[match.group(2)]
        if rank <= last_rank:
            raise ValueError(f"{value!r} is not a duration ({HINT}; largest unit first)")
        last_rank = rank
        total += Decimal(match.group(1)) * _UNIT_SIZE[match.group(2)]
        position = match.end()
    if last_rank < 0:
        raise ValueError(f"{value!r} is not a duration ({HINT})")
    return _from_micro(total, value)


def _kind(value: object) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _from_seconds(value: int | float) -> timedelta:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a duration ({HINT})")
    if value < 0:
        raise ValueError(f"{value!r} is negative: durations are 0s or more")
    try:
        return _from_micro(Decimal(repr(value)) * _S, value)
    except InvalidOperation:  # pragma: no cover - repr of a finite number is always a decimal
        raise ValueError(f"{value!r} is not a duration ({HINT})") from None


def _from_micro(micro: Decimal, original: object) -> timedelta:
    whole = int(micro.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    try:
        return timedelta(microseconds=whole)
    except OverflowError:
        raise ValueError(f"{original!r} is too long a duration") from None


def format_duration(td: timedelta) -> str:
    """The canonical text of a duration, largest units first: 90s -> `1m30s`, 0 -> `0s`.

    Sub-second parts are `ms` when whole milliseconds without seconds (`250ms`), otherwise
    fractional seconds (`1.5s`). `parse_duration(format_duration(td)) == td` for every
    non-negative `td`; a negative one is shown with a leading `-` (for display only).
    """
    micro = td // timedelta(microseconds=1)
    if micro < 0:
        return "-" + format_duration(-td)
    days, micro = divmod(micro, _D)
    hours, micro = divmod(micro, _H)
    minutes, micro = divmod(micro, _M)
    seconds, micro = divmod(micro, _S)
    parts = [f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n]
    if micro == 0:
        if seconds:
            parts.append(f"{seconds}s")
    elif seconds == 0 and micro % _MS == 0:
        parts.append(f"{micro // _MS}ms")
    else:
        parts.append(f"{seconds}.{micro:06d}".rstrip("0") + "s")
    return "".join(parts) or "0s"

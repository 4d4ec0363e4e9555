"""Helpers shared by the provider parsers: decoding with actionable errors, status mapping that
warns once per unknown word, and small time/duration utilities.

Pure apart from logging: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from ciwatch.domain import Status, UnknownStatus
from ciwatch.errors import BadPayload
from ciwatch.timeutil import parse_time

log = logging.getLogger("ciwatch.providers")

Body = bytes | str
"""A raw response or webhook body, as received."""

T = TypeVar("T")

_PREVIEW = 60


class Payload(msgspec.Struct, forbid_unknown_fields=False):
    """Base of every vendor Struct: fields the vendor adds later are ignored, not an error."""


def body_tag(*bodies: bytes) -> str:
    """A short hash of the raw answer(s) of one poll, kept as the target's `etag` by pollers
    whose CI system sends no ETag (or whose answer repeats while nothing changed): an identical
    answer next time is known without decoding it. `b2:` marks it as ours, never sent."""
    return "b2:" + hashlib.blake2b(b"\0".join(bodies), digest_size=12).hexdigest()


def decode(body: Body, type_: type[T], what: str) -> T:
    """Decode `body` as `type_`, mapping msgspec's errors to `BadPayload`.

    `what` names the payload for the message (e.g. "GitLab pipelines list"). The message says
    whether the body was empty, HTML, truncated or of the wrong shape, and carries msgspec's path
    to the offending value (`$[0].status`) so the operator can find it.
    """
    raw = body.encode() if isinstance(body, str) else body
    # A UTF-8 byte order mark is legal in front of JSON from some servers; msgspec rejects it.
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    try:
        return msgspec.json.decode(raw, type=type_)
    except msgspec.ValidationError as exc:
        raise BadPayload(f"{what}: unexpected JSON shape: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise BadPayload(f"{what}: {_describe_decode_error(raw, exc)}") from exc


def _describe_decode_error(raw: bytes, exc: msgspec.DecodeError) -> str:
    stripped = raw.lstrip()
    if not stripped:
        return "the body is empty" + (f" ({len(raw)} bytes of whitespace)" if raw else "")
    if stripped.startswith(b"<"):
        preview = stripped[:_PREVIEW].decode("utf-8", "replace")
        return (
            "the body looks like HTML or XML, not JSON (starts with '<'): a login page, a proxy "
            f"error or a wrong URL? It begins {preview!r}"
        )
    if "truncated" in str(exc):
        return (
            f"the JSON is truncated after {len(raw)} bytes: the connection was probably cut "
            "short; retrying may help"
        )
    return f"not valid JSON: {exc}"


def bad(what: str, problem: str) -> BadPayload:
    """A `BadPayload` for a payload that decoded but cannot be used; the caller raises it."""
    return BadPayload(f"{what}: {problem}")


def time_of(value: str | int | float | None, what: str, field: str) -> datetime | None:
    """`timeutil.parse_time`, with an unparsable value reported as `BadPayload` naming the field."""
    try:
        return parse_time(value)
    except ValueError as exc:
        raise bad(what, f"`{field}` is not a timestamp: {value!r}") from exc


def latest(values: Iterable[datetime | None]) -> datetime | None:
    """The latest of the datetimes present, or None when there is none."""
    present = [value for value in values if value is not None]
    return max(present) if present else None


def millis(value: int | float | None) -> float | None:
    """Milliseconds as seconds; None stays None."""
    return None if value is None else value / 1000


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def logged(mapped: tuple[Status, UnknownStatus | None]) -> Status:
    """The status a provider's `map_status` chose, logging an unknown word once per
    (provider, word) per process.

    The caller keeps the word verbatim in `provider_status`; the mapped status is the safe one
    the provider chose (never success).
    """
    status, unknown = mapped
    if unknown is not None:
        warn_unknown_status(unknown.provider, unknown.word, status)
    return status


def warn_unknown_status(provider: str, word: str, mapped: Status) -> None:
    """Log that `provider` sent an unknown status `word`, once per (provider, word)."""
    key = (provider, word)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(
        "unknown_status provider=%s word=%r mapped_to=%s (kept verbatim in provider_status)",
        provider,
        word,
        mapped.value,
        extra={"provider": provider, "word": word, "mapped_to": mapped.value},
    )


def forget_unknown_statuses() -> None:
    """Forget which unknown words were already logged (for tests)."""
    with _warned_lock:
        _warned.clear()


def check_run_id(what: str, given: str | None, found: Any) -> str:
    """The run id of an item: its own (`found`), which must agree with `given` when both exist."""
    own = None if found is None else str(found)
    if own is None and given is None:
        raise bad(what, "the item names no run and none was given")
    if own is not None and given is not None and own != given:
        raise bad(what, f"item belongs to run {own}, not to the requested run {given}")
    return own if own is not None else str(given)

"""Silences (docs/architecture.md#alerting): mute matching alerts until a time.

A silence is a set of matchers, each a glob on one of `source`, `project`, `ref`, `event`
(a missing key matches anything), and a window `[starts_at, ends_at)`. A silenced alert still
changes state in the store (so lifting the silence does not replay a stale `broken`), but no
outbox row is written for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from fnmatch import fnmatchcase

from ciwatch.config.durations import parse_duration
from ciwatch.store.base import SilenceStore
from ciwatch.store.silences import SilenceRow
from ciwatch.timeutil import to_utc

MATCHER_KEYS = ("source", "project", "ref", "event")
# The longest silence: its end stays a date every store and page can handle.
MAX_SILENCE = timedelta(days=36525)


class SilenceInputError(ValueError):
    """A silence asked for (by the API, the dashboard's form or the CLI) that cannot be stored;
    `field` names the bad input: `matchers`, `duration` or `ends_at`."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def silence_end(now: datetime, *, duration: str | None, ends_at: datetime | None) -> datetime:
    """When a silence starting `now` ends: `now + duration` (e.g. `2h`) or `ends_at` (UTC when
    naive); exactly one of them. SilenceInputError unless it ends after `now` and within
    MAX_SILENCE. The one place the API, the dashboard and the CLI check a silence's window."""
    if (ends_at is None) == (duration is None):
        raise SilenceInputError("ends_at", "give ends_at or duration")
    field = "duration" if duration is not None else "ends_at"
    too_long = f"a silence lasts at most {MAX_SILENCE.days} days"
    try:
        if duration is not None:
            length = parse_duration(duration)
            if length > MAX_SILENCE:
                raise ValueError(too_long)
            end = now + length
        else:
            assert ends_at is not None
            end = to_utc(ends_at)
    except (ValueError, OverflowError) as exc:
        raise SilenceInputError(field, str(exc)) from exc
    if end <= now:
        raise SilenceInputError(field, "the silence must end later")
    if end > now + MAX_SILENCE:
        raise SilenceInputError(field, too_long)
    return end


def given_matchers(matchers: Mapping[str, str | None]) -> dict[str, str]:
    """The matchers that were given (None and "" left out), checked by `check_matchers`;
    SilenceInputError (`matchers`) when none is left or one is unknown."""
    chosen = {key: value for key, value in matchers.items() if value}
    if not chosen:
        raise SilenceInputError("matchers", "give at least one matcher")
    try:
        return check_matchers(chosen)
    except ValueError as exc:
        raise SilenceInputError("matchers", str(exc)) from exc


def check_matchers(matchers: Mapping[str, str]) -> dict[str, str]:
    """The matchers as a plain dict; ValueError for an unknown key or an empty glob."""
    unknown = sorted(set(matchers) - set(MATCHER_KEYS))
    if unknown:
        raise ValueError(f"unknown silence matcher(s) {', '.join(unknown)}; use {MATCHER_KEYS}")
    if any(not value for value in matchers.values()):
        raise ValueError("a silence matcher needs a non-empty glob")
    return dict(matchers)


def matches(matchers: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether every matcher's glob matches the alert's label of the same name."""
    return all(fnmatchcase(labels.get(key, ""), glob) for key, glob in matchers.items())


def silenced(silences: Iterable[SilenceRow], labels: Mapping[str, str], now: datetime) -> bool:
    """Whether any silence in force at `now` matches `labels` (source, project, ref, event)."""
    return any(s.starts_at <= now < s.ends_at and matches(s.matchers, labels) for s in silences)


async def create_silence(
    store: SilenceStore,
    matchers: Mapping[str, str],
    starts_at: datetime,
    ends_at: datetime,
    *,
    created_by: str | None = None,
    comment: str | None = None,
) -> int:
    """Store a silence after checking it; returns its id. ValueError for bad matchers or an
    empty window."""
    if ends_at <= starts_at:
        raise ValueError("a silence must end after it starts")
    return await store.add_silence(
        check_matchers(matchers),
        starts_at,
        ends_at,
        created_by=created_by,
        comment=comment,
    )


async def list_silences(
    store: SilenceStore, *, active_at: datetime | None = None
) -> list[SilenceRow]:
    """Every silence, or those in force at `active_at`, by id."""
    return await store.list_silences(active_at=active_at)


async def delete_silence(store: SilenceStore, silence_id: int) -> bool:
    """Delete a silence; False when there was none with that id."""
    return await store.delete_silence(silence_id)


__all__ = [
    "MATCHER_KEYS",
    "MAX_SILENCE",
    "SilenceInputError",
    "SilenceRow",
    "check_matchers",
    "create_silence",
    "delete_silence",
    "given_matchers",
    "list_silences",
    "matches",
    "silence_end",
    "silenced",
]

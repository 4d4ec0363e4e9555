"""Silences (DESIGN §7): mute matching alerts until a time.

A silence is a set of matchers, each a glob on one of `source`, `project`, `ref`, `event`
(a missing key matches anything), and a window `[starts_at, ends_at)`. A silenced alert still
changes state in the store (so lifting the silence does not replay a stale `broken`), but no
outbox row is written for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from fnmatch import fnmatchcase

from ciwatch.store.alerting import SilenceRow, add_silence, delete_silence, list_silences
from ciwatch.store.sql import SqlStore

MATCHER_KEYS = ("source", "project", "ref", "event")


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
    store: SqlStore,
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
    return await add_silence(
        store,
        check_matchers(matchers),
        starts_at,
        ends_at,
        created_by=created_by,
        comment=comment,
    )


__all__ = [
    "MATCHER_KEYS",
    "SilenceRow",
    "check_matchers",
    "create_silence",
    "delete_silence",
    "list_silences",
    "matches",
    "silenced",
]

"""What the API, the CLI and the dashboard show of alerting: alerts with the delivery outcome of
their newest notice per channel, and silences.

The API and the CLI take JSON-ready dicts (`alert_list`, `silence_to_dict`: times ISO 8601 UTC
with `Z`); the dashboard takes typed views with datetimes and the run each alert is about
(`alerts_overview`, `firing_count`). Also `expire_silence` (end a silence now, keeping it for
`?all=1` / `silence list --all`). The reads are the store's (`AlertStore`, `store/alert_views.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ciwatch.store.alert_views import (
    FAILED,
    PENDING,
    SENT,
    STATES,
    AlertsOverview,
    AlertView,
    Delivery,
    RunRef,
)
from ciwatch.store.base import AlertStore
from ciwatch.store.silences import SilenceRow
from ciwatch.timeutil import iso_z


@dataclass(frozen=True)
class FailingChannel:
    """A channel whose newest notice of some firing alert failed for good: on how many alerts,
    and its newest error."""

    name: str
    alerts: int
    error: str | None
    at: datetime


def failing_channels(firing: Sequence[AlertView]) -> list[FailingChannel]:
    """The channels that failed for good on these alerts, by name."""
    found: dict[str, FailingChannel] = {}
    for alert in firing:
        for delivery in alert.failed_channels:
            seen = found.get(delivery.channel)
            newest = delivery if seen is None or delivery.at >= seen.at else seen
            found[delivery.channel] = FailingChannel(
                delivery.channel,
                1 if seen is None else seen.alerts + 1,
                newest.error,
                newest.at,
            )
    return [found[name] for name in sorted(found)]


def delivery_to_dict(delivery: Delivery) -> dict[str, Any]:
    """A channel's outcome as JSON."""
    return {
        "channel": delivery.channel,
        "event": delivery.event,
        "outcome": delivery.outcome,
        "at": iso_z(delivery.at),
        "attempts": delivery.attempts,
        "error": delivery.error,
    }


def alert_to_dict(view: AlertView) -> dict[str, Any]:
    """An alert as JSON (the shape of `GET /api/v1/alerts`)."""
    return {
        "rule": view.rule,
        "event": view.event,
        "source": view.source,
        "project": view.project,
        "ref": view.ref,
        "state": view.state,
        "first_seen": iso_z(view.first_seen),
        "last_seen": iso_z(view.last_seen),
        "last_notified": iso_z(view.last_notified),
        "channels": [delivery_to_dict(channel) for channel in view.channels],
    }


async def alert_list(
    store: AlertStore, *, state: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Alerts, firing first (newest first_seen first), then resolved ones (most recently seen
    first), at most `limit`; each with its newest notice per channel and that notice's outcome.
    `state` keeps only `firing` or `resolved` ones."""
    return [alert_to_dict(view) for view in await store.alert_views(state=state, limit=limit)]


async def firing_count(store: AlertStore) -> int:
    """How many alerts are firing (one count query, cheap enough for every dashboard page)."""
    return await store.firing_count()


async def alerts_overview(
    store: AlertStore, *, firing_limit: int, history_limit: int
) -> AlertsOverview:
    """Firing alerts (newest first, at most `firing_limit`) with how many fire in all, and the
    `history_limit` most recently resolved ones; each with its newest notice per channel and
    the run it is about. One read transaction."""
    return await store.alerts_overview(firing_limit=firing_limit, history_limit=history_limit)


def silence_to_dict(silence: SilenceRow, now: datetime) -> dict[str, Any]:
    """A silence as JSON, with whether it is in force at `now`."""
    return {
        "id": silence.id,
        "matchers": dict(silence.matchers),
        "starts_at": iso_z(silence.starts_at),
        "ends_at": iso_z(silence.ends_at),
        "created_by": silence.created_by,
        "comment": silence.comment,
        "active": silence.starts_at <= now < silence.ends_at,
    }


async def get_silence(store: AlertStore, silence_id: int) -> SilenceRow | None:
    """One silence by id, or None."""
    return await store.get_silence(silence_id)


async def expire_silence(store: AlertStore, silence_id: int, now: datetime) -> SilenceRow | None:
    """End a silence at `now` (one not yet started ends before it starts); one already over is
    left as it is. Returns the silence afterwards, or None when there is none with that id."""
    return await store.expire_silence(silence_id, now)


__all__ = [
    "FAILED",
    "PENDING",
    "SENT",
    "STATES",
    "AlertView",
    "AlertsOverview",
    "Delivery",
    "FailingChannel",
    "RunRef",
    "alert_list",
    "alert_to_dict",
    "alerts_overview",
    "delivery_to_dict",
    "expire_silence",
    "failing_channels",
    "firing_count",
    "get_silence",
    "silence_to_dict",
]

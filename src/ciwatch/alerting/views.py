"""What the API, the CLI and the dashboard show of alerting: alerts with the delivery outcome of
their newest notice per channel, and silences, as JSON-ready dicts (times ISO 8601 UTC with `Z`).

Also `expire_silence` (end a silence now, keeping it for `?all=1` / `silence list --all`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.alerting.rules import FIRING, RESOLVED
from ciwatch.store.alerting import SilenceRow
from ciwatch.store.sql import SqlStore
from ciwatch.store.tables import alerts, outbox, silences
from ciwatch.timeutil import iso_z

STATES = (FIRING, RESOLVED)
SENT, FAILED, PENDING = "sent", "failed", "pending"


def _outcome(row: Mapping[Any, Any]) -> dict[str, Any]:
    """The delivery outcome of one outbox row: sent, failed (final, with the error) or pending
    (not yet sent; `error` is the last attempt's error while it is being retried)."""
    if row["sent_at"] is not None:
        outcome, at = SENT, row["sent_at"]
    elif row["failed_at"] is not None:
        outcome, at = FAILED, row["failed_at"]
    else:
        outcome, at = PENDING, row["next_attempt_at"]
    payload = row["payload"] or {}
    return {
        "channel": row["channel"],
        "event": payload.get("kind"),
        "outcome": outcome,
        "at": iso_z(at),
        "attempts": row["attempts"],
        "error": row["last_error"],
    }


def _fingerprint(row: Mapping[Any, Any]) -> str:
    return ":".join((row["rule"], row["source"], row["project"], row["ref"]))


async def alert_list(
    store: SqlStore, *, state: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Alerts, firing first (newest first_seen first), then resolved ones (most recently seen
    first), at most `limit`; each with its newest notice per channel and that notice's outcome.
    `state` keeps only `firing` or `resolved` ones."""
    if state is not None and state not in STATES:
        raise ValueError(f"unknown alert state {state!r}; use {' or '.join(STATES)}")
    firing_first = case((alerts.c.state == FIRING, 0), else_=1)
    query = select(alerts).order_by(
        firing_first,
        case((alerts.c.state == FIRING, alerts.c.first_seen), else_=alerts.c.last_seen).desc(),
        alerts.c.id,
    )
    if state is not None:
        query = query.where(alerts.c.state == state)
    if limit is not None:
        query = query.limit(limit)

    async def work(conn: AsyncConnection) -> list[dict[str, Any]]:
        rows = list((await conn.execute(query)).mappings())
        keys = [_fingerprint(row) for row in rows]
        newest: dict[str, dict[str, Mapping[Any, Any]]] = {key: {} for key in keys}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            notices = select(outbox).where(outbox.c.fingerprint.in_(chunk)).order_by(outbox.c.id)
            for notice in (await conn.execute(notices)).mappings():
                newest[notice["fingerprint"]][notice["channel"]] = notice  # the last one wins
        answer = []
        for row, key in zip(rows, keys, strict=True):
            channels = [_outcome(newest[key][name]) for name in sorted(newest[key])]
            latest = max(newest[key].values(), key=lambda n: n["id"], default=None)
            answer.append(
                {
                    "rule": row["rule"],
                    "event": (latest["payload"] or {}).get("kind") if latest else None,
                    "source": row["source"],
                    "project": row["project"],
                    "ref": row["ref"],
                    "state": row["state"],
                    "first_seen": iso_z(row["first_seen"]),
                    "last_seen": iso_z(row["last_seen"]),
                    "last_notified": iso_z(row["last_notified"]),
                    "channels": channels,
                }
            )
        return answer

    return await store.read("alert view", work)


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


def _silence(row: Mapping[Any, Any]) -> SilenceRow:
    return SilenceRow(
        row["id"],
        dict(row["matchers"]),
        row["starts_at"],
        row["ends_at"],
        row["created_by"],
        row["comment"],
    )


async def get_silence(store: SqlStore, silence_id: int) -> SilenceRow | None:
    """One silence by id, or None."""
    query = select(silences).where(silences.c.id == silence_id)

    async def work(conn: AsyncConnection) -> SilenceRow | None:
        row = (await conn.execute(query)).mappings().first()
        return None if row is None else _silence(row)

    return await store.read("silence get", work)


async def expire_silence(store: SqlStore, silence_id: int, now: datetime) -> SilenceRow | None:
    """End a silence at `now` (one not yet started ends before it starts); one already over is
    left as it is. Returns the silence afterwards, or None when there is none with that id."""
    query = select(silences).where(silences.c.id == silence_id)

    async def work(conn: AsyncConnection) -> SilenceRow | None:
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        found = _silence(row)
        if found.ends_at <= now:
            return found
        starts_at = min(found.starts_at, now)
        await conn.execute(
            update(silences)
            .where(silences.c.id == silence_id)
            .values(starts_at=starts_at, ends_at=now)
        )
        return SilenceRow(found.id, found.matchers, starts_at, now, found.created_by, found.comment)

    return await store.write("silence expire", work)

"""The SQL of alerting (DESIGN §7, §13): alert rows with compare-and-set, the transactional
outbox, silences. Functions over `SqlStore`; each call is one transaction.

Why nothing is sent twice by two replicas or after a restart:

- An alert change is a conditional write on the row it was decided from (an INSERT ... ON
  CONFLICT DO NOTHING for a new fingerprint, an UPDATE matching the old `state` and
  `last_notified` otherwise). Only the writer whose condition held gets a row back, and only it
  inserts outbox rows, in the same transaction.
- Outbox rows are unique per (dedup_key, channel); inserts are ON CONFLICT DO NOTHING.
- A delivery worker claims rows with one conditional UPDATE (PostgreSQL: over a
  `FOR UPDATE SKIP LOCKED` selection; SQLite: under BEGIN IMMEDIATE), setting `claimed_by` and a
  lease `claimed_until`; it records the outcome only for rows it still holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.alerting.rules import FIRING, AlertRow, Decision, applied
from ciwatch.store.sql import SqlStore
from ciwatch.store.tables import alerts, outbox, silences


@dataclass(frozen=True)
class OutboxRow:
    """One notification for one channel. `payload` is a serialised notice."""

    id: int
    dedup_key: str
    fingerprint: str
    channel: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None = None
    failed_at: datetime | None = None
    last_error: str | None = None
    claimed_by: str | None = None


@dataclass(frozen=True)
class NewNotice:
    """An outbox row to insert with an alert change: its dedup key, channel, payload and when
    it becomes due (creation + group_wait)."""

    dedup_key: str
    channel: str
    payload: dict[str, Any]
    due: datetime


@dataclass(frozen=True)
class Change:
    """An alert decision and the outbox rows that go with it (none when silenced/unrouted)."""

    decision: Decision
    notices: Sequence[NewNotice]


@dataclass(frozen=True)
class SilenceRow:
    id: int
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str | None
    comment: str | None


def _alert_from_row(row: Mapping[Any, Any]) -> AlertRow:
    return AlertRow(
        row["rule"],
        row["source"],
        row["project"],
        row["ref"],
        row["state"],
        row["first_seen"],
        row["last_seen"],
        row["last_notified"],
        dict(row["payload"] or {}),
    )


async def load_alerts(store: SqlStore, *, firing_only: bool = False) -> list[AlertRow]:
    """Every stored alert (or only the firing ones), by fingerprint."""
    query = select(alerts).order_by(alerts.c.rule, alerts.c.source, alerts.c.project, alerts.c.ref)
    if firing_only:
        query = query.where(alerts.c.state == FIRING)

    async def work(conn: AsyncConnection) -> list[AlertRow]:
        return [_alert_from_row(row) for row in (await conn.execute(query)).mappings()]

    return await store.read("alert list", work)


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def _apply_one(conn: AsyncConnection, dialect: str, change: Change, now: datetime) -> bool:
    decision = change.decision
    row = applied(decision, now)
    values = {
        "state": row.state,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "last_notified": row.last_notified,
        "payload": row.payload,
    }
    rule, source, project, ref = decision.fingerprint
    previous = decision.previous
    if previous is None:
        statement = (
            _insert(dialect)(alerts)
            .values(rule=rule, source=source, project=project, ref=ref, **values)
            .on_conflict_do_nothing(index_elements=["rule", "source", "project", "ref"])
            .returning(alerts.c.id)
        )
    else:
        statement = (
            update(alerts)
            .where(
                (alerts.c.rule == rule)
                & (alerts.c.source == source)
                & (alerts.c.project == project)
                & (alerts.c.ref == ref)
                & (alerts.c.state == previous.state)
                & alerts.c.last_notified.is_not_distinct_from(previous.last_notified)
            )
            .values(**values)
            .returning(alerts.c.id)
        )
    if (await conn.execute(statement)).first() is None:
        return False  # another evaluator changed this alert first: it owns the notification
    for notice in change.notices:
        await conn.execute(
            _insert(dialect)(outbox)
            .values(
                dedup_key=notice.dedup_key,
                fingerprint=":".join(decision.fingerprint),
                channel=notice.channel,
                payload=notice.payload,
                attempts=0,
                next_attempt_at=notice.due,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["dedup_key", "channel"])
        )
    return True


async def apply_changes(store: SqlStore, changes: Sequence[Change], now: datetime) -> list[Change]:
    """Apply alert changes and insert their outbox rows, all in one transaction. A change whose
    row is no longer the one it was decided from is skipped; returns the changes applied."""
    if not changes:
        return []

    async def work(conn: AsyncConnection) -> list[Change]:
        return [c for c in changes if await _apply_one(conn, store.dialect, c, now)]

    return await store.write("alert update", work)


def _outbox_from_row(row: Mapping[Any, Any]) -> OutboxRow:
    return OutboxRow(
        row["id"],
        row["dedup_key"],
        row["fingerprint"],
        row["channel"],
        dict(row["payload"]),
        row["attempts"],
        row["next_attempt_at"],
        row["created_at"],
        row["sent_at"],
        row["failed_at"],
        row["last_error"],
        row["claimed_by"],
    )


PENDING = and_(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None))


async def claim(
    store: SqlStore,
    channel: str,
    worker: str,
    now: datetime,
    *,
    lease: timedelta,
    limit: int,
) -> list[OutboxRow]:
    """Claim up to `limit` due rows of `channel` for `worker` until `now + lease`: pending rows
    whose `next_attempt_at` has passed and that nobody holds (or whose lease expired)."""
    due = (
        select(outbox.c.id)
        .where(
            PENDING
            & (outbox.c.channel == channel)
            & (outbox.c.next_attempt_at <= now)
            & or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now)
        )
        .order_by(outbox.c.next_attempt_at, outbox.c.id)
        .limit(limit)
    )
    if store.dialect == "postgresql":
        due = due.with_for_update(skip_locked=True)

    async def work(conn: AsyncConnection) -> list[OutboxRow]:
        # Two statements, not `id IN (subquery)`: PostgreSQL may re-run a LIMIT subquery per
        # row and claim more (or other) rows than it locked.
        ids = list((await conn.execute(due)).scalars())
        if not ids:
            return []
        statement = (
            update(outbox)
            .where(outbox.c.id.in_(ids) & PENDING)
            .values(claimed_by=worker, claimed_until=now + lease)
            .returning(*outbox.c)
        )
        rows = [_outbox_from_row(row) for row in (await conn.execute(statement)).mappings()]
        return sorted(rows, key=lambda row: row.id)

    return await store.write("outbox claim", work)


async def record(
    store: SqlStore,
    ids: Sequence[int],
    worker: str,
    now: datetime,
    *,
    outcome: str,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> int:
    """Record the outcome of one send for rows `worker` still holds: `sent`, `failed` (final,
    with `error`) or `retry` (at `retry_at`, with `error`). Returns the rows updated."""
    values: dict[str, Any] = {
        "attempts": outbox.c.attempts + 1,
        "claimed_by": None,
        "claimed_until": None,
    }
    if outcome == "sent":
        values["sent_at"] = now
    elif outcome == "failed":
        values.update(failed_at=now, last_error=error)
    elif outcome == "retry":
        if retry_at is None:
            raise ValueError("a retry needs retry_at")
        values.update(next_attempt_at=retry_at, last_error=error)
    else:
        raise ValueError(f"unknown outcome {outcome!r}")
    statement = (
        update(outbox)
        .where(outbox.c.id.in_(list(ids)) & (outbox.c.claimed_by == worker) & PENDING)
        .values(**values)
    )

    async def work(conn: AsyncConnection) -> int:
        return (await conn.execute(statement)).rowcount

    return await store.write("outbox record", work)


async def outbox_rows(store: SqlStore, *, channel: str | None = None) -> list[OutboxRow]:
    """Every outbox row (of one channel), oldest first: for the CLI, the API and tests."""
    query = select(outbox).order_by(outbox.c.id)
    if channel is not None:
        query = query.where(outbox.c.channel == channel)

    async def work(conn: AsyncConnection) -> list[OutboxRow]:
        return [_outbox_from_row(row) for row in (await conn.execute(query)).mappings()]

    return await store.read("outbox list", work)


async def next_due(store: SqlStore, channel: str) -> datetime | None:
    """When the earliest pending row of `channel` becomes due, or None."""
    query = select(outbox.c.next_attempt_at).where(PENDING & (outbox.c.channel == channel))
    query = query.order_by(outbox.c.next_attempt_at).limit(1)

    async def work(conn: AsyncConnection) -> datetime | None:
        value: datetime | None = (await conn.execute(query)).scalar()
        return value

    return await store.read("outbox due", work)


def _silence_from_row(row: Mapping[Any, Any]) -> SilenceRow:
    return SilenceRow(
        row["id"],
        dict(row["matchers"]),
        row["starts_at"],
        row["ends_at"],
        row["created_by"],
        row["comment"],
    )


async def add_silence(
    store: SqlStore,
    matchers: Mapping[str, str],
    starts_at: datetime,
    ends_at: datetime,
    *,
    created_by: str | None = None,
    comment: str | None = None,
) -> int:
    """Store a silence; returns its id."""
    statement = (
        insert(silences)
        .values(
            matchers=dict(matchers),
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=created_by,
            comment=comment,
        )
        .returning(silences.c.id)
    )

    async def work(conn: AsyncConnection) -> int:
        return int((await conn.execute(statement)).scalar_one())

    return await store.write("silence add", work)


async def list_silences(store: SqlStore, *, active_at: datetime | None = None) -> list[SilenceRow]:
    """Every silence, or those in force at `active_at`, by id."""
    query = select(silences).order_by(silences.c.id)
    if active_at is not None:
        query = query.where((silences.c.starts_at <= active_at) & (silences.c.ends_at > active_at))

    async def work(conn: AsyncConnection) -> list[SilenceRow]:
        return [_silence_from_row(row) for row in (await conn.execute(query)).mappings()]

    return await store.read("silence list", work)


async def delete_silence(store: SqlStore, silence_id: int) -> bool:
    """Delete a silence; False when there was none with that id."""

    async def work(conn: AsyncConnection) -> bool:
        result = await conn.execute(delete(silences).where(silences.c.id == silence_id))
        return bool(result.rowcount)

    return await store.write("silence delete", work)

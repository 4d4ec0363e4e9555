"""The transactional outbox (docs/architecture.md#alerting): one row per notice per channel,
queued in the transaction that changes its alert, claimed and recorded by delivery workers.
Each call is one transaction of a `SqlUnits` (the `SqlUnits`), except `queue`, which runs in
the caller's.

Outbox rows are unique per (dedup_key, channel); inserts are ON CONFLICT DO NOTHING. A delivery
worker claims rows with one conditional UPDATE (PostgreSQL: over a `FOR UPDATE SKIP LOCKED`
selection; SQLite: under BEGIN IMMEDIATE), setting `claimed_by` and a lease `claimed_until`; it
records the outcome only for rows it still holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.store.tables import outbox
from ciwatch.store.units import SqlUnits


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
    group_key: str | None = None


@dataclass(frozen=True)
class NewNotice:
    """An outbox row to insert with an alert change: its dedup key, channel, payload, when it
    becomes due (creation + group_wait) and the group (route label) it is sent in. A row whose
    group already has a row waiting on that channel joins it: it becomes due with it. With
    `settle` the window slides instead: the rows waiting in it become due with the new row (the
    start summary goes out once no new row has joined it for group_wait)."""

    dedup_key: str
    channel: str
    payload: dict[str, Any]
    due: datetime
    group: str | None = None
    settle: bool = False


PENDING = and_(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None))
# Pending, never tried and not claimed: a row still waiting in its group's window.
WAITING = and_(PENDING, outbox.c.attempts == 0, outbox.c.claimed_by.is_(None))


def insert_for(dialect: str) -> Any:
    """The dialect's INSERT (with ON CONFLICT)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def queue(
    conn: AsyncConnection,
    dialect: str,
    notices: Sequence[tuple[str, NewNotice]],
    now: datetime,
) -> None:
    """Insert outbox rows, each (alert fingerprint, notice), in one statement, within the
    caller's transaction (the one that applies the alert changes). A row of a group whose
    `group_wait` window is open on its channel (or was opened by an earlier row of this call)
    joins it."""
    windows: dict[tuple[str, str], datetime | None] = {}
    if dialect == "postgresql":
        # Two evaluators (the quick and the full one, or two replicas) queuing the first rows
        # of one group at once would each open a window: one at a time per group, in a fixed
        # order so that they cannot deadlock. (SQLite's writes are serialised already.)
        waiting = {
            (notice.channel, notice.group)
            for _fingerprint, notice in notices
            if notice.group is not None and notice.due > now
        }
        for channel, group in sorted(waiting):
            await conn.execute(select(func.pg_advisory_xact_lock(_window_lock(channel, group))))
    rows: list[dict[str, Any]] = []
    for fingerprint, notice in notices:
        due = notice.due
        if notice.group is not None and due > now and notice.settle:
            key = (notice.channel, notice.group)
            if windows.get(key) != due:
                await _slide_window(conn, notice.channel, notice.group, now, due)
                windows[key] = due
        elif notice.group is not None and due > now:
            key = (notice.channel, notice.group)
            if key not in windows:
                windows[key] = await _open_window(conn, notice.channel, notice.group, now)
            opened = windows[key]
            if opened is None:
                windows[key] = due  # this row opens the window
            else:
                due = min(due, opened)
        rows.append(
            {
                "dedup_key": notice.dedup_key,
                "fingerprint": fingerprint,
                "channel": notice.channel,
                "payload": notice.payload,
                "attempts": 0,
                "next_attempt_at": due,
                "created_at": now,
                "group_key": notice.group,
            }
        )
    if rows:
        statement = insert_for(dialect)(outbox).on_conflict_do_nothing(
            index_elements=["dedup_key", "channel"]
        )
        await conn.execute(statement, rows)


async def _slide_window(
    conn: AsyncConnection, channel: str, group: str, now: datetime, due: datetime
) -> None:
    """Make the rows waiting in the group's open window on `channel` due at `due`."""
    statement = (
        update(outbox)
        .where(WAITING & (outbox.c.channel == channel) & (outbox.c.group_key == group))
        .where(outbox.c.next_attempt_at > now)
        .values(next_attempt_at=due)
    )
    await conn.execute(statement)


def _window_lock(channel: str, group: str) -> int:
    """The PostgreSQL advisory lock key of a (channel, group) window: 64 bits of a hash."""
    digest = hashlib.blake2b(f"outbox window\0{channel}\0{group}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


async def _open_window(
    conn: AsyncConnection, channel: str, group: str, now: datetime
) -> datetime | None:
    """When the group's waiting rows on `channel` go out, if a `group_wait` window is open: the
    first alert of a group opens it, later ones join it instead of each waiting in full."""
    query = select(func.min(outbox.c.next_attempt_at)).where(
        WAITING
        & (outbox.c.channel == channel)
        & (outbox.c.group_key == group)
        & (outbox.c.next_attempt_at > now)
    )
    value: datetime | None = (await conn.execute(query)).scalar()
    return value


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
        row["group_key"],
    )


async def claim(
    store: SqlUnits,
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
    store: SqlUnits,
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


async def outbox_rows(store: SqlUnits, *, channel: str | None = None) -> list[OutboxRow]:
    """Every outbox row (of one channel), oldest first: for the CLI, the API and tests."""
    query = select(outbox).order_by(outbox.c.id)
    if channel is not None:
        query = query.where(outbox.c.channel == channel)

    async def work(conn: AsyncConnection) -> list[OutboxRow]:
        return [_outbox_from_row(row) for row in (await conn.execute(query)).mappings()]

    return await store.read("outbox list", work)


@dataclass(frozen=True)
class ChannelTrouble:
    """A channel whose newest deliveries fail: the rows since its last sent one that failed for
    good or are being retried."""

    channel: str
    since: datetime  # when the oldest of those rows was queued
    error: str | None  # the newest one's error


async def channel_troubles(store: SqlUnits, channels: Sequence[str]) -> list[ChannelTrouble]:
    """Each of `channels` that has failed or retried rows newer than its newest sent row.

    Two index range reads per channel (`ix_outbox_channel_id`): its newest sent row, walking
    back from its newest row (usually the first one looked at), then the rows after it. The
    cost follows the rows since the last success, not the size of the outbox."""
    troubled = or_(outbox.c.failed_at.is_not(None), and_(PENDING, outbox.c.attempts > 0))

    async def work(conn: AsyncConnection) -> list[ChannelTrouble]:
        found: list[ChannelTrouble] = []
        for channel in sorted(set(channels)):
            mine = outbox.c.channel == channel
            sent = (
                await conn.execute(
                    select(outbox.c.id)
                    .where(mine & outbox.c.sent_at.is_not(None))
                    .order_by(outbox.c.id.desc())
                    .limit(1)
                )
            ).scalar()
            after = mine & troubled & (outbox.c.id > (sent or 0))
            row = (
                await conn.execute(
                    select(func.min(outbox.c.created_at), func.max(outbox.c.id)).where(after)
                )
            ).one()
            since, newest = row
            if newest is None:
                continue
            error = (
                await conn.execute(select(outbox.c.last_error).where(outbox.c.id == newest))
            ).scalar()
            found.append(ChannelTrouble(channel, since, error))
        return found

    return await store.read("channel health", work)

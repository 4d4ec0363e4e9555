"""The SQL of alerting (docs/architecture.md#alerting, #several-replicas): alert rows with
compare-and-set, the transactional outbox, silences. Functions over `SqlStore`; each call is one
transaction.

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

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, text, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.alerting.rules import FIRING, RESOLVED, AlertRow, Decision, applied, failing_jobs
from ciwatch.domain import Job, RefKey, RefState, Run, RunKey, Status
from ciwatch.store.reads import in_parts, job_order, ref_states_query
from ciwatch.store.rows import JOB_COLUMNS, RUN_COLUMNS, job_from_row, run_from_row
from ciwatch.store.sql import SqlStore
from ciwatch.store.tables import ACTIVE_ONLY, alerts, jobs, outbox, runs, silences


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


async def alerts_in(
    conn: AsyncConnection, *, firing_only: bool = False, refs: Sequence[RefKey] | None = None
) -> list[AlertRow]:
    """`load_alerts` within a transaction."""
    query = select(alerts).order_by(alerts.c.rule, alerts.c.source, alerts.c.project, alerts.c.ref)
    if firing_only:
        query = query.where(alerts.c.state == FIRING)
    key = tuple_(alerts.c.source, alerts.c.project, alerts.c.ref)
    found = [_alert_from_row(row._mapping) for row in await in_parts(conn, query, key, refs)]
    return found if refs is None else sorted(found, key=lambda row: row.fingerprint)


async def load_alerts(store: SqlStore, *, firing_only: bool = False) -> list[AlertRow]:
    """Every stored alert (or only the firing ones), by fingerprint."""
    return await store.read("alert list", lambda conn: alerts_in(conn, firing_only=firing_only))


async def waiting_runs_in(
    conn: AsyncConnection,
    *,
    running_before: datetime,
    queued_before: datetime,
    refs: Sequence[RefKey] | None = None,
) -> list[Run]:
    """The runs running since before `running_before` or queued since before `queued_before`
    (of `refs` only, when given): the candidates of the stuck and queued rules, oldest first.
    Any run of a ref counts, not only its newest."""
    running_since = func.coalesce(runs.c.started_at, runs.c.created_at, runs.c.updated_at)
    queued_since = func.coalesce(runs.c.created_at, runs.c.updated_at)
    query = (
        select(*RUN_COLUMNS)
        # The literal predicate lets both planners use the partial index `ix_runs_active`.
        .where(text(ACTIVE_ONLY))
        .where(
            ((runs.c.status == Status.RUNNING.value) & (running_since < running_before))
            | ((runs.c.status == Status.QUEUED.value) & (queued_since < queued_before))
        )
        .order_by(runs.c.order_time, runs.c.id)
    )
    key = tuple_(runs.c.source, runs.c.project, runs.c.ref_key)
    return [run_from_row(row._mapping) for row in await in_parts(conn, query, key, refs)]


@dataclass(frozen=True)
class EvaluationInputs:
    """What one evaluation reads, in one transaction: ref states, their stored alerts, their
    queued or running runs past the thresholds, and the silences in force."""

    states: list[RefState]
    alerts: list[AlertRow]
    waiting: list[Run]
    silences: list[SilenceRow]


async def evaluation_inputs(
    store: SqlStore,
    now: datetime,
    *,
    running_before: datetime,
    queued_before: datetime,
    refs: Sequence[RefKey] | None = None,
) -> EvaluationInputs:
    """The inputs of an evaluation of every ref (or of `refs`) at `now`, read together."""

    async def work(conn: AsyncConnection) -> EvaluationInputs:
        states = await ref_states_query(conn, None, None, refs)
        if refs is not None and not states:
            return EvaluationInputs([], [], [], [])
        return EvaluationInputs(
            states,
            await alerts_in(conn, refs=refs),
            await waiting_runs_in(
                conn, running_before=running_before, queued_before=queued_before, refs=refs
            ),
            await silences_in(conn, active_at=now),
        )

    return await store.read("alert evaluation", work)


async def failing_jobs_of(store: SqlStore, keys: Sequence[RunKey]) -> dict[RunKey, tuple[str, ...]]:
    """The failing jobs' names (`rules.failing_jobs`) of each of the runs `keys`, in one read;
    a run without any is left out."""
    if not keys:
        return {}
    query = select(*JOB_COLUMNS).where(jobs.c.status == Status.FAILED.value)
    key = tuple_(jobs.c.source, jobs.c.project, jobs.c.run_id)

    async def work(conn: AsyncConnection) -> dict[RunKey, tuple[str, ...]]:
        found: dict[RunKey, list[Job]] = {}
        for row in await in_parts(conn, query, key, list(dict.fromkeys(keys))):
            job = job_from_row(row._mapping)
            found.setdefault(RunKey(job.source, job.project, job.run_id), []).append(job)
        names = {run: failing_jobs(sorted(found[run], key=job_order)) for run in found}
        return {run: jobs for run, jobs in names.items() if jobs}

    return await store.read("failing jobs", work)


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _alert_values(decision: Decision, now: datetime) -> dict[str, Any]:
    row = applied(decision, now)
    return {
        "state": row.state,
        "first_seen": row.first_seen,
        "last_seen": row.last_seen,
        "last_notified": row.last_notified,
        "payload": row.payload,
    }


async def _insert_new(
    conn: AsyncConnection, dialect: str, fresh: Sequence[Change], now: datetime
) -> set[tuple[str, str, str, str]]:
    """Insert the alerts of new fingerprints in one statement (executemany, batched by
    SQLAlchemy into multi-row INSERTs); returns the fingerprints this call inserted. A row
    another evaluator inserted first is left alone (ON CONFLICT DO NOTHING): it owns it."""
    if not fresh:
        return set()
    statement = (
        _insert(dialect)(alerts)
        .on_conflict_do_nothing(index_elements=["rule", "source", "project", "ref"])
        .returning(alerts.c.rule, alerts.c.source, alerts.c.project, alerts.c.ref)
    )
    rows = [
        dict(
            zip(("rule", "source", "project", "ref"), c.decision.fingerprint, strict=True),
            **_alert_values(c.decision, now),
        )
        for c in fresh
    ]
    return {
        (rule, source, project, ref)
        for rule, source, project, ref in await conn.execute(statement, rows)
    }


async def _update_one(conn: AsyncConnection, change: Change, now: datetime) -> bool:
    """Compare-and-set of a stored alert: only if it is still the row it was decided from."""
    decision = change.decision
    previous = decision.previous
    assert previous is not None
    rule, source, project, ref = decision.fingerprint
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
        .values(**_alert_values(decision, now))
        .returning(alerts.c.id)
    )
    return (await conn.execute(statement)).first() is not None


async def _queue(conn: AsyncConnection, dialect: str, won: Sequence[Change], now: datetime) -> None:
    """Insert the outbox rows of the changes applied, in one statement. A row of a group whose
    `group_wait` window is open on its channel (or was opened by an earlier row of this call)
    joins it."""
    windows: dict[tuple[str, str], datetime | None] = {}
    if dialect == "postgresql":
        # Two evaluators (the quick and the full one, or two replicas) queuing the first rows
        # of one group at once would each open a window: one at a time per group, in a fixed
        # order so that they cannot deadlock. (SQLite's writes are serialised already.)
        waiting = {
            (notice.channel, notice.group)
            for change in won
            for notice in change.notices
            if notice.group is not None and notice.due > now
        }
        for channel, group in sorted(waiting):
            await conn.execute(select(func.pg_advisory_xact_lock(_window_lock(channel, group))))
    rows: list[dict[str, Any]] = []
    for change in won:
        for notice in change.notices:
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
                    "fingerprint": ":".join(change.decision.fingerprint),
                    "channel": notice.channel,
                    "payload": notice.payload,
                    "attempts": 0,
                    "next_attempt_at": due,
                    "created_at": now,
                    "group_key": notice.group,
                }
            )
    if rows:
        statement = _insert(dialect)(outbox).on_conflict_do_nothing(
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


async def apply_changes(store: SqlStore, changes: Sequence[Change], now: datetime) -> list[Change]:
    """Apply alert changes and insert their outbox rows, all in one transaction. A change whose
    row is no longer the one it was decided from is skipped (another evaluator made it first
    and owns its notification); returns the changes applied, in their order."""
    if not changes:
        return []

    async def work(conn: AsyncConnection) -> list[Change]:
        fresh = [c for c in changes if c.decision.previous is None]
        inserted = await _insert_new(conn, store.dialect, fresh, now)
        won = []
        for change in changes:
            if change.decision.previous is None:
                if change.decision.fingerprint in inserted:
                    won.append(change)
            elif await _update_one(conn, change, now):
                won.append(change)
        await _queue(conn, store.dialect, won, now)
        return won

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
        row["group_key"],
    )


PENDING = and_(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None))
# Pending, never tried and not claimed: a row still waiting in its group's window.
WAITING = and_(PENDING, outbox.c.attempts == 0, outbox.c.claimed_by.is_(None))


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


def silence_from_row(row: Mapping[Any, Any]) -> SilenceRow:
    """A `silences` row as a SilenceRow."""
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


async def silences_in(
    conn: AsyncConnection, *, active_at: datetime | None = None
) -> list[SilenceRow]:
    """`list_silences` within a transaction."""
    query = select(silences).order_by(silences.c.id)
    if active_at is not None:
        query = query.where((silences.c.starts_at <= active_at) & (silences.c.ends_at > active_at))
    return [silence_from_row(row) for row in (await conn.execute(query)).mappings()]


async def list_silences(store: SqlStore, *, active_at: datetime | None = None) -> list[SilenceRow]:
    """Every silence, or those in force at `active_at`, by id."""
    return await store.read("silence list", lambda conn: silences_in(conn, active_at=active_at))


async def delete_silence(store: SqlStore, silence_id: int) -> bool:
    """Delete a silence; False when there was none with that id."""

    async def work(conn: AsyncConnection) -> bool:
        result = await conn.execute(delete(silences).where(silences.c.id == silence_id))
        return bool(result.rowcount)

    return await store.write("silence delete", work)


@dataclass(frozen=True)
class Pruned:
    """What `prune_alerting` deleted."""

    outbox: int
    alerts: int
    silences: int


async def prune_alerting(store: SqlStore, older_than: datetime) -> Pruned:
    """Delete what no longer matters, older than `older_than`: outbox rows sent or failed
    before it, alerts resolved (last seen) before it, silences that ended before it. Pending
    rows, firing alerts and silences in force are never touched. One transaction."""

    async def work(conn: AsyncConnection) -> Pruned:
        done = await conn.execute(
            delete(outbox).where(
                (outbox.c.sent_at < older_than)
                | (outbox.c.sent_at.is_(None) & (outbox.c.failed_at < older_than))
            )
        )
        resolved = await conn.execute(
            delete(alerts).where((alerts.c.state == RESOLVED) & (alerts.c.last_seen < older_than))
        )
        ended = await conn.execute(delete(silences).where(silences.c.ends_at < older_than))
        return Pruned(done.rowcount, resolved.rowcount, ended.rowcount)

    return await store.write("alerting prune", work)


@dataclass(frozen=True)
class ChannelTrouble:
    """A channel whose newest deliveries fail: the rows since its last sent one that failed for
    good or are being retried."""

    channel: str
    since: datetime  # when the oldest of those rows was queued
    error: str | None  # the newest one's error


async def channel_troubles(store: SqlStore, channels: Sequence[str]) -> list[ChannelTrouble]:
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

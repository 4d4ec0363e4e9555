"""Alert rows (docs/architecture.md#alerting, #several-replicas): one row per fingerprint,
changed by compare-and-set together with the outbox rows of the change, and the reads of an
evaluation. Each call is one transaction of a `SqlUnits` (the `SqlUnits`).

Why nothing is sent twice by two replicas or after a restart: an alert change is a conditional
write on the row it was decided from (an INSERT ... ON CONFLICT DO NOTHING for a new
fingerprint, an UPDATE matching the old `state` and `last_notified` otherwise). Only the writer
whose condition held gets a row back, and only it inserts outbox rows (`outbox.queue`), in the
same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.alerting.rules import FIRING, RESOLVED, AlertRow, Decision, applied, failing_jobs
from ciwatch.domain import Job, RefKey, RefState, Run, RunKey, Status
from ciwatch.store.outbox import NewNotice, insert_for, queue
from ciwatch.store.reads import in_parts, job_order, ref_states_query
from ciwatch.store.rows import JOB_COLUMNS, RUN_COLUMNS, job_from_row, run_from_row
from ciwatch.store.silences import SilenceRow, silences_in
from ciwatch.store.tables import ACTIVE_ONLY, alerts, jobs, outbox, runs, silences
from ciwatch.store.units import SqlUnits


@dataclass(frozen=True)
class Change:
    """An alert decision and the outbox rows that go with it (none when silenced/unrouted)."""

    decision: Decision
    notices: Sequence[NewNotice]


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


async def load_alerts(store: SqlUnits, *, firing_only: bool = False) -> list[AlertRow]:
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
    store: SqlUnits,
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


async def failing_jobs_of(store: SqlUnits, keys: Sequence[RunKey]) -> dict[RunKey, tuple[str, ...]]:
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
        insert_for(dialect)(alerts)
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


async def apply_changes(store: SqlUnits, changes: Sequence[Change], now: datetime) -> list[Change]:
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
        notices = [
            (":".join(change.decision.fingerprint), notice)
            for change in won
            for notice in change.notices
        ]
        await queue(conn, store.dialect, notices, now)
        return won

    return await store.write("alert update", work)


@dataclass(frozen=True)
class Pruned:
    """What `prune_alerting` deleted."""

    outbox: int
    alerts: int
    silences: int


async def prune_alerting(store: SqlUnits, older_than: datetime) -> Pruned:
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

"""Write transactions: run and job upserts with their ref states, and pruning.

Each function runs inside one transaction opened by the caller (`SqlStore`), which retries it as a
whole after a PostgreSQL deadlock or serialization failure: every write here is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.domain import Job, RefKey, Run, RunKey
from ciwatch.store.refs import lock_refs, recompute, ref_row, runs_of, stored_refs
from ciwatch.store.rows import job_values, run_values
from ciwatch.store.tables import jobs, ref_states, runs
from ciwatch.store.upserts import job_upsert, run_upsert

PRUNE_REFS_PER_TRANSACTION = 100


async def upsert_runs(conn: AsyncConnection, dialect: str, batch: Sequence[Run]) -> int:
    """Merge `batch` into `runs` and refresh the touched ref states; returns how many changed.

    Updates are applied in key order (stable, so the updates of one run keep their order): the
    merge does not depend on the order, and writers that touch the same runs lock their rows in
    the same order.
    """
    ordered = sorted(batch, key=lambda run: run.key)
    keys = list(dict.fromkeys(run.key for run in ordered))
    touched = await _lock_all_refs(conn, dialect, keys, {run.ref_key for run in ordered})
    current = await stored_refs(conn, keys)
    statement = run_upsert(dialect)
    changed = 0
    for run in ordered:
        row = (await conn.execute(statement, run_values(run))).first()
        if row is None:
            continue
        changed += 1
        # A run can move between refs (ref first unknown, then known): both refs change.
        if run.key in current:
            touched.add(current[run.key])
        current[run.key] = RefKey(run.source, run.project, row.ref_key)
        touched.add(current[run.key])
    for ref in sorted(touched):
        await recompute(conn, dialect, ref)
    return changed


async def _lock_all_refs(
    conn: AsyncConnection, dialect: str, keys: Sequence[RunKey], incoming: set[RefKey]
) -> set[RefKey]:
    """On PostgreSQL, lock every ref the batch can touch: the incoming refs and the refs the
    stored runs belong to now. Returns the placeholder refs created (to recompute)."""
    if dialect != "postgresql":
        return set()
    created = await lock_refs(conn, incoming)
    locked = set(incoming)
    # The stored refs are read after locking; a concurrent writer may have moved a run to a ref
    # we do not hold yet. Lock it too and look again: once we hold a run's current ref, nobody
    # can move it. Out-of-order locking here can deadlock, which PostgreSQL detects; the
    # transaction is then retried.
    while True:
        missing = set((await stored_refs(conn, keys)).values()) - locked
        if not missing:
            return created
        created |= await lock_refs(conn, missing)
        locked |= missing


async def upsert_jobs(conn: AsyncConnection, dialect: str, batch: Sequence[Job]) -> int:
    """Merge `batch` into `jobs`; returns how many updates changed a stored row."""
    statement = job_upsert(dialect)
    changed = 0
    for job in sorted(batch, key=lambda job: job.key):
        if (await conn.execute(statement, job_values(job))).first() is not None:
            changed += 1
    return changed


async def refs_with_runs_before(conn: AsyncConnection, older_than: datetime) -> list[RefKey]:
    """The refs that have runs older than `older_than`, sorted."""
    query = (
        select(runs.c.source, runs.c.project, runs.c.ref_key)
        .where(runs.c.order_time < older_than)
        .distinct()
    )
    return sorted(RefKey(*row) for row in await conn.execute(query))


async def prune_refs(
    conn: AsyncConnection, dialect: str, refs: Sequence[RefKey], older_than: datetime
) -> int:
    """Delete the runs (and their jobs) of `refs` created before `older_than`, except the runs a
    ref state points at: the newest, the decisive one and the first of the current streak, so
    that every ref state stays exactly what it was. Returns the number of runs deleted."""
    if dialect == "postgresql":
        await lock_refs(conn, refs)
    deleted = 0
    for ref in refs:
        keep = await _protected(conn, dialect, ref)
        doomed = runs_of(ref) & (runs.c.order_time < older_than) & runs.c.id.not_in(keep)
        doomed_keys = select(runs.c.source, runs.c.project, runs.c.run_id).where(doomed)
        await conn.execute(
            delete(jobs).where(
                tuple_(jobs.c.source, jobs.c.project, jobs.c.run_id).in_(doomed_keys)
            )
        )
        result = await conn.execute(delete(runs).where(doomed))
        deleted += result.rowcount
    return deleted


async def _protected(conn: AsyncConnection, dialect: str, ref: RefKey) -> list[int]:
    query = select(
        ref_states.c.last_run_id, ref_states.c.decisive_run_id, ref_states.c.since_run_id
    ).where(ref_row(ref))
    row = (await conn.execute(query)).first()
    if row is None or row.last_run_id is None:
        # Only a store written by something else than this module lacks the row: build it
        # before deciding what to keep, never delete blindly.
        await recompute(conn, dialect, ref)
        row = (await conn.execute(query)).first()
    if row is None:
        return []
    return [run_id for run_id in row if run_id is not None]

"""Write transactions: run and job upserts with their ref states, and pruning.

Each function runs inside one transaction opened by the caller (`SqlStore`), which retries it as a
whole after a PostgreSQL deadlock or serialization failure: every write here is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.domain import Job, RefKey, Run, RunKey
from ciwatch.store.refs import (
    lock_refs,
    recompute,
    recompute_all,
    ref_row,
    runs_of,
    stored_refs,
)
from ciwatch.store.rows import job_values, run_values
from ciwatch.store.tables import jobs, ref_states, runs
from ciwatch.store.upserts import job_upsert, run_upsert

PRUNE_REFS_PER_TRANSACTION = 100
T = TypeVar("T")


def waves(items: Sequence[T], key: Callable[[T], Hashable]) -> list[list[T]]:
    """Split `items` into consecutive groups where no key appears twice (PostgreSQL refuses a
    multi-row upsert that touches a row twice), keeping each key's updates in their order."""
    seen: dict[Hashable, int] = {}
    groups: list[list[T]] = []
    for item in items:
        index = seen[key(item)] = seen.get(key(item), -1) + 1
        if index == len(groups):
            groups.append([])
        groups[index].append(item)
    return groups


def sized(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """`items` in consecutive parts whose lengths are powers of two, largest first (300 rows:
    256, 32, 8, 4). A multi-row statement's SQL text depends on its number of rows, and the
    drivers keep a prepared statement per text (SQLite's cache holds 128): writes of every batch
    size from 1 to 500 kept about 125 MB of them after 150 writes of random sizes, against 5 MB
    with these parts (measured, docs/performance.md)."""
    start = 0
    while start < len(items):
        size = 1 << ((len(items) - start).bit_length() - 1)
        yield items[start : start + size]
        start += size


async def upsert_runs(
    conn: AsyncConnection,
    dialect: str,
    batch: Sequence[Run],
    changed_refs: set[RefKey] | None = None,
    changed_keys: set[tuple[RunKey, int]] | None = None,
) -> int:
    """Merge `batch` into `runs` and refresh the touched ref states; returns how many updates
    changed a stored run (each counted as if applied one after the other), and adds the refs of
    the changed runs to `changed_refs`, and to `changed_keys` (key, n) for each change made by
    the n-th update (from 0, in `batch` order) of a run.

    Updates are applied in key order (stable, so the updates of one run keep their order): the
    merge does not depend on the order, and writers that touch the same runs then lock their
    rows in the same order.
    """
    ordered = sorted(batch, key=lambda run: run.key)
    postgres = dialect == "postgresql"
    touched: set[RefKey] = set()
    locked: set[RefKey] = set()
    if postgres:
        locked = await _expected_refs(conn, ordered)
        touched |= await lock_refs(conn, locked)
    statement = run_upsert(dialect)
    changed = 0
    # Wave n holds the n-th update of each run (waves keep each run's updates in order).
    for n, wave in enumerate(waves(ordered, lambda run: run.key)):
        rows = [
            row
            for part in sized(wave)
            for row in await conn.execute(statement, [run_values(run) for run in part])
        ]
        for source, project, run_id, ref, previous in rows:
            changed += 1
            if changed_keys is not None:
                changed_keys.add((RunKey(source, project, run_id), n))
            touched.add(RefKey(source, project, ref))
            # A run can move between refs (ref first unknown, then known): both refs change.
            if previous is not None:
                touched.add(RefKey(source, project, previous))
            if changed_refs is not None:
                changed_refs.add(RefKey(source, project, ref))
                if previous is not None:
                    changed_refs.add(RefKey(source, project, previous))
    if postgres and touched - locked:
        # Only a run that moved to or from a ref we could not foresee. Locking it now, after our
        # own change and before the recompute, is still correct; being out of order it may
        # deadlock, which PostgreSQL detects, and the whole transaction is retried.
        touched |= await lock_refs(conn, touched - locked)
    await recompute_all(conn, dialect, sorted(touched))
    return changed


async def _expected_refs(conn: AsyncConnection, ordered: Sequence[Run]) -> set[RefKey]:
    """The refs the runs of a batch will belong to: their own, or for an update without a ref,
    the stored run's (it keeps its ref), else ""."""
    unknown = [run.key for run in ordered if run.ref is None]
    stored = await stored_refs(conn, list(dict.fromkeys(unknown))) if unknown else {}
    return {stored.get(run.key, run.ref_key) if run.ref is None else run.ref_key for run in ordered}


async def upsert_jobs(conn: AsyncConnection, dialect: str, batch: Sequence[Job]) -> int:
    """Merge `batch` into `jobs`; returns how many updates changed a stored row."""
    statement = job_upsert(dialect)
    changed = 0
    ordered = sorted(batch, key=lambda job: job.key)
    for wave in waves(ordered, lambda job: job.key):
        for part in sized(wave):
            result = await conn.execute(statement, [job_values(job) for job in part])
            changed += len(result.all())
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
        # Spelled with the project's equality so the jobs key index narrows the scan.
        await conn.execute(
            delete(jobs).where(
                (jobs.c.source == ref.source)
                & (jobs.c.project == ref.project)
                & jobs.c.run_id.in_(select(runs.c.run_id).where(doomed))
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


async def set_commit_range(conn: AsyncConnection, key: RunKey, value: str) -> bool:
    """Set `runs.commit_range` of the run `key`; False when no such run is stored."""
    statement = update(runs).where(
        (runs.c.source == key.source)
        & (runs.c.project == key.project)
        & (runs.c.run_id == key.run_id)
    )
    return bool((await conn.execute(statement.values(commit_range=value))).rowcount)

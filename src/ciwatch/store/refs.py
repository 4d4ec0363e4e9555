"""The `ref_states` table: locking a ref for a writer and recomputing its state.

A ref's row always equals `state.ref_state` over the runs of that ref. It is recomputed, in the
writer's transaction, for every ref whose set of runs changed, from a few index probes:

1. the newest run, the newest success and the newest failed run (one UNION ALL of three
   `ORDER BY order_time DESC, run_id DESC LIMIT 1` probes);
2. the decisive run is the newer of the last two; the other one, if any, ends the previous
   streak, so the streak starts at the oldest run of the decisive status newer than it.

On PostgreSQL writers serialise per ref on that row (`SELECT ... FOR UPDATE`, refs taken in sorted
order), so the recompute always sees every committed run of the ref and no two writers can leave
a stale state behind. SQLite needs no row locks: its writers are serialised by BEGIN IMMEDIATE.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    delete,
    literal,
    literal_column,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.domain import RefKey, RunKey, Status
from ciwatch.store.coltypes import UTCDateTime
from ciwatch.store.tables import ref_states, runs
from ciwatch.store.upserts import ref_placeholders, ref_state_upsert

CHUNK = 500
# Literal values, not bound parameters: only then can both planners use the partial indexes
# `ix_runs_ref_success` / `ix_runs_ref_failed`.
IS_SUCCESS = runs.c.status == literal_column("'success'")
IS_FAILED = runs.c.status == literal_column("'failed'")
_PROBE_COLUMNS = (
    runs.c.id,
    runs.c.status,
    runs.c.order_time,
    runs.c.run_id,
    runs.c.provider,
    runs.c.finished_at,
)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    """Slices of at most `size` items, to keep statements under the drivers' parameter limits."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def runs_of(ref: RefKey) -> ColumnElement[bool]:
    """The WHERE clause selecting the runs of one ref (runs without a ref belong to "")."""
    return (
        (runs.c.source == ref.source)
        & (runs.c.project == ref.project)
        & (runs.c.ref_key == ref.ref)
    )


def ref_row(ref: RefKey) -> ColumnElement[bool]:
    """The WHERE clause selecting one `ref_states` row."""
    return (
        (ref_states.c.source == ref.source)
        & (ref_states.c.project == ref.project)
        & (ref_states.c.ref == ref.ref)
    )


async def lock_refs(conn: AsyncConnection, refs: Iterable[RefKey]) -> set[RefKey]:
    """PostgreSQL only: lock the `ref_states` rows of `refs`, creating placeholders as needed.

    Rows are created and locked in sorted key order (the columns compare byte-wise, like
    Python's `sorted`), so writers locking overlapping sets cannot deadlock on them. Returns the
    refs whose placeholder this call created: the caller must recompute them (a recompute of a
    ref without runs deletes the row).
    """
    keys = sorted(set(refs))
    created: set[RefKey] = set()
    for part in chunks(keys):
        rows = [{"source": k.source, "project": k.project, "ref": k.ref} for k in part]
        result = await conn.execute(ref_placeholders("postgresql").values(rows))
        created.update(RefKey(*row) for row in result)
        lock = (
            select(ref_states.c.id)
            .where(tuple_(ref_states.c.source, ref_states.c.project, ref_states.c.ref).in_(part))
            .order_by(ref_states.c.source, ref_states.c.project, ref_states.c.ref)
            .with_for_update()
        )
        await conn.execute(lock)
    return created


async def stored_refs(conn: AsyncConnection, keys: Sequence[RunKey]) -> dict[RunKey, RefKey]:
    """The ref each of the stored runs among `keys` belongs to now."""
    found: dict[RunKey, RefKey] = {}
    for part in chunks(keys):
        query = select(runs.c.source, runs.c.project, runs.c.run_id, runs.c.ref_key).where(
            tuple_(runs.c.source, runs.c.project, runs.c.run_id).in_(part)
        )
        for source, project, run_id, ref in await conn.execute(query):
            found[RunKey(source, project, run_id)] = RefKey(source, project, ref)
    return found


def _newest(kind: str, ref: RefKey, *extra: ColumnElement[bool]) -> Select[Any]:
    return (
        select(literal_column(f"'{kind}'").label("kind"), *_PROBE_COLUMNS)
        .where(runs_of(ref), *extra)
        .order_by(runs.c.order_time.desc(), runs.c.run_id.desc())
        .limit(1)
    )


def _probe_key(row: Any) -> tuple[Any, str]:
    return (row.order_time, row.run_id)


async def recompute(conn: AsyncConnection, dialect: str, ref: RefKey) -> None:
    """Bring the `ref_states` row of `ref` up to date with its runs, in `conn`'s transaction."""
    probes = [
        _newest("last", ref),
        _newest("success", ref, IS_SUCCESS),
        _newest("failed", ref, IS_FAILED),
    ]
    query = union_all(*(select(probe.subquery()) for probe in probes))
    found = {row.kind: row for row in await conn.execute(query)}
    last = found.get("last")
    if last is None:
        await conn.execute(delete(ref_states).where(ref_row(ref)))
        return
    values: dict[str, Any] = {
        "source": ref.source,
        "project": ref.project,
        "ref": ref.ref,
        "provider": last.provider,
        "last_run_id": last.id,
        "decisive_run_id": None,
        "since_run_id": None,
        "status": last.status,
        "since": last.order_time,
    }
    decisive = [row for row in (found.get("success"), found.get("failed")) if row is not None]
    if decisive:
        decisive.sort(key=_probe_key, reverse=True)
        current = decisive[0]
        breaker = decisive[1] if len(decisive) > 1 else None
        first = await _streak_start(conn, ref, Status(current.status), breaker)
        values.update(
            status=current.status,
            decisive_run_id=current.id,
            since_run_id=first.id,
            since=first.finished_at or first.order_time,
        )
    await conn.execute(ref_state_upsert(dialect), values)


async def _streak_start(
    conn: AsyncConnection, ref: RefKey, status: Status, breaker: Any | None
) -> Any:
    # Every decisive run newer than the breaker has `status` (the breaker is the newest run of
    # the other decisive status), so the streak starts at the oldest such run.
    only = IS_SUCCESS if status is Status.SUCCESS else IS_FAILED
    conditions: list[ColumnElement[bool]] = [runs_of(ref), only]
    if breaker is not None:
        bound = tuple_(
            literal(breaker.order_time, UTCDateTime()), literal(breaker.run_id, runs.c.run_id.type)
        )
        conditions.append(tuple_(runs.c.order_time, runs.c.run_id) > bound)
    query = (
        select(runs.c.id, runs.c.finished_at, runs.c.order_time)
        .where(*conditions)
        .order_by(runs.c.order_time.asc(), runs.c.run_id.asc())
        .limit(1)
    )
    row = (await conn.execute(query)).first()
    if row is None:  # cannot happen: the decisive run itself qualifies
        raise RuntimeError(f"no run starts the streak of {ref}")
    return row

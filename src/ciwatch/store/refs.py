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

Statements are built once, with bound parameters: building SQLAlchemy constructs costs more than
running these small queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Delete,
    Select,
    bindparam,
    delete,
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


def _params(ref: RefKey) -> dict[str, str]:
    return {"r_source": ref.source, "r_project": ref.project, "r_ref": ref.ref}


_OF_REF = (
    (runs.c.source == bindparam("r_source"))
    & (runs.c.project == bindparam("r_project"))
    & (runs.c.ref_key == bindparam("r_ref"))
)
_STATE_OF_REF = (
    (ref_states.c.source == bindparam("r_source"))
    & (ref_states.c.project == bindparam("r_project"))
    & (ref_states.c.ref == bindparam("r_ref"))
)


def _newest(kind: str, *extra: ColumnElement[bool]) -> Select[Any]:
    return (
        select(literal_column(f"'{kind}'").label("kind"), *_PROBE_COLUMNS)
        .where(_OF_REF, *extra)
        .order_by(runs.c.order_time.desc(), runs.c.run_id.desc())
        .limit(1)
    )


_PROBES = union_all(
    *(
        select(probe.subquery())
        for probe in (_newest("last"), _newest("success", IS_SUCCESS), _newest("failed", IS_FAILED))
    )
)
_DELETE_STATE: Delete = delete(ref_states).where(_STATE_OF_REF)
_BREAKER_BOUND = tuple_(
    bindparam("b_time", type_=UTCDateTime()), bindparam("b_run", type_=runs.c.run_id.type)
)


def _oldest(status: ColumnElement[bool], after_breaker: bool) -> Select[Any]:
    conditions = [_OF_REF, status]
    if after_breaker:
        conditions.append(tuple_(runs.c.order_time, runs.c.run_id) > _BREAKER_BOUND)
    return (
        select(runs.c.id, runs.c.finished_at, runs.c.order_time)
        .where(*conditions)
        .order_by(runs.c.order_time.asc(), runs.c.run_id.asc())
        .limit(1)
    )


_STREAK_START = {
    (status, after): _oldest(IS_SUCCESS if status is Status.SUCCESS else IS_FAILED, after)
    for status in (Status.SUCCESS, Status.FAILED)
    for after in (False, True)
}
_REF_KEY_COLUMNS = (ref_states.c.source, ref_states.c.project, ref_states.c.ref)
_LOCK = (
    select(ref_states.c.id)
    .where(tuple_(*_REF_KEY_COLUMNS).in_(bindparam("keys", expanding=True)))
    .order_by(*_REF_KEY_COLUMNS)
    .with_for_update()
)
_STORED_REFS = select(runs.c.source, runs.c.project, runs.c.run_id, runs.c.ref_key).where(
    tuple_(runs.c.source, runs.c.project, runs.c.run_id).in_(bindparam("keys", expanding=True))
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
        result = await conn.execute(ref_placeholders("postgresql"), rows)
        created.update(RefKey(*row) for row in result)
        await conn.execute(_LOCK, {"keys": [tuple(key) for key in part]})
    return created


async def stored_refs(conn: AsyncConnection, keys: Sequence[RunKey]) -> dict[RunKey, RefKey]:
    """The ref each of the stored runs among `keys` belongs to now."""
    found: dict[RunKey, RefKey] = {}
    for part in chunks(keys):
        result = await conn.execute(_STORED_REFS, {"keys": [tuple(key) for key in part]})
        for source, project, run_id, ref in result:
            found[RunKey(source, project, run_id)] = RefKey(source, project, ref)
    return found


def _probe_key(row: Any) -> tuple[Any, str]:
    return (row.order_time, row.run_id)


async def recompute(conn: AsyncConnection, dialect: str, ref: RefKey) -> None:
    """Bring the `ref_states` row of `ref` up to date with its runs, in `conn`'s transaction."""
    await recompute_all(conn, dialect, [ref])


async def recompute_all(conn: AsyncConnection, dialect: str, refs: Iterable[RefKey]) -> None:
    """`recompute` for each of `refs`, in their order, with one upsert statement for all their
    rows (a statement per ref is a round trip per ref: on SQLite, hops to the driver's thread)."""
    rows = []
    for ref in refs:
        values = await _state_values(conn, ref)
        if values is not None:
            rows.append(values)
    if rows:
        await conn.execute(ref_state_upsert(dialect), rows)


async def _state_values(conn: AsyncConnection, ref: RefKey) -> dict[str, Any] | None:
    """The `ref_states` row of `ref` from its runs; None (and the row deleted) without runs."""
    params = _params(ref)
    found = {row.kind: row for row in await conn.execute(_PROBES, params)}
    last = found.get("last")
    if last is None:
        await conn.execute(_DELETE_STATE, params)
        return None
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
        # Every decisive run newer than the breaker (the newest run of the other decisive
        # status) has the current status, so the streak starts at the oldest such run.
        breaker = decisive[1] if len(decisive) > 1 else None
        query = _STREAK_START[(Status(current.status), breaker is not None)]
        if breaker is not None:
            params = {**params, "b_time": breaker.order_time, "b_run": breaker.run_id}
        first = (await conn.execute(query, params)).one()
        values.update(
            status=current.status,
            decisive_run_id=current.id,
            since_run_id=first.id,
            since=first.finished_at or first.order_time,
        )
    return values

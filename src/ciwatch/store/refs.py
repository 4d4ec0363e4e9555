"""The `ref_states` table: locking a ref for a writer and recomputing its state.

A ref's row always equals `state.ref_state` over the runs of that ref. It is recomputed, in the
writer's transaction, for every ref whose set of runs changed, from a few index probes:

1. the newest run, the newest success and the newest failed run (three
   `ORDER BY order_time DESC, run_id DESC LIMIT 1` probes);
2. the decisive run is the newer of the last two; the other one, if any, ends the previous
   streak, so the streak starts at the oldest run of the decisive status newer than it.

The probes of up to `BATCH` refs go in one UNION ALL statement, and their streak starts in one
more per kind (success or failed, after a breaker or not): a write of many refs (a burst of
webhooks shares one transaction) costs a few statements, not two per ref.

On PostgreSQL writers serialise per ref on that row (`SELECT ... FOR UPDATE`, refs taken in sorted
order), so the recompute always sees every committed run of the ref and no two writers can leave
a stale state behind. SQLite needs no row locks: its writers are serialised by BEGIN IMMEDIATE.

Statements are built once (per batch size, padded to a power of two), with bound parameters:
building SQLAlchemy constructs costs more than running these small queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Delete,
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
T = TypeVar("T")
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


_STATE_OF_REF = (
    (ref_states.c.source == bindparam("r_source"))
    & (ref_states.c.project == bindparam("r_project"))
    & (ref_states.c.ref == bindparam("r_ref"))
)


_DELETE_STATE: Delete = delete(ref_states).where(_STATE_OF_REF)
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
    """`recompute` for each of `refs`, with one upsert statement for all their rows and the
    probes of many refs in one statement (`BATCH` refs: one for the newest runs, one per kind
    of streak start), not two per ref: on SQLite each statement is a hop to the driver's
    thread, and a burst of webhooks writes hundreds of refs at once."""
    keys = list(dict.fromkeys(refs))
    rows = []
    for part in chunks(keys, BATCH):
        rows.extend(await _states_values(conn, part))
    if rows:
        await conn.execute(ref_state_upsert(dialect), rows)


# Refs probed per statement: three `LIMIT 1` probes each in one UNION ALL, under SQLite's 500
# compound terms. A statement is cached per number of refs, padded to a power of two (the
# drivers prepare one statement per text: sizes of every count would fill their caches).
BATCH = 16


def padded(part: Sequence[T]) -> list[T]:
    """`part` (not empty) with its last item repeated up to a power-of-two length: the drivers
    prepare and cache a statement per SQL text, i.e. per number of values, so lookups of every
    size would fill their caches (SQLite's holds 128 per connection)."""
    return [*part, *[part[-1]] * ((1 << (len(part) - 1).bit_length()) - len(part))]


def batch_params(part: Sequence[RefKey]) -> dict[str, Any]:
    """The bound values of `ref_clause(i)` for each ref of `part`."""
    params: dict[str, Any] = {}
    for i, ref in enumerate(part):
        params.update({f"s{i}": ref.source, f"p{i}": ref.project, f"r{i}": ref.ref})
    return params


def ref_clause(i: int) -> ColumnElement[bool]:
    """The runs of the `i`-th ref of a batch (bound `s<i>`, `p<i>`, `r<i>`: `batch_params`)."""
    return (
        (runs.c.source == bindparam(f"s{i}"))
        & (runs.c.project == bindparam(f"p{i}"))
        & (runs.c.ref_key == bindparam(f"r{i}"))
    )


_BATCH_PROBES: dict[int, Any] = {}


def _batch_probes(size: int) -> Any:
    """The newest run, the newest success and the newest failed run of each of `size` refs
    (three `ORDER BY order_time DESC, run_id DESC LIMIT 1` probes per ref, in one UNION ALL),
    each row tagged with its ref's index in the batch."""
    found = _BATCH_PROBES.get(size)
    if found is None:
        parts = []
        for i in range(size):
            for kind, extra in (("last", ()), ("success", (IS_SUCCESS,)), ("failed", (IS_FAILED,))):
                probe = (
                    select(
                        literal_column(str(i)).label("ix"),
                        literal_column(f"'{kind}'").label("kind"),
                        *_PROBE_COLUMNS,
                    )
                    .where(ref_clause(i), *extra)
                    .order_by(runs.c.order_time.desc(), runs.c.run_id.desc())
                    .limit(1)
                )
                parts.append(select(probe.subquery()))
        found = _BATCH_PROBES[size] = union_all(*parts)
    return found


_BATCH_STARTS: dict[tuple[Status, bool, int], Any] = {}


def _batch_starts(status: Status, after_breaker: bool, size: int) -> Any:
    """The oldest run of `status` (after the ref's breaker, the newest run of the other
    decisive status, when `after_breaker`) of each of `size` refs, tagged with its index."""
    key = (status, after_breaker, size)
    found = _BATCH_STARTS.get(key)
    if found is None:
        parts = []
        for i in range(size):
            conditions = [ref_clause(i), IS_SUCCESS if status is Status.SUCCESS else IS_FAILED]
            if after_breaker:
                bound = tuple_(
                    bindparam(f"bt{i}", type_=UTCDateTime()),
                    bindparam(f"br{i}", type_=runs.c.run_id.type),
                )
                conditions.append(tuple_(runs.c.order_time, runs.c.run_id) > bound)
            start = (
                select(
                    literal_column(str(i)).label("ix"),
                    runs.c.id,
                    runs.c.finished_at,
                    runs.c.order_time,
                )
                .where(*conditions)
                .order_by(runs.c.order_time.asc(), runs.c.run_id.asc())
                .limit(1)
            )
            parts.append(select(start.subquery()))
        found = _BATCH_STARTS[key] = union_all(*parts)
    return found


async def _states_values(conn: AsyncConnection, part: Sequence[RefKey]) -> list[dict[str, Any]]:
    """The `ref_states` rows of the refs of `part` (at most `BATCH`) from their runs; the rows
    of refs without runs are deleted."""
    part_padded = padded(part)
    found: dict[int, dict[str, Any]] = {}
    for row in await conn.execute(_batch_probes(len(part_padded)), batch_params(part_padded)):
        if row.ix < len(part):
            found.setdefault(row.ix, {})[row.kind] = row
    values: dict[int, dict[str, Any]] = {}
    # (status, after a breaker) -> [(index in part, breaker)]: one statement per kind.
    starts: dict[tuple[Status, bool], list[tuple[int, Any]]] = {}
    for i, ref in enumerate(part):
        probes = found.get(i, {})
        last = probes.get("last")
        if last is None:
            await conn.execute(_DELETE_STATE, _params(ref))
            continue
        values[i] = {
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
        decisive = [row for row in (probes.get("success"), probes.get("failed")) if row is not None]
        if decisive:
            decisive.sort(key=_probe_key, reverse=True)
            current = decisive[0]
            values[i].update(status=current.status, decisive_run_id=current.id)
            # Every decisive run newer than the breaker (the newest run of the other decisive
            # status) has the current status, so the streak starts at the oldest such run.
            breaker = decisive[1] if len(decisive) > 1 else None
            starts.setdefault((Status(current.status), breaker is not None), []).append(
                (i, breaker)
            )
    for (status, after_breaker), asked in starts.items():
        asked = padded(asked)
        params = batch_params([part[i] for i, _ in asked])
        if after_breaker:
            for n, (_i, breaker) in enumerate(asked):
                params.update({f"bt{n}": breaker.order_time, f"br{n}": breaker.run_id})
        query = _batch_starts(status, after_breaker, len(asked))
        for row in await conn.execute(query, params):
            i = asked[row.ix][0]
            values[i].update(since_run_id=row.id, since=row.finished_at or row.order_time)
    return [values[i] for i in sorted(values)]

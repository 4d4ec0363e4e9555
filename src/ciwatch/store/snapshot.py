"""Read queries behind the `/metrics` snapshot and `/cc.xml`, run through `SqlStore.read`.

Each is bounded by what it reads: ref states (one row per project/ref), the jobs of the runs it is
given, one index probe per ref it is given, and one grouped count (`run_counts`, the only query
that visits every run; the metrics snapshot runs it rarely and in the background).
`changed_ref_states` reads every ref state's row as the driver returns it (no type processing)
and builds the domain objects only for rows that differ from the previous read, so a refresh
costs about what changed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable

from sqlalchemy import func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.domain import TERMINAL, Job, RefKey, RefState, Run, RunKey
from ciwatch.store.reads import ref_states_query
from ciwatch.store.rows import JOB_COLUMNS, RUN_COLUMNS, job_from_row, run_from_row
from ciwatch.store.tables import jobs, ref_states, runs

T = TypeVar("T")

# Bound parameters per statement stay well under SQLite's limit (32766) and asyncpg's (32767).
KEYS_PER_QUERY = 500
_TERMINAL_VALUES = sorted(status.value for status in TERMINAL)


@runtime_checkable
class Reader(Protocol):
    """What these queries need of a store: `SqlStore.read`."""

    async def read(self, what: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T: ...


class CountKey(NamedTuple):
    """Labels of one `ci_pipeline_runs_total` series."""

    source: str
    provider: str
    project: str
    ref: str
    status: str


# Every ref state's row, in `ref_states_query`'s order, keyed by its first three columns; the
# other columns are only compared with the previous read, so their raw driver values will do.
_REF_ROWS = (
    select(
        ref_states.c.source,
        ref_states.c.project,
        ref_states.c.ref,
        ref_states.c.status,
        ref_states.c.since,
        *RUN_COLUMNS,
    )
    .join_from(ref_states, runs, runs.c.id == ref_states.c.last_run_id)
    .order_by(ref_states.c.source, ref_states.c.project, ref_states.c.ref)
)
_REF_ROWS_SQL: dict[str, str] = {}


class RefRows(NamedTuple):
    """What `changed_ref_states` read: every ref's raw row in order, and the typed states of
    the refs whose row was not in the `known` rows given."""

    rows: dict[RefKey, tuple[Any, ...]]
    changed: dict[RefKey, RefState]


async def changed_ref_states(reader: Reader, known: Mapping[RefKey, tuple[Any, ...]]) -> RefRows:
    """Every ref state's row (one scan, no type processing) and, in the same read, the
    `RefState` of each ref whose row differs from `known` (or is new)."""

    async def work(conn: AsyncConnection) -> RefRows:
        sql = _REF_ROWS_SQL.get(conn.dialect.name)
        if sql is None:
            sql = _REF_ROWS_SQL[conn.dialect.name] = str(_REF_ROWS.compile(dialect=conn.dialect))
        rows: dict[RefKey, tuple[Any, ...]] = {}
        wanted: list[RefKey] = []
        for row in await conn.exec_driver_sql(sql):
            values = tuple(row)
            key = RefKey(values[0], values[1], values[2])
            rows[key] = values
            if known.get(key) != values:
                wanted.append(key)
        if not wanted:
            return RefRows(rows, {})
        # Most refs changed (the first read): one scan beats probing each of them.
        everything = len(wanted) * 2 > len(rows)
        states = await ref_states_query(conn, None, None, None if everything else wanted)
        chosen = set(wanted)
        return RefRows(rows, {state.key: state for state in states if state.key in chosen})

    return await reader.read("ref states", work)


async def ref_states_of(reader: Reader, refs: Sequence[RefKey]) -> list[RefState]:
    """The states of `refs` (those that have one), sorted as `ref_states_query` sorts."""
    return await reader.read("ref states", lambda conn: ref_states_query(conn, None, None, refs))


async def decisive_runs(reader: Reader) -> dict[RefKey, Run]:
    """The run that sets each ref's colour (its newest success or failed run), for the refs
    where that is not also the newest run; refs without one are absent."""

    async def work(conn: AsyncConnection) -> dict[RefKey, Run]:
        query = (
            select(ref_states.c.ref.label("state_ref"), *RUN_COLUMNS)
            .join_from(ref_states, runs, runs.c.id == ref_states.c.decisive_run_id)
            .where(ref_states.c.decisive_run_id != ref_states.c.last_run_id)
        )
        found: dict[RefKey, Run] = {}
        for row in (await conn.execute(query)).mappings():
            run = run_from_row(row)
            found[RefKey(run.source, run.project, row["state_ref"])] = run
        return found

    return await reader.read("decisive runs", work)


async def newest_finished_runs(reader: Reader, refs: Sequence[RefKey]) -> dict[RefKey, Run]:
    """For each ref, its newest run (by creation time) that has finished (terminal status) and
    has a known duration; refs without one are absent. One index probe per ref."""

    async def work(conn: AsyncConnection) -> dict[RefKey, Run]:
        found: dict[RefKey, Run] = {}
        for ref in refs:
            query = (
                select(*RUN_COLUMNS)
                .where(
                    (runs.c.source == ref.source)
                    & (runs.c.project == ref.project)
                    & (runs.c.ref_key == ref.ref)
                    & runs.c.status.in_(_TERMINAL_VALUES)
                    & runs.c.duration_seconds.is_not(None)
                )
                .order_by(runs.c.order_time.desc(), runs.c.run_id.desc(), runs.c.id.desc())
                .limit(1)
            )
            row = (await conn.execute(query)).mappings().first()
            if row is not None:
                found[ref] = run_from_row(row)
        return found

    if not refs:
        return {}
    return await reader.read("newest finished runs", work)


async def jobs_of_runs(reader: Reader, keys: Sequence[RunKey]) -> dict[RunKey, list[Job]]:
    """The jobs of each given run, in creation order (then job id), like `Store.jobs_for`;
    every key is present, with an empty list when the run has no stored jobs."""
    wanted = list(dict.fromkeys(RunKey(*key) for key in keys))

    async def work(conn: AsyncConnection) -> dict[RunKey, list[Job]]:
        found: dict[RunKey, list[Job]] = {key: [] for key in wanted}
        for start in range(0, len(wanted), KEYS_PER_QUERY):
            chunk = wanted[start : start + KEYS_PER_QUERY]
            query = select(*JOB_COLUMNS).where(
                tuple_(jobs.c.source, jobs.c.project, jobs.c.run_id).in_(
                    [tuple(key) for key in chunk]
                )
            )
            for row in (await conn.execute(query)).mappings():
                job = job_from_row(row)
                found[job.run_key].append(job)
        for listed in found.values():
            listed.sort(
                key=lambda job: (job.created_at or job.started_at or job.updated_at, job.job_id)
            )
        return found

    if not wanted:
        return {}
    return await reader.read("jobs of runs", work)


async def run_counts(reader: Reader) -> dict[CountKey, int]:
    """How many stored runs ended in each terminal status, per source/project/ref. Visits every
    run: callers cache it."""

    async def work(conn: AsyncConnection) -> dict[CountKey, int]:
        query = (
            select(
                runs.c.source,
                runs.c.provider,
                runs.c.project,
                runs.c.ref_key,
                runs.c.status,
                func.count().label("n"),
            )
            .where(runs.c.status.in_(_TERMINAL_VALUES))
            .group_by(runs.c.source, runs.c.provider, runs.c.project, runs.c.ref_key, runs.c.status)
        )
        return {
            CountKey(row.source, row.provider, row.project, row.ref_key, row.status): int(row.n)
            for row in await conn.execute(query)
        }

    return await reader.read("run counts", work)

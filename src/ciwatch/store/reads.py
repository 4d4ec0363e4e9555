"""Read queries: runs, jobs, ref states, history pages with keyset cursors, targets."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    literal,
    literal_column,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.domain import CommitRange, Job, RefKey, RefState, Run, RunKey, Status, TargetState
from ciwatch.filters import Match, clause
from ciwatch.store.coltypes import UTCDateTime
from ciwatch.store.refs import batch_params, chunks, padded, ref_clause
from ciwatch.store.rows import (
    JOB_COLUMNS,
    RUN_COLUMNS,
    job_from_row,
    range_from_value,
    run_from_fields,
    run_from_row,
    target_from_row,
)
from ciwatch.store.tables import jobs, ref_states, runs, targets
from ciwatch.timeutil import to_utc


@dataclass(frozen=True)
class Position:
    """Where a history page ends: the sort key of its last run (`id` breaks ties across
    projects, where two runs can share a creation time and a run id)."""

    order_time: datetime
    run_id: str
    id: int

    def encode(self) -> str:
        raw = json.dumps([self.order_time.isoformat(), self.run_id, self.id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> Position:
        """Parse a cursor made by `encode`; ValueError for anything else."""
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            when, run_id, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
            moment = datetime.fromisoformat(when)
            if moment.tzinfo is None or not isinstance(run_id, str) or type(row_id) is not int:
                raise ValueError("wrong types")
        except (ValueError, TypeError, binascii.Error, UnicodeError) as exc:
            raise ValueError(f"bad history cursor {cursor[:40]!r}") from exc
        return cls(to_utc(moment), run_id, row_id)


def encode_ref_cursor(source: str, project: str, ref: str) -> str:
    """Where a page of ref states ends: its last (source, project, ref)."""
    raw = json.dumps([source, project, ref], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_ref_cursor(cursor: str) -> tuple[str, str, str]:
    """Parse a cursor made by `encode_ref_cursor`; ValueError for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        source, project, ref = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not all(isinstance(part, str) for part in (source, project, ref)):
            raise ValueError("wrong types")
    except (ValueError, TypeError, binascii.Error, UnicodeError) as exc:
        raise ValueError(f"bad projects cursor {cursor[:40]!r}") from exc
    return source, project, ref


def key_of(key: RunKey) -> ColumnElement[bool]:
    """The WHERE clause selecting one run by its natural key."""
    return (
        (runs.c.source == key.source)
        & (runs.c.project == key.project)
        & (runs.c.run_id == key.run_id)
    )


async def get_run(conn: AsyncConnection, key: RunKey) -> Run | None:
    """The stored run with `key`, or None."""
    row = (await conn.execute(select(*RUN_COLUMNS).where(key_of(key)))).mappings().first()
    return None if row is None else run_from_row(row)


async def commit_range(conn: AsyncConnection, key: RunKey) -> CommitRange | None:
    """The commits kept on the run `key` (`runs.commit_range`), or None."""
    value = (await conn.execute(select(runs.c.commit_range).where(key_of(key)))).scalar()
    return range_from_value(value)


RUNS_QUERY = select(*RUN_COLUMNS)
LOOKUP_CHUNK = 256  # a power of two: a full chunk needs no padding


async def get_runs(conn: AsyncConnection, keys: Sequence[RunKey]) -> dict[RunKey, Run]:
    """The stored runs among `keys`, by key (absent ones left out): one statement per chunk.

    Each chunk is padded (its last key repeated) to a power of two: a statement is prepared
    and cached per distinct SQL text, i.e. per number of keys, and lookups of every size from
    1 to 500 kept up to the driver's cache of them (SQLite: 128): 13 MB after 400 lookups
    of random sizes against none with padding (measured, docs/performance.md)."""
    key = tuple_(runs.c.source, runs.c.project, runs.c.run_id)
    found: dict[RunKey, Run] = {}
    for part in chunks(list(dict.fromkeys(keys)), LOOKUP_CHUNK):
        query = RUNS_QUERY.where(key.in_([tuple(value) for value in padded(part)]))
        for row in await conn.execute(query):
            run = run_from_row(row._mapping)
            found[run.key] = run
    return found


NEWEST_CHUNK = 16  # refs per statement: a power of two (padded, as `get_runs`)
_NEWEST: dict[tuple[Status, int], Any] = {}


def _newest_query(status: Status, size: int) -> Any:
    """The statement of `newest_runs` for `size` refs (bound as `refs.batch_params`), built
    once per status and size: building the UNION of its seeks costs more than running it."""
    found = _NEWEST.get((status, size))
    if found is None:
        order = (runs.c.order_time.desc(), runs.c.run_id.desc(), runs.c.id.desc())
        seeks = [
            select(*RUN_COLUMNS)
            .where(ref_clause(i), runs.c.status == literal_column(f"'{status.value}'"))
            .order_by(*order)
            .limit(1)
            .subquery()
            for i in range(size)
        ]
        found = _NEWEST[(status, size)] = union_all(*(select(*seek.c) for seek in seeks))
    return found


async def newest_runs(
    conn: AsyncConnection, refs: Sequence[RefKey], status: Status
) -> dict[RefKey, Run]:
    """The newest run (by `order_time`, then run id and id, as `history`) of each of `refs`
    whose status is `status`, refs without one left out: one statement per `NEWEST_CHUNK`
    refs, a `UNION ALL` of one-row index seeks (the `(source, project, ref_key, ...)` index;
    the status a literal, so the planners may use the partial indexes of success and failed
    runs), so the cost follows the refs asked for, not their histories."""
    found: dict[RefKey, Run] = {}
    for part in chunks(list(dict.fromkeys(refs)), NEWEST_CHUNK):
        refs_padded = padded(part)
        query = _newest_query(status, len(refs_padded))
        for row in await conn.execute(query, batch_params(refs_padded)):
            run = run_from_row(row._mapping)
            found[run.ref_key] = run
    return found


async def jobs_for(conn: AsyncConnection, key: RunKey) -> list[Job]:
    """The jobs of one run, in the order they were created (then by job id)."""
    query = select(*JOB_COLUMNS).where(
        (jobs.c.source == key.source)
        & (jobs.c.project == key.project)
        & (jobs.c.run_id == key.run_id)
    )
    found = [job_from_row(row) for row in (await conn.execute(query)).mappings()]
    return sorted(found, key=job_order)


def job_order(job: Job) -> tuple[datetime, str]:
    """The order of a run's jobs: by creation (else start, else update), then job id."""
    return (job.created_at or job.started_at or job.updated_at, job.job_id)


async def in_parts(
    conn: AsyncConnection, query: Select[Any], key: Any, keys: Sequence[Sequence[Any]] | None
) -> list[Any]:
    """The rows of `query`, or with `keys` of `query` filtered on `key IN keys`, in `chunks`
    (the drivers cap the bound parameters of a statement). Within a chunk the query's order
    holds; across chunks the caller re-sorts when it needs an order."""
    if keys is None:
        return list(await conn.execute(query))
    found: list[Any] = []
    for part in chunks(keys):
        found += await conn.execute(query.where(key.in_([tuple(value) for value in part])))
    return found


async def ref_states_query(
    conn: AsyncConnection,
    source: str | Match | None,
    project: str | Match | None,
    refs: Sequence[RefKey] | None = None,
    ref: str | Match | None = None,
    *,
    after: tuple[str, str, str] | None = None,
    limit: int | None = None,
) -> list[RefState]:
    """Every ref state (or those of `refs`), joined to its newest run; sorted by source,
    project, ref. With `after` and `limit`: at most `limit` of them, those sorting after
    `after` (a range scan of the unique index on (source, project, ref))."""
    query = (
        select(
            ref_states.c.ref.label("state_ref"),
            ref_states.c.status.label("state_status"),
            ref_states.c.since.label("state_since"),
            *RUN_COLUMNS,
        )
        .join_from(ref_states, runs, runs.c.id == ref_states.c.last_run_id)
        .order_by(ref_states.c.source, ref_states.c.project, ref_states.c.ref)
    )
    if source is not None:
        query = query.where(clause(ref_states.c.source, source))
    if project is not None:
        query = query.where(clause(ref_states.c.project, project))
    if ref is not None:
        query = query.where(clause(ref_states.c.ref, ref))
    key = tuple_(ref_states.c.source, ref_states.c.project, ref_states.c.ref)
    if after is not None:
        query = query.where(key > tuple_(*(literal(part, ref_states.c.ref.type) for part in after)))
    if limit is not None:
        query = query.limit(limit)
    states = []
    # Positional rows: this serves dashboards over thousands of refs, and building the domain
    # objects is most of its cost.
    for name, status, since, *fields in await in_parts(conn, query, key, refs):
        run = run_from_fields(fields)
        states.append(
            RefState(run.source, run.provider, run.project, name, Status(status), since, run)
        )
    if refs is None:
        return states
    return sorted(states, key=lambda state: (state.source, state.project, state.ref))


def history_query(
    *,
    source: str | Match | None,
    project: str | Match | None,
    ref: str | Match | None,
    status: Status | Sequence[Status] | None,
    since: datetime | None,
    limit: int,
    after: Position | None,
) -> Select[Any]:
    """Runs newest first (order_time, run_id, id descending), `limit` of them after `after`.
    A string filter is one exact value, a `Match` exact values and globs."""
    query = select(runs.c.id, runs.c.order_time.label("sort_time"), *RUN_COLUMNS)
    if source is not None:
        query = query.where(clause(runs.c.source, source))
    if project is not None:
        query = query.where(clause(runs.c.project, project))
    if ref is not None:
        query = query.where(clause(runs.c.ref_key, ref))
    if isinstance(status, Status | str):
        query = query.where(runs.c.status == Status(status).value)
    elif status is not None:
        query = query.where(runs.c.status.in_([Status(one).value for one in status]))
    if since is not None:
        query = query.where(runs.c.order_time >= since)
    if after is not None:
        bound = tuple_(
            literal(after.order_time, UTCDateTime()),
            literal(after.run_id, runs.c.run_id.type),
            literal(after.id, runs.c.id.type),
        )
        query = query.where(tuple_(runs.c.order_time, runs.c.run_id, runs.c.id) < bound)
    return query.order_by(runs.c.order_time.desc(), runs.c.run_id.desc(), runs.c.id.desc()).limit(
        limit
    )


async def history_page(
    conn: AsyncConnection, query: Select[Any], limit: int
) -> tuple[list[Run], str | None]:
    """Run `query` (built for `limit + 1` rows) and cut it into a page and the next cursor."""
    rows = (await conn.execute(query)).all()
    page = [run_from_fields(fields) for _id, _time, *fields in rows[:limit]]
    if len(rows) <= limit:
        return page, None
    row_id, sort_time, *_ = rows[limit - 1]
    return page, Position(sort_time, page[-1].run_id, row_id).encode()


async def get_target_state(conn: AsyncConnection, source: str, project: str) -> TargetState | None:
    """The stored state of one target, or None."""
    query = select(targets).where((targets.c.source == source) & (targets.c.project == project))
    row = (await conn.execute(query)).mappings().first()
    return None if row is None else target_from_row(row)


async def target_states(conn: AsyncConnection) -> list[TargetState]:
    """Every stored target state, sorted by source and project."""
    query = select(targets).order_by(targets.c.source, targets.c.project)
    return [target_from_row(row) for row in (await conn.execute(query)).mappings()]

"""The forward-only merge of `state.merge_run` / `state.merge_job` as one SQL statement.

    INSERT ... ON CONFLICT (natural key) DO UPDATE SET ... WHERE newer OR fills_a_null
    RETURNING ...

`newer` is `excluded.version > stored.version` (versions are `state.version_key` strings, compared
byte-wise). When newer, every lifecycle column takes the incoming value; otherwise it keeps the
stored one. Identity columns are coalesced towards the newer side, so whichever update supplied a
value keeps it. `author` is coalesced only between updates of the same attempt. The WHERE clause
skips the write unless something can change, so a returned row means "the stored row changed".
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Column, ColumnElement, Table, and_, case, func, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert, ReturningInsert

from ciwatch.state import (
    ATTEMPT_FIELDS,
    IDENTITY_FIELDS,
    JOB_FIELDS,
    JOB_IDENTITY_FIELDS,
    RUN_FIELDS,
)
from ciwatch.store.rows import TARGET_FIELDS
from ciwatch.store.tables import jobs, ref_states, runs, targets

RUN_KEY = ("source", "project", "run_id")
JOB_KEY = ("source", "project", "run_id", "job_id")
TARGET_KEY = ("source", "project")
REF_KEY = ("source", "project", "ref")

RUN_LIFECYCLE = tuple(
    name
    for name in (*RUN_FIELDS, "version")
    if name not in RUN_KEY and name not in IDENTITY_FIELDS and name not in ATTEMPT_FIELDS
)
JOB_LIFECYCLE = tuple(
    name
    for name in (*JOB_FIELDS, "version")
    if name not in JOB_KEY and name not in JOB_IDENTITY_FIELDS
)


def insert_for(dialect: str, table: Table) -> Any:
    """The dialect's `insert()`, the one with `on_conflict_do_*` and `excluded`."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"unsupported dialect {dialect!r}")


def _coalesce_towards(
    newer: ColumnElement[bool], new: Column[Any], old: Column[Any]
) -> ColumnElement[Any]:
    return case((newer, func.coalesce(new, old)), else_=func.coalesce(old, new))


def _fills(old: Column[Any], new: Column[Any]) -> ColumnElement[bool]:
    return and_(old.is_(None), new.is_not(None))


@cache
def run_upsert(dialect: str) -> ReturningInsert[Any]:
    """The merge statement for runs; execute it with `rows.run_values(run)` for each run (a list
    of them becomes multi-row INSERTs, so no key may appear twice in one execution).

    Returns `(source, project, run_id, ref_key, prev_ref_key)` of each stored row that changed;
    `prev_ref_key` is the run's ref before this update, None when the run is new.
    """
    stmt = insert_for(dialect, runs)
    new, old = stmt.excluded, runs.c
    newer = new.version > old.version
    same_attempt = new.attempt == old.attempt
    values: dict[str, Any] = {
        name: case((newer, new[name]), else_=old[name]) for name in RUN_LIFECYCLE
    }
    for name in IDENTITY_FIELDS:
        values[name] = _coalesce_towards(newer, new[name], old[name])
    for name in ATTEMPT_FIELDS:
        values[name] = case(
            (same_attempt, _coalesce_towards(newer, new[name], old[name])),
            (newer, new[name]),
            else_=old[name],
        )
    values["prev_ref_key"] = old.ref_key
    fills = [_fills(old[name], new[name]) for name in IDENTITY_FIELDS]
    fills += [and_(same_attempt, _fills(old[name], new[name])) for name in ATTEMPT_FIELDS]
    upsert: Insert = stmt.on_conflict_do_update(
        index_elements=[runs.c[name] for name in RUN_KEY],
        set_=values,
        where=or_(newer, *fills),
    )
    return upsert.returning(
        runs.c.source, runs.c.project, runs.c.run_id, runs.c.ref_key, runs.c.prev_ref_key
    )


@cache
def job_upsert(dialect: str) -> ReturningInsert[Any]:
    """The merge statement for jobs; execute it with `rows.job_values(job)` for each job (no key
    twice in one execution). Returns `(id,)` for each stored row that changed.
    """
    stmt = insert_for(dialect, jobs)
    new, old = stmt.excluded, jobs.c
    newer = new.version > old.version
    values: dict[str, Any] = {
        name: case((newer, new[name]), else_=old[name]) for name in JOB_LIFECYCLE
    }
    for name in JOB_IDENTITY_FIELDS:
        values[name] = _coalesce_towards(newer, new[name], old[name])
    fills = [_fills(old[name], new[name]) for name in JOB_IDENTITY_FIELDS]
    upsert: Insert = stmt.on_conflict_do_update(
        index_elements=[jobs.c[name] for name in JOB_KEY],
        set_=values,
        where=or_(newer, *fills) if fills else newer,
    )
    return upsert.returning(jobs.c.id)


@cache
def target_upsert(dialect: str) -> Insert:
    """Insert or replace target states; execute it with `rows.target_values(state)` for each
    (a list of them is one executemany). Built and compiled once per dialect: the scheduler's
    batched flushes write thousands of rows with it."""
    stmt = insert_for(dialect, targets)
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[targets.c[name] for name in TARGET_KEY],
        set_={name: stmt.excluded[name] for name in TARGET_FIELDS if name not in TARGET_KEY},
    )


@cache
def ref_placeholders(dialect: str) -> ReturningInsert[Any]:
    """Create missing `ref_states` rows (to lock them); returns the keys it created."""
    stmt = insert_for(dialect, ref_states)
    return stmt.on_conflict_do_nothing(  # type: ignore[no-any-return]
        index_elements=[ref_states.c[name] for name in REF_KEY]
    ).returning(*(ref_states.c[name] for name in REF_KEY))


@cache
def ref_state_upsert(dialect: str) -> Insert:
    """Insert or replace one ref state; execute with all its column values but `id`."""
    stmt = insert_for(dialect, ref_states)
    names = ("provider", "status", "since", "last_run_id", "decisive_run_id", "since_run_id")
    return stmt.on_conflict_do_update(  # type: ignore[no-any-return]
        index_elements=[ref_states.c[name] for name in REF_KEY],
        set_={name: stmt.excluded[name] for name in names},
    )

"""`history(status=...)` (`/api/v1/runs?status=`) is an index range scan in page order on both
engines, for a rare status as for a common one, and on PostgreSQL also under the generic plan
that a prepared statement (asyncpg prepares every statement) switches to after five runs.

These tests read query plans, not times: they fail when the planner would scan every run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.domain import Status
from ciwatch.store import SqlStore
from ciwatch.store.reads import history_query
from factories import make_run

INDEX = "ix_runs_status_order_time_run_id_id"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def fill(store: SqlStore, count: int = 4_000) -> None:
    """Mostly successes, a few failures, one run in 500 canceled, a few running."""
    runs = []
    for n in range(count):
        status = Status.FAILED if n % 7 == 0 else Status.SUCCESS
        if n % 500 == 3:
            status = Status.CANCELED
        if n % 1000 == 11:
            status = Status.RUNNING
        created = T0 + timedelta(minutes=n)
        runs.append(
            make_run(
                run_id=str(n),
                project=f"group/p{n % 40}",
                ref=f"b{n % 3}",
                status=status,
                created_at=created,
                updated_at=created + timedelta(minutes=5),
            )
        )
    for start in range(0, count, 500):
        await store.upsert_runs(runs[start : start + 500])

    async def analyze(conn: AsyncConnection) -> None:
        await conn.execute(text("ANALYZE"))

    await store.write("analyze", analyze)


def sql(status: Status, dialect: Any, **filters: Any) -> str:
    query = history_query(
        source=filters.get("source"),
        project=filters.get("project"),
        ref=None,
        status=status,
        since=None,
        limit=51,
        after=None,
    )
    return str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


async def sqlite_plan(store: SqlStore, status: Status) -> str:
    async def work(conn: AsyncConnection) -> str:
        rows = await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql(status, sqlite.dialect()))
        return "\n".join(str(row[-1]) for row in rows)

    return await store.read("explain", work)


async def postgresql_plan(store: SqlStore, status: Status, mode: str, **filters: Any) -> str:
    """The plan of the history query prepared with the status as parameter `$1`, under
    `plan_cache_mode = mode` (force_generic_plan: what a cached prepared statement runs)."""
    literal = f"runs.status = '{status.value}'"
    statement = sql(status, postgresql.dialect(), **filters)
    assert statement.count(literal) == 1
    prepared = statement.replace(literal, "runs.status = $1")

    async def work(conn: AsyncConnection) -> str:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        # The driver's own connection, outside SQLAlchemy's transaction: a session setting,
        # reset before the connection goes back to the pool.
        await driver.execute(f"SET plan_cache_mode = {mode}")
        await driver.execute(f"PREPARE history_by_status(varchar) AS {prepared}")
        try:
            rows = await driver.fetch(f"EXPLAIN EXECUTE history_by_status('{status.value}')")
        finally:
            await driver.execute("DEALLOCATE history_by_status; RESET plan_cache_mode")
        return "\n".join(str(row[0]) for row in rows)

    return await store.read("explain", work)


RARE_AND_COMMON = [Status.CANCELED, Status.RUNNING, Status.SKIPPED, Status.FAILED]


async def test_history_by_status_is_an_index_range_scan(store: SqlStore) -> None:
    await fill(store)
    for status in RARE_AND_COMMON:
        if store.dialect == "sqlite":
            plan = await sqlite_plan(store, status)
            assert INDEX in plan, (status, plan)
            assert "TEMP B-TREE" not in plan, (status, plan)  # no sort: read in page order
        else:
            # A custom plan knows the value: it may prefer the partial index of the few active
            # runs (and sort those), but never reads every run.
            plan = await postgresql_plan(store, status, "force_custom_plan")
            assert "Index" in plan and "Seq Scan" not in plan, (status, plan)
            # The generic plan cannot match a partial index to `$1`: the status index, in order.
            plan = await postgresql_plan(store, status, "force_generic_plan")
            assert INDEX in plan, (status, plan)
            assert "Sort" not in plan and "Seq Scan" not in plan, (status, plan)


async def test_history_by_status_pages_every_matching_run_once(store: SqlStore) -> None:
    """The index serves the same answer: every canceled run once, newest first, over pages."""
    await fill(store)
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.history(status=Status.CANCELED, limit=3, cursor=cursor)
        seen += [run.run_id for run in page.runs]
        assert all(run.status is Status.CANCELED for run in page.runs)
        if page.next is None:
            break
        cursor = page.next
    assert seen == [str(n) for n in range(4_000 - 1, -1, -1) if n % 500 == 3]


@pytest.mark.parametrize("status", [Status.CANCELED])
async def test_status_and_project_still_use_an_index(store: SqlStore, status: Status) -> None:
    """Adding a project keeps an index (the project's or the status's), never a full scan."""
    await fill(store)
    if store.dialect == "sqlite":

        async def work(conn: AsyncConnection) -> str:
            query = "EXPLAIN QUERY PLAN " + sql(status, sqlite.dialect(), project="group/p3")
            return "\n".join(str(row[-1]) for row in await conn.exec_driver_sql(query))

        plan = await store.read("explain", work)
        assert "USING" in plan and "INDEX" in plan, plan
    else:
        plan = await postgresql_plan(store, status, "force_generic_plan", project="group/p3")
        assert "Seq Scan" not in plan, plan

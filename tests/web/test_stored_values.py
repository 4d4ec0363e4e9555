"""Reads never fail because of a stored value (both engines): rows written before the edge
validated its input, or by hand, with values the model refuses or the pages find awkward
(infinite and NaN durations, year-1 and year-9999 or infinite timestamps, int64 extremes,
attempts below 1, control characters, an unknown status word). Every page, the JSON API,
`/cc.xml` and `/metrics` still answer 200, with the one bad field degraded."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.domain import RunKey
from ciwatch.store import SqlStore
from factories import make_job, make_run

# (column, SQL value on SQLite, SQL value on PostgreSQL): each is written into one run.
HOSTILE_RUN_VALUES: list[tuple[str, str, str]] = [
    ("duration_seconds", "9e999", "'Infinity'::float8"),
    ("duration_seconds", "-9e999", "'-Infinity'::float8"),
    ("queued_seconds", "9e999", "'NaN'::float8"),
    ("created_at", "'0001-01-01T00:00:00.000000+00:00'", "'-infinity'::timestamptz"),
    ("started_at", "'0001-01-01T00:00:00.000000+00:00'", "'0001-01-01 00:00:00+00'"),
    ("finished_at", "'9999-12-31T23:59:59.999999+00:00'", "'infinity'::timestamptz"),
    ("updated_at", "'9999-12-31T23:59:59.999999+00:00'", "'9999-12-31 23:59:59.999999+00'"),
    ("number", "9223372036854775807", "9223372036854775807"),
    ("number", "-9223372036854775808", "-9223372036854775808"),
    ("attempt", "-5", "-5"),
    ("attempt", "0", "0"),
    ("ref", "'main' || char(13, 10) || 'x'", "E'main\\r\\nx'"),
    ("workflow", "'CI' || char(27) || '[31m'", "E'CI\\x1b[31m'"),
    ("author", "'a' || char(0) || 'b'", "E'a\\u2028b'"),
    ("url", "'javascript:alert(1)'", "'javascript:alert(1)'"),
    ("status", "'bogus'", "'bogus'"),
    ("provider", "'nope'", "'nope'"),
]
HOSTILE_JOB_VALUES: list[tuple[str, str, str]] = [
    ("duration_seconds", "9e999", "'NaN'::float8"),
    ("queued_seconds", "-9e999", "'-Infinity'::float8"),
    ("started_at", "'0001-01-01T00:00:00.000000+00:00'", "'-infinity'::timestamptz"),
    ("finished_at", "'9999-12-31T23:59:59.999999+00:00'", "'infinity'::timestamptz"),
    ("name", "'x' || char(10) || 'y'", "E'x\\ny'"),
    ("status", "'bogus'", "'bogus'"),
    ("attempt", "-1", "-1"),
]


def _pages(source: str, project: str, run_id: str) -> list[str]:
    return [
        "/",
        "/?status=failed",
        f"/projects/{source}/{project}",
        f"/runs/{source}/{project}/{run_id}",
        "/?tv=1",
        "/alerts",
        "/api/v1/runs",
        "/api/v1/runs?limit=1",
        f"/api/v1/runs/{source}/{project}/{run_id}",
        "/api/v1/projects",
        "/api/v1/targets",
        "/api/v1/alerts",
        "/cc.xml",
        "/metrics",
    ]


async def _write(store: SqlStore, table: str, column: str, value: str) -> None:
    """`UPDATE table SET column = value` (constants of this module) on every row."""
    statement = f"UPDATE {table} SET {column} = {value}"  # noqa: S608

    async def update(conn: AsyncConnection) -> None:
        await conn.exec_driver_sql(statement)

    await store.write("hostile value", update)


async def _check_every_page(client: httpx.AsyncClient, source: str, project: str) -> None:
    for path in _pages(source, project, "1"):
        answer = await client.get(path)
        assert answer.status_code == 200, (path, answer.text[:500])
        if path.startswith("/api/"):
            # Strict JSON: no NaN or Infinity literal in any answer.
            json.loads(answer.text, parse_constant=_refuse_constant)
        if path == "/metrics":
            assert list(text_string_to_metric_families(answer.text))


def _refuse_constant(name: str) -> Any:
    raise AssertionError(f"{name} in a JSON answer")


@pytest.mark.parametrize(
    ("column", "sqlite", "postgresql"), HOSTILE_RUN_VALUES, ids=lambda v: str(v)[:24]
)
async def test_a_hostile_stored_run_value_degrades_one_field(
    store: SqlStore, client: httpx.AsyncClient, column: str, sqlite: str, postgresql: str
) -> None:
    run = make_run(run_id="1")
    await store.upsert_run(run)
    await store.upsert_jobs([make_job(run_id="1")])
    value = sqlite if store.dialect == "sqlite" else postgresql
    await _write(store, "runs", column, value)
    stored = await store.get_run(RunKey(run.source, run.project, "1"))
    assert stored is not None
    for name in ("duration_seconds", "queued_seconds"):
        seconds = getattr(stored, name)
        assert seconds is None or math.isfinite(seconds)
    assert stored.attempt >= 1
    await _check_every_page(client, run.source, run.project)
    listed = (await client.get("/api/v1/runs")).json()["runs"]
    assert [item["run_id"] for item in listed] == ["1"]


@pytest.mark.parametrize(
    ("column", "sqlite", "postgresql"), HOSTILE_JOB_VALUES, ids=lambda v: str(v)[:24]
)
async def test_a_hostile_stored_job_value_degrades_one_field(
    store: SqlStore, client: httpx.AsyncClient, column: str, sqlite: str, postgresql: str
) -> None:
    run = make_run(run_id="1", status="failed")
    await store.upsert_run(run)
    await store.upsert_jobs([make_job(run_id="1", status="failed")])
    value = sqlite if store.dialect == "sqlite" else postgresql
    await _write(store, "jobs", column, value)
    jobs = await store.jobs_for(run.key)
    assert len(jobs) == 1
    await _check_every_page(client, run.source, run.project)
    detail = (await client.get(f"/api/v1/runs/{run.source}/{run.project}/1")).json()
    assert [job["job_id"] for job in detail["jobs"]] == [jobs[0].job_id]


async def test_every_hostile_run_value_at_once(store: SqlStore, client: httpx.AsyncClient) -> None:
    run = make_run(run_id="1")
    await store.upsert_run(run)
    await store.upsert_jobs([make_job(run_id="1")])
    chosen: dict[str, str] = {}
    for column, sqlite, postgresql in HOSTILE_RUN_VALUES:
        chosen.setdefault(column, sqlite if store.dialect == "sqlite" else postgresql)
    for column, value in chosen.items():
        await _write(store, "runs", column, value)
    await _check_every_page(client, run.source, run.project)
    answer = (await client.get("/api/v1/runs")).json()["runs"][0]
    assert answer["duration_seconds"] is None
    assert answer["queued_seconds"] is None
    assert answer["attempt"] == 1
    assert answer["status"] == "failed"

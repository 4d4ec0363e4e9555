"""Shared fixtures: a hermetic environment, and a `store` on SQLite and on PostgreSQL.

PostgreSQL is the server on 127.0.0.1:5432 (user `postgres`, trust auth). One database
`ciwatch_test_<random>` is created per test session and dropped at the end; every test gets empty
tables. When the server cannot be reached the PostgreSQL variants are skipped, except under
`CI=true` where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import pytest

from ciwatch.store import SqlStore, open_store
from ciwatch.store.tables import metadata
from factories import run_async

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
ENGINES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's CIWATCH_* settings."""
    for name in list(os.environ):
        if name.startswith("CIWATCH_"):
            monkeypatch.delenv(name)


def pg_url(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


async def pg_admin(*statements: str) -> None:
    """Run statements on the maintenance database (CREATE/DROP DATABASE cannot run in a
    transaction, so each is sent on its own)."""
    conn = await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5
    )
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _pg_unreachable(reason: str) -> None:
    message = f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT}: {reason}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def new_pg_database() -> str:
    """Create an empty database and return its name (skips or fails when unreachable)."""
    name = f"ciwatch_test_{secrets.token_hex(6)}"
    try:
        run_async(pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _pg_unreachable(str(exc) or type(exc).__name__)
    return name


def drop_pg_database(name: str) -> None:
    run_async(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of the session's PostgreSQL database, migrated to head."""
    name = new_pg_database()
    url = pg_url(name)

    async def migrate() -> None:
        store = open_store(url)
        try:
            await store.upgrade()
        finally:
            await store.close()

    run_async(migrate())
    yield url
    drop_pg_database(name)


async def _truncate_pg(url: str) -> None:
    names = ", ".join(table.name for table in metadata.sorted_tables)
    conn = await asyncpg.connect(url.replace("postgresql://", "postgres://"), timeout=5)
    try:
        await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture(params=ENGINES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL with the schema at head and empty tables, on each engine."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ciwatch.db'}"
    url: str = request.getfixturevalue("pg_database")
    run_async(_truncate_pg(url))
    return url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    """An open SqlStore over `store_url`, migrated, closed after the test."""
    opened = open_store(store_url)
    await opened.upgrade()
    yield opened
    await opened.close()


@pytest.fixture(params=ENGINES)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a database that was never migrated, on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
        return
    name = new_pg_database()
    yield pg_url(name)
    drop_pg_database(name)

"""Migrations, URLs, error mapping and target state (both engines where it applies)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from ciwatch.domain import TargetState
from ciwatch.errors import ConfigError, StoreError
from ciwatch.store import SqlStore, Store, migrate, open_store
from ciwatch.store.engine import parse_url
from ciwatch.store.tables import metadata
from factories import at, make_run


async def test_migrations_are_idempotent_and_checked(empty_url: str) -> None:
    store = open_store(empty_url)
    try:
        assert await store.schema_current() is False
        await store.upgrade()
        assert await store.schema_current() is True
        await store.upgrade()
        assert await store.schema_current() is True
        await store.ping()
    finally:
        await store.close()


def _schema_diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": False})
    return list(compare_metadata(context, metadata))


async def test_migrated_schema_matches_tables_py(store: SqlStore) -> None:
    async with store._engine.connect() as conn:
        assert await conn.run_sync(_schema_diff) == []


async def test_store_satisfies_the_protocol(store: SqlStore) -> None:
    typed: Store = store
    await typed.ping()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///ciwatch.db", "sqlite+aiosqlite:///ciwatch.db"),
        ("sqlite:////var/lib/ciwatch/ci.db", "sqlite+aiosqlite:////var/lib/ciwatch/ci.db"),
        ("postgresql://bot@db:5432/ci", "postgresql+asyncpg://bot@db:5432/ci"),
        ("postgres://bot@db/ci", "postgresql+asyncpg://bot@db/ci"),
        ("postgresql+asyncpg://bot@db:6000/ci", "postgresql+asyncpg://bot@db:6000/ci"),
    ],
)
def test_user_urls_map_to_async_drivers(url: str, driver: str) -> None:
    assert parse_url(url).url.render_as_string(hide_password=False) == driver


@pytest.mark.parametrize("url", ["mysql://bot@db/ci", "redis://x", "mongodb+srv://a@b/c"])
def test_unknown_scheme_is_a_config_error(url: str) -> None:
    scheme = url.split(":", 1)[0]
    with pytest.raises(ConfigError, match=scheme.replace("+", r"\+")):
        open_store(url)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_memory_sqlite_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="in-memory"):
        open_store(url)


async def test_unreachable_postgresql_names_host_port_and_masks_password() -> None:
    store = open_store("postgresql://bot:s3cret@127.0.0.1:1/ci")
    try:
        with pytest.raises(StoreError) as caught:
            await store.ping()
    finally:
        await store.close()
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "bot:***@" in message
    assert "s3cret" not in message
    assert "connection refused" in message
    assert caught.value.__cause__ is not None


async def test_unopenable_sqlite_is_a_store_error(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/missing/dir/ci.db")
    try:
        with pytest.raises(StoreError, match="cannot open SQLite database"):
            await store.upsert_run(make_run())
    finally:
        await store.close()
    # aiosqlite stops the failed connection's thread without waiting for it; let it finish
    # before the test's event loop closes, or the thread reports "Event loop is closed".
    await asyncio.sleep(0.2)


async def test_target_state_round_trip(store: SqlStore) -> None:
    assert await store.get_target_state("gitlab-main", "group/app") is None
    state = TargetState(
        source="gitlab-main",
        project="group/app",
        cursor="2026-01-05T09:00:00Z",
        etag='W/"abc"',
        healthy=False,
        reason="401 Unauthorized",
        last_polled_at=at(10),
        last_success_at=at(5),
        last_error_at=at(10),
        extra={"backfilled": "yes"},
    )
    await store.save_target_state(state)
    assert await store.get_target_state("gitlab-main", "group/app") == state
    healed = TargetState(source="gitlab-main", project="group/app", last_success_at=at(20))
    await store.save_target_state(healed)
    other = TargetState(source="github", project="octo/app")
    await store.save_target_state(other)
    assert await store.target_states() == [other, healed]


def test_the_packaged_heads_read_without_alembic_are_alembics() -> None:
    assert migrate.packaged_heads() is not None
    assert migrate.packaged_heads() == migrate.head_revisions()


async def test_a_database_behind_the_head_is_upgraded(empty_url: str) -> None:
    (head,) = migrate.head_revisions()
    script = ScriptDirectory.from_config(migrate.alembic_config())
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    store = open_store(empty_url)
    try:
        async with store._engine.begin() as conn:
            await conn.run_sync(lambda c: command.upgrade(migrate.alembic_config(c), previous))
        assert await store.schema_current() is False
        await store.upgrade()
        assert await store.schema_current() is True
        async with store._engine.connect() as conn:
            assert await conn.run_sync(migrate.current_revisions) == {head}
            assert await conn.run_sync(_schema_diff) == []
    finally:
        await store.close()


_OPEN_AND_UPGRADE = """
import asyncio, sys
from ciwatch.store import open_store

async def main():
    store = open_store({url!r})
    try:
        await store.upgrade()
        print(await store.schema_current(), "alembic" in sys.modules)
    finally:
        await store.close()

asyncio.run(main())
"""


async def test_a_database_at_the_head_needs_no_alembic(empty_url: str) -> None:
    """Every `poll --once` and every start asks for an upgrade: at the head it costs a look at
    the version table, not Alembic's import."""
    store = open_store(empty_url)
    try:
        await store.upgrade()
    finally:
        await store.close()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _OPEN_AND_UPGRADE.format(url=empty_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(child.communicate(), 120)
    assert child.returncode == 0, err.decode()
    assert out.decode().split() == ["True", "False"]

"""The commits since green kept on a failing run (`runs.commit_range`, revision 0007), on both
engines: round trip, a run update leaves them alone, the project overview reads them for a red
ref, a stored value that is not a range is left out, and the migration up and down keeps runs."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Connection, text, update

from ciwatch.domain import CommitRange, RangeCommit, RefKey, Run, RunKey, Status
from ciwatch.store import SqlStore, open_store
from ciwatch.store.migrate import alembic_config, current_revisions
from ciwatch.store.tables import runs
from factories import at, make_run

RANGE = CommitRange(
    (
        RangeCommit("b" * 40, "Break the parser", "Carol", "carol@example.com"),
        RangeCommit("c" * 40, "Bump dependencies", login="dave"),
    ),
    total=7,
)


def red() -> list[Run]:
    return [
        make_run(run_id="1", sha="a" * 40, created_at=at(0)),
        make_run(
            run_id="2",
            sha="b" * 40,
            status=Status.FAILED,
            provider_status="failed",
            created_at=at(1000),
            started_at=at(1010),
            finished_at=at(1300),
            updated_at=at(1300),
        ),
    ]


async def test_round_trip_survives_run_updates(store: SqlStore) -> None:
    await store.upsert_runs(red())
    key = RunKey("gitlab-main", "group/app", "2")
    assert await store.commit_range(key) is None
    assert await store.set_commit_range(key, RANGE) is True
    assert await store.commit_range(key) == RANGE
    assert (await store.commit_range(key)).cut  # type: ignore[union-attr]
    # A newer update of the run (another poll) keeps what the engine stored.
    later = make_run(
        run_id="2",
        sha="b" * 40,
        status=Status.FAILED,
        provider_status="failed",
        created_at=at(1000),
        updated_at=at(2000),
        finished_at=at(1300),
        commit_title="Break the parser",
    )
    assert await store.upsert_run(later)
    assert await store.commit_range(key) == RANGE
    # The project overview of the red ref names them.
    overview = await store.project_overview(
        source="gitlab-main", project="group/app", ref="main", now=at(5000)
    )
    assert overview.recovery is not None and overview.recovery.broken_range == RANGE
    assert await store.set_commit_range(RunKey("gitlab-main", "group/app", "9"), RANGE) is False


async def test_a_bad_stored_value_is_left_out(store: SqlStore) -> None:
    await store.upsert_runs(red())
    key = RunKey("gitlab-main", "group/app", "2")
    for bad in ("not json", '{"commits": 3}', "[" * 100_000, '{"commits": [{"sha": 1}]}'):
        async with store._engine.begin() as conn:
            await conn.execute(update(runs).where(runs.c.run_id == "2").values(commit_range=bad))
        found = await store.commit_range(key)
        assert found is None or found.commits == ()
        overview = await store.project_overview(
            source="gitlab-main", project="group/app", ref="main", now=at(5000)
        )
        assert overview.recovery is not None and overview.recovery.broken_by is not None
        assert overview.recovery.broken_range in (None, CommitRange((), 0))
    assert RefKey("gitlab-main", "group/app", "main") == overview.recovery.ref


def _to(revision: str) -> object:
    def step(connection: Connection) -> frozenset[str]:
        if revision.startswith("-"):
            command.downgrade(alembic_config(connection), revision[1:])
        else:
            command.upgrade(alembic_config(connection), revision)
        return current_revisions(connection)

    return step


async def test_migration_0007_up_and_down_keeps_runs(empty_url: str) -> None:
    store = open_store(empty_url)
    try:
        async with store._engine.begin() as conn:
            assert await conn.run_sync(_to("0006")) == {"0006"}  # type: ignore[arg-type]
            await conn.execute(
                text(
                    "INSERT INTO runs (source, provider, project, run_id, status, updated_at,"
                    " attempt, version) VALUES ('s', 'gitlab', 'p', '1', 'failed',"
                    " '2026-01-01T00:00:00.000000+00:00', 1, 'v')"
                )
            )
        await store.upgrade()
        key = RunKey("s", "p", "1")
        assert await store.commit_range(key) is None
        assert await store.set_commit_range(key, RANGE)
        assert await store.commit_range(key) == RANGE
        async with store._engine.begin() as conn:
            assert await conn.run_sync(_to("-0006")) == {"0006"}  # type: ignore[arg-type]
            count = (await conn.execute(text("SELECT count(*) FROM runs"))).scalar()
        assert count == 1
        await store.upgrade()
        assert await store.commit_range(key) is None
    finally:
        await store.close()

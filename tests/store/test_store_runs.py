"""Run and job upserts: the forward-only merge as the store applies it (both engines)."""

from __future__ import annotations

from dataclasses import replace

from ciwatch.domain import RunKey, Status
from ciwatch.state import fold_runs, merge_job, ref_state
from ciwatch.store import SqlStore
from ciwatch.store.writes import sized
from collection.test_poll_state_memory import statements
from factories import at, make_job, make_run

KEY = RunKey("gitlab-main", "group/app", "1001")


def running(**overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "status": Status.RUNNING,
        "provider_status": "running",
        "updated_at": at(60),
        "finished_at": None,
        "duration_seconds": None,
    }
    values.update(overrides)
    return values


async def test_insert_then_get(store: SqlStore) -> None:
    run = make_run()
    assert await store.upsert_run(run) is True
    assert await store.get_run(KEY) == run
    assert await store.get_run(RunKey("gitlab-main", "group/app", "nope")) is None


async def test_duplicate_is_no_change(store: SqlStore) -> None:
    run = make_run()
    assert await store.upsert_run(run)
    assert await store.upsert_run(run) is False
    assert await store.upsert_runs([run, run]) == 0


async def test_newer_update_wins_and_older_is_ignored(store: SqlStore) -> None:
    first = make_run(**running())
    done = make_run()
    assert await store.upsert_run(first)
    assert await store.upsert_run(done)
    assert await store.upsert_run(first) is False, "a late 'running' must not reopen the run"
    assert await store.get_run(KEY) == done


async def test_newer_attempt_reopens_a_finished_run(store: SqlStore) -> None:
    done = make_run(status=Status.FAILED, provider_status="failed")
    retry = make_run(attempt=2, author="bob", **running(updated_at=at(30)))
    assert await store.upsert_run(done)
    assert await store.upsert_run(retry), "a re-run attempt is newer even with an older time"
    stored = await store.get_run(KEY)
    assert stored == retry
    assert stored is not None and stored.author == "bob"


async def test_identity_filled_from_an_older_update(store: SqlStore) -> None:
    older = make_run(**running())
    newer = make_run(sha=None, number=None, url=None, author=None, created_at=None)
    assert await store.upsert_run(newer)
    assert await store.upsert_run(older), "filling a missing identity field is a change"
    stored = await store.get_run(KEY)
    assert stored == fold_runs([newer, older])
    assert stored is not None
    assert (stored.status, stored.sha, stored.number) == (Status.SUCCESS, "a" * 40, 17)
    assert stored.created_at == older.created_at
    assert await store.upsert_run(older) is False


async def test_author_kept_only_within_an_attempt(store: SqlStore) -> None:
    first = make_run(author="alice")
    second = make_run(attempt=2, author=None, updated_at=at(900))
    await store.upsert_runs([first, second])
    stored = await store.get_run(KEY)
    assert stored is not None and stored.author is None
    assert stored == fold_runs([first, second])


async def test_batch_counts_each_update_in_order(store: SqlStore) -> None:
    runs = [make_run(run_id=str(n)) for n in range(5)]
    assert await store.upsert_runs(runs) == 5
    later = [replace(run, updated_at=at(400), provider_status="success!") for run in runs[:2]]
    assert await store.upsert_runs([*later, *runs]) == 2
    assert await store.upsert_runs([]) == 0


async def test_run_moves_from_no_ref_to_its_ref(store: SqlStore) -> None:
    early = make_run(ref=None, **running())
    await store.upsert_run(early)
    assert [state.ref for state in await store.ref_states()] == [""]
    late = make_run()
    await store.upsert_run(late)
    states = await store.ref_states()
    assert states == [ref_state([late])]


async def test_jobs_merge_and_list(store: SqlStore) -> None:
    build = make_job(job_id="1", name="build", created_at=at(1))
    test_running = make_job(
        job_id="2",
        name="test",
        created_at=at(2),
        status=Status.RUNNING,
        finished_at=None,
        updated_at=at(50),
        runner=None,
    )
    test_done = make_job(job_id="2", name="test", created_at=at(2), runner=None)
    assert await store.upsert_jobs([test_running, build]) == 2
    assert await store.upsert_jobs([test_done, test_running, build]) == 1
    filled = replace(test_running, runner="runner-9")
    assert await store.upsert_jobs([filled]) == 1, "an older update may fill a missing field"
    assert await store.jobs_for(KEY) == [build, merge_job(test_done, filled)]
    assert await store.jobs_for(RunKey("gitlab-main", "group/app", "other")) == []
    assert await store.upsert_jobs([]) == 0


async def test_datetimes_come_back_aware_utc(store: SqlStore) -> None:
    await store.upsert_run(make_run(updated_at=at(0.000001)))
    stored = await store.get_run(KEY)
    assert stored is not None
    assert stored.updated_at == at(0.000001)
    assert stored.updated_at.utcoffset() is not None
    assert stored.updated_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


async def test_the_ref_states_of_one_write_are_upserted_in_one_statement(store: SqlStore) -> None:
    """A write touching several refs recomputes each from its runs, and writes all their rows
    with one statement (one round trip, not one per ref)."""
    batch = [make_run(run_id=str(i), ref=f"r{i}", status=Status.FAILED) for i in range(5)]
    with statements(store) as sent:
        await store.upsert_runs(batch)
    # The upsert of the rows (on PostgreSQL, not the placeholders inserted to lock them).
    upserts = [s for s in sent if s.startswith("INSERT INTO ref_states") and "last_run_id =" in s]
    assert len(upserts) == 1, upserts
    states = {state.ref: state for state in await store.ref_states()}
    assert sorted(states) == [f"r{i}" for i in range(5)]
    for run in batch:
        assert states[run.ref or ""] == ref_state([run])


def test_a_wave_is_written_in_parts_of_power_of_two_lengths() -> None:
    for length in range(0, 600):
        items = list(range(length))
        parts = [list(part) for part in sized(items)]
        assert [item for part in parts for item in part] == items
        sizes = [len(part) for part in parts]
        assert all(size & (size - 1) == 0 for size in sizes)
        assert sizes == sorted(sizes, reverse=True)
        assert len(sizes) == len(set(sizes))


async def test_writes_of_every_size_use_few_distinct_statements(store: SqlStore) -> None:
    """A driver keeps a prepared statement per SQL text, and a multi-row statement's text
    depends on its row count: batches of 1 to 40 runs use at most six texts (1, 2, 4, …, 32
    rows), not forty."""
    written = 0
    with statements(store) as sent:
        for size in range(1, 41):
            await store.upsert_runs([make_run(run_id=str(written + i)) for i in range(size)])
            written += size
    texts = {s for s in sent if s.startswith("INSERT INTO runs")}
    assert 1 < len(texts) <= 6
    assert len((await store.history(limit=1000)).runs) == written

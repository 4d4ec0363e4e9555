"""Prune: old runs and their jobs go, every ref state stays (both engines)."""

from __future__ import annotations

from datetime import datetime

import pytest

from ciwatch.domain import RunKey, Status
from ciwatch.state import ref_state
from ciwatch.store import SqlStore
from factories import at, make_job, make_run


def run_at(run_id: str, minute: int, status: Status, ref: str = "main") -> object:
    return make_run(
        run_id=run_id,
        ref=ref,
        status=status,
        created_at=at(60 * minute),
        started_at=at(60 * minute + 5),
        finished_at=at(60 * minute + 30),
        updated_at=at(60 * minute + 30),
    )


async def test_prune_keeps_newest_decisive_and_streak_start(store: SqlStore) -> None:
    S, F, C = Status.SUCCESS, Status.FAILED, Status.CANCELED
    main = [
        run_at("1", 0, S),
        run_at("2", 1, F),  # the current failing streak starts here
        run_at("3", 2, F),
        run_at("4", 3, F),  # decisive: the newest failed run
        run_at("5", 4, C),  # newest run, canceled
    ]
    other = [run_at("10", 0, S, ref="dev"), run_at("11", 1, S, ref="dev")]
    await store.upsert_runs([*main, *other])
    jobs = [make_job(run_id=run.run_id, job_id=f"j{run.run_id}") for run in [*main, *other]]
    await store.upsert_jobs(jobs)
    before = await store.ref_states()

    deleted = await store.prune(at(60 * 10))

    assert deleted == 2  # runs 1 and 3; on dev, 10 starts the green streak and 11 is newest
    remaining = {run.run_id for run in (await store.history(limit=100)).runs}
    assert remaining == {"2", "4", "5", "10", "11"}
    assert await store.ref_states() == before
    kept_main = [run for run in main if run.run_id in remaining]
    assert before[1] == ref_state(kept_main)
    for run in [*main, *other]:
        jobs_left = await store.jobs_for(RunKey(run.source, run.project, run.run_id))
        assert bool(jobs_left) == (run.run_id in remaining)


async def test_prune_leaves_newer_runs_and_is_repeatable(store: SqlStore) -> None:
    runs = [run_at(str(n), n, Status.SUCCESS) for n in range(10)]
    await store.upsert_runs(runs)
    # Run 0 started the green streak: it stays, so the ref stays "green since" its finish.
    assert await store.prune(at(60 * 5)) == 4
    assert await store.prune(at(60 * 5)) == 0
    remaining = (await store.history(limit=100)).runs
    assert sorted(run.run_id for run in remaining) == ["0", "5", "6", "7", "8", "9"]
    assert await store.prune(at(60 * 100)) == 4, "never the newest run (also the decisive one)"
    assert [run.run_id for run in (await store.history()).runs] == ["9", "0"]


async def test_prune_of_an_empty_store(store: SqlStore) -> None:
    assert await store.prune(at(0)) == 0


async def test_prune_needs_an_aware_time(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="aware"):
        await store.prune(datetime(2026, 1, 1))

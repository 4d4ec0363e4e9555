"""A failed write leaves nothing behind, and concurrent writers converge (both engines)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from ciwatch.domain import RefKey, Run, RunKey, Status
from ciwatch.errors import StoreError
from ciwatch.state import fold_runs, ref_state
from ciwatch.store import SqlStore, open_store, writes
from factories import at, make_job, make_run


def broken(run: Run) -> Run:
    """A Run the database must refuse (NOT NULL provider), built past the dataclass checks."""
    bad = replace(run)
    object.__setattr__(bad, "provider", None)
    return bad


async def test_batch_failing_on_its_last_item_writes_nothing(store: SqlStore) -> None:
    stored = make_run(run_id="1", status=Status.RUNNING, finished_at=None, updated_at=at(60))
    await store.upsert_run(stored)
    before = await store.ref_states()
    batch = [
        make_run(run_id="1"),  # would finish run 1
        make_run(run_id="2", ref="dev"),
        broken(make_run(run_id="3")),
    ]
    with pytest.raises(StoreError, match="run upsert failed"):
        await store.upsert_runs(batch)
    assert await store.get_run(RunKey("gitlab-main", "group/app", "1")) == stored
    assert await store.get_run(RunKey("gitlab-main", "group/app", "2")) is None
    assert await store.ref_states() == before


async def test_error_after_the_upserts_rolls_them_back(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_recompute(*_args: Any) -> None:
        raise OperationalError("UPDATE ref_states ...", {}, Exception("disk I/O error"))

    monkeypatch.setattr(writes, "recompute_all", failing_recompute)
    with pytest.raises(StoreError, match="disk I/O error") as caught:
        await store.upsert_runs([make_run(run_id="1"), make_run(run_id="2")])
    assert isinstance(caught.value.__cause__, OperationalError)
    monkeypatch.undo()
    assert (await store.history()).runs == []
    assert await store.ref_states() == []


async def test_job_batch_failing_on_its_last_item_writes_nothing(store: SqlStore) -> None:
    bad = make_job(job_id="3")
    object.__setattr__(bad, "name", None)
    with pytest.raises(StoreError, match="job upsert failed"):
        await store.upsert_jobs([make_job(job_id="1"), make_job(job_id="2"), bad])
    assert await store.jobs_for(RunKey("gitlab-main", "group/app", "1001")) == []


def update_storm(seed: int, project: str) -> list[Run]:
    """Many versions of several runs on several refs, some runs changing ref on the way."""
    rng = random.Random(seed)
    updates = []
    for n in range(16):
        ref = ["main", "dev"][n % 2]
        start = at(100 * n + rng.randrange(50))
        for step in range(6):
            status = [Status.QUEUED, Status.RUNNING][min(step, 1)]
            if step == 5:
                status = rng.choice([Status.SUCCESS, Status.FAILED, Status.CANCELED])
            updates.append(
                make_run(
                    project=project,
                    run_id=f"r{n}",
                    # A ref only known once the run starts, as some providers report it.
                    ref=None if step == 0 and n % 4 == 0 else ref,
                    status=status,
                    created_at=start,
                    started_at=start if step else None,
                    finished_at=at(100 * n + 90) if step == 5 else None,
                    updated_at=at(100 * n + 10 * step),
                    attempt=1 + (step == 5 and n % 5 == 0),
                )
            )
    return updates


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_concurrent_writers_converge_to_the_serial_fold(store: SqlStore, seed: int) -> None:
    """8 writers sharing the store apply the same updates in their own shuffled orders, one by
    one and in batches; runs and ref states end as the serial fold (PostgreSQL: without the
    per-ref locks, ref states go stale here)."""
    updates = update_storm(seed, project=f"group/app{seed}")

    async def writer(index: int) -> None:
        rng = random.Random(seed * 100 + index)
        mine = updates[:]
        rng.shuffle(mine)
        while mine:
            size = rng.choice([1, 1, 3, 8])
            chunk, mine = mine[:size], mine[size:]
            if size == 1:
                await store.upsert_run(chunk[0])
            else:
                await store.upsert_runs(chunk)

    await asyncio.gather(*(writer(i) for i in range(8)))

    by_key: dict[RunKey, list[Run]] = defaultdict(list)
    for update in updates:
        by_key[update.key].append(update)
    expected = {key: fold_runs(group) for key, group in by_key.items()}
    for key, run in expected.items():
        assert await store.get_run(key) == run
    by_ref: dict[RefKey, list[Run]] = defaultdict(list)
    for run in expected.values():
        assert run is not None
        by_ref[run.ref_key].append(run)
    assert await store.ref_states() == [ref_state(by_ref[key]) for key in sorted(by_ref)]


async def test_concurrent_runs_of_one_ref_never_leave_a_stale_state(store: SqlStore) -> None:
    """Eight writers each add a different run to the same ref at the same moment: the ref
    state must account for all of them, round after round."""
    seen: list[Run] = []
    for round_ in range(15):
        burst = [
            make_run(
                run_id=f"{round_:02d}-{index}",
                status=Status.FAILED if (round_ + index) % 3 == 0 else Status.SUCCESS,
                created_at=at(100 * round_ + 7 * ((index * 5) % 8)),
                updated_at=at(100 * round_ + 90),
                finished_at=at(100 * round_ + 90),
            )
            for index in range(8)
        ]
        await asyncio.gather(*(store.upsert_run(run) for run in burst))
        seen.extend(burst)
        assert await store.ref_states() == [ref_state(seen)], f"round {round_}"


async def test_two_processes_writing_one_sqlite_file(tmp_path: Path) -> None:
    """Two stores on one SQLite file (as `ciwatch serve` and a `ciwatch report` would be): their
    writers wait for each other through BEGIN IMMEDIATE and busy_timeout, never failing."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first, second = open_store(url), open_store(url)
    try:
        await first.upgrade()
        await second.upgrade()
        updates = update_storm(seed=11, project="group/shared")

        async def writer(target: SqlStore, index: int) -> None:
            mine = updates[:]
            random.Random(index).shuffle(mine)
            for start in range(0, len(mine), 4):
                await target.upsert_runs(mine[start : start + 4])

        await asyncio.gather(*(writer([first, second][i % 2], i) for i in range(4)))
        by_ref: dict[RefKey, list[Run]] = defaultdict(list)
        for run in {run.key: run for run in updates}:
            folded = fold_runs([u for u in updates if u.key == run])
            assert folded is not None
            assert await second.get_run(run) == folded
            by_ref[folded.ref_key].append(folded)
        assert await first.ref_states() == [ref_state(by_ref[key]) for key in sorted(by_ref)]
    finally:
        await first.close()
        await second.close()


class _Deadlock(Exception):
    sqlstate = "40P01"


async def test_a_deadlocked_write_is_retried(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = writes.upsert_jobs
    calls = []

    async def deadlock_once(*args: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise DBAPIError("UPDATE jobs ...", {}, _Deadlock("deadlock detected"))
        return await real(*args)

    monkeypatch.setattr(writes, "upsert_jobs", deadlock_once)
    assert await store.upsert_jobs([make_job()]) == 1
    assert len(calls) == 2


async def test_other_errors_are_not_retried(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    async def always_fails(*_args: Any) -> int:
        calls.append(1)
        raise DBAPIError("UPDATE jobs ...", {}, Exception("no space left on device"))

    monkeypatch.setattr(writes, "upsert_jobs", always_fails)
    with pytest.raises(StoreError, match="no space left"):
        await store.upsert_jobs([make_job()])
    assert len(calls) == 1

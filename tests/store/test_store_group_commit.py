"""Group commit (`store/group.py`): concurrent run writes share transactions (both engines),
each caller gets its own changed count, and a failing write fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from ciwatch.domain import Status
from ciwatch.errors import StoreError
from ciwatch.store import SqlStore
from ciwatch.store.group import GroupCommit, Pending
from factories import at, make_job, make_run


async def test_concurrent_writes_share_transactions_and_count_per_caller(
    store: SqlStore,
) -> None:
    runs = [make_run(run_id=str(n), project=f"group/p{n % 7}", updated_at=at(n)) for n in range(60)]
    jobs = [[make_job(run_id=str(n), project=f"group/p{n % 7}", job_id="1")] for n in range(60)]
    counts = await asyncio.gather(
        *(store.upsert_runs([run], job) for run, job in zip(runs, jobs, strict=True))
    )
    assert counts == [1] * 60
    # The same updates again change nothing; an update of one run twice in a batch counts
    # for the caller whose update changed it.
    again = await asyncio.gather(
        store.upsert_runs(runs[:30]),
        store.upsert_runs([make_run(run_id="5", project="group/p5", status=Status.FAILED,
                                    updated_at=at(1000))]),
        store.upsert_runs(runs[30:]),
    )  # fmt: skip
    assert again == [0, 1, 0]
    assert len((await store.history(limit=100)).runs) == 60
    assert len(await store.jobs_for(runs[59].key)) == 1
    assert store.group_commit.batches < 63  # 63 calls in all


async def test_a_failing_write_fails_alone() -> None:
    written: list[list[str]] = []

    async def write(batch: Sequence[Pending]) -> list[int]:
        await asyncio.sleep(0)
        ids = [run.run_id for item in batch for run in item.runs]
        if "bad" in ids:
            raise StoreError("disk I/O error (injected)")
        written.append(ids)
        return [len(item.runs) for item in batch]

    group = GroupCommit(write)

    async def submit(run_id: str) -> int:
        return await group.submit([make_run(run_id=run_id)], [])

    results = await asyncio.gather(
        submit("1"), submit("2"), submit("bad"), submit("3"), return_exceptions=True
    )
    assert results[:2] == [1, 1] and results[3] == 1
    assert isinstance(results[2], StoreError)
    assert sorted(i for batch in written for i in batch) == ["1", "2", "3"]


async def test_a_cancelled_caller_does_not_stop_the_write(store: SqlStore) -> None:
    first = asyncio.ensure_future(store.upsert_run(make_run(run_id="1")))
    second = asyncio.ensure_future(store.upsert_run(make_run(run_id="2")))
    await asyncio.sleep(0)
    second.cancel()
    assert await first
    with pytest.raises(asyncio.CancelledError):
        await second
    for _ in range(100):
        if len((await store.history(limit=10)).runs) == 2:
            break
        await asyncio.sleep(0.01)
    assert {r.run_id for r in (await store.history(limit=10)).runs} == {"1", "2"}


async def test_an_outage_fails_the_whole_batch_at_once() -> None:
    """A connection or lock error would meet every item again: the batch fails together instead
    of retrying its items one by one, each waiting for its own timeout."""
    attempts: list[int] = []

    async def write(batch: Sequence[Pending]) -> list[int]:
        await asyncio.sleep(0)
        attempts.append(len(batch))
        raise StoreError("cannot reach 127.0.0.1:5432: timed out (injected)")

    group = GroupCommit(write, isolates=lambda exc: "timed out" not in str(exc))

    async def submit(run_id: str) -> int:
        return await group.submit([make_run(run_id=run_id)], [])

    first = asyncio.ensure_future(submit("0"))
    await asyncio.sleep(0)  # "0" is being written: the next four wait and share one batch
    results = await asyncio.gather(
        first, *(submit(str(n)) for n in range(1, 5)), return_exceptions=True
    )
    assert all(isinstance(result, StoreError) for result in results)
    assert attempts == [1, 4]


def test_only_what_an_item_can_cause_is_isolated() -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    from ciwatch.store.sql import _item_caused

    def failed(cause: Exception) -> StoreError:
        try:
            raise StoreError("run upsert failed") from cause
        except StoreError as exc:
            return exc

    assert _item_caused(failed(IntegrityError("INSERT", {}, Exception("UNIQUE"))))
    assert not _item_caused(failed(OperationalError("BEGIN", {}, Exception("locked"))))
    assert not _item_caused(failed(TimeoutError()))
    assert _item_caused(ValueError("a value the driver cannot take"))

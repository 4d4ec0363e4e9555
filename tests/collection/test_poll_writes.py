"""What a poll costs: runs written with their jobs in one transaction (a failed write is
re-fetched, never lost), one transaction per poll, no store read for a run this process saw
stored at the same progress, and no stage request for a Jenkins build still in the queue. Real
pollers against the simulator on a fake clock."""

from __future__ import annotations

from collections import Counter
from typing import Any, cast

import pytest

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.domain import RunKey, Status
from ciwatch.errors import StoreError
from ciwatch.runtime import Runtime
from ciwatch.scheduler.tasks import KnownRuns
from ciwatch.simulator import RunningSimulator, Simulator
from ciwatch.store import Store
from collection.basic import basic_sources


class SpyStore:
    """Counts calls; `fail_writes` makes the next run writes fail as a crash would."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.fail_writes = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not name.startswith(("get_", "upsert_", "save_")):
            return attr

        async def spied(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name == "get_runs":
                self.calls["runs looked up"] += len(args[0])
            if name == "upsert_runs" and self.fail_writes:
                self.fail_writes -= 1
                raise StoreError("run upsert failed (injected)")
            return await attr(*args, **kwargs)

        return spied


async def _runtime(running: RunningSimulator, clock: FakeClock, store: SpyStore) -> Runtime:
    settings = Settings(
        database="sqlite:///unused.db",
        collection={"retries": 0, "jitter": 0.0},
        sources=basic_sources(running),
    )
    return await Runtime.open(settings, clock=clock, store=cast(Store, store))


async def _close_keep_store(runtime: Runtime) -> None:
    for provider in runtime.providers.values():
        await provider.close()


async def test_a_failed_write_leaves_the_run_to_be_fetched_again(
    store: Store, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    _, running, clock = sim
    spy = SpyStore(store)
    spy.fail_writes = 1_000  # every write of the first cycle fails
    runtime = await _runtime(running, clock, spy)
    try:
        assert runtime.scheduler is not None
        with pytest.raises(StoreError):
            await runtime.scheduler.run_once()
        # Runs and jobs are written together: nothing of the failed writes is stored.
        assert not (await store.history(limit=100)).runs
        spy.fail_writes = 0
        report = await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    assert not report.failed
    newest = (await store.history(source="gl", project="platform/backend/api", limit=1)).runs
    assert newest
    jobs = await store.jobs_for(newest[0].key)
    assert {job.name for job in jobs} == {"compile", "unit", "lint", "deploy"}
    runs = (await store.history(source="jk", project="team/app", limit=100)).runs
    built = [run for run in runs if run.status is not Status.QUEUED]  # queued: no stages yet
    assert built
    for run in built:
        assert await store.jobs_for(run.key), run.run_id


async def test_unchanged_runs_cost_no_store_read_and_a_poll_writes_twice_at_most(
    store: Store, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    _, running, clock = sim
    spy = SpyStore(store)
    runtime = await _runtime(running, clock, spy)
    try:
        assert runtime.scheduler is not None
        first = await runtime.scheduler.run_once()
        polls = len(first.outcomes)
        assert sum(o.changed for o in first.outcomes) > 0
        # One transaction for the runs and jobs of each poll, not one per run or per job.
        assert spy.calls["upsert_runs"] <= polls
        assert spy.calls["upsert_jobs"] == 0
        assert spy.calls["upsert_run"] == 0
        spy.calls.clear()
        # Nothing moved: the runs the lists show again are known, so no store read.
        second = await runtime.scheduler.run_once()
        assert sum(o.changed for o in second.outcomes) == 0
        assert spy.calls["runs looked up"] == 0
        assert spy.calls["upsert_runs"] == spy.calls["upsert_jobs"] == 0
        spy.calls.clear()
        # Time moves: what changed is read, fetched and stored; the rest is still known, also
        # on GitHub, whose previous polls were 304s.
        clock.advance(15 * 60)
        third = await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    changed = sum(o.changed for o in third.outcomes)
    assert changed > 0
    assert spy.calls["runs looked up"] == changed
    # One lookup per poll at most (not one per run), and no single-run read.
    assert spy.calls["get_runs"] <= polls
    assert spy.calls["get_run"] == 0
    github = [o for o in third.outcomes if o.target.source == "gh"]
    assert sum(o.changed for o in github) > 0
    assert sum(o.changed for o in github) < sum(o.seen for o in github)
    assert spy.calls["upsert_runs"] <= polls


async def test_a_queued_jenkins_build_costs_no_stage_request(
    store: Store, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    simulator, running, clock = sim
    describe = "/jenkins/job/team/job/app/5/wfapi/describe"
    runtime = await _runtime(running, clock, SpyStore(store))
    try:
        assert runtime.scheduler is not None
        await runtime.scheduler.run_once()
        waiting = await store.get_run(RunKey("jk", "team/app", "5"))  # queued at the start
        assert waiting is not None
        assert waiting.status is Status.QUEUED
        assert simulator.stats.by_path[describe] == 0  # build 5 does not exist yet
        assert runtime.metrics.api_requests[("jk", "404")] == 0
        clock.advance(90)  # it leaves the queue and starts
        await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    started = await store.get_run(RunKey("jk", "team/app", "5"))
    assert started is not None
    assert started.status is Status.RUNNING
    assert simulator.stats.by_path[describe] == 1
    assert await store.jobs_for(started.key)


def test_known_runs_is_a_set_of_hashes() -> None:
    known = KnownRuns()
    assert 1 not in known
    known.replace([5, -3, 9, 5, 2**63 - 1, -(2**63)])
    assert len(known) == 5
    assert all(key in known for key in (5, -3, 9, 2**63 - 1, -(2**63)))
    assert not any(key in known for key in (4, 10, -4, 0))
    known.replace([])
    assert 5 not in known

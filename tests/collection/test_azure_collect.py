"""Collection end to end for Azure Pipelines: `Runtime.open` with a `type: azure` source, the
scheduler's cycles against the simulator on 127.0.0.1, the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.domain import Status
from ciwatch.runtime import Runtime
from ciwatch.simulator import RunningSimulator, Scenario, Simulator, start_simulator
from ciwatch.simulator.azure import DEFAULT_AZURE_TOKEN
from ciwatch.simulator.scenario import JobSpec, ProjectSpec, RunSpec
from ciwatch.store import Store

START = datetime(2026, 1, 1, tzinfo=UTC)
JOBS = (JobSpec("compile", "Build"), JobSpec("unit", "Test"))


@dataclass
class World:
    clock: FakeClock
    running: RunningSimulator
    store: Store
    sim: Simulator

    async def runtime(self, **extra: Any) -> Runtime:
        source: dict[str, Any] = {
            "name": "az",
            "type": "azure",
            "url": f"{self.running.url}/azure",
            "organization": "fabrikam",
            "projects": ["Fabrikam"],
            "token": DEFAULT_AZURE_TOKEN,
            # The token bucket sleeps on the fake clock, which also drives the simulator.
            "requests_per_second": 100_000,
            **extra,
        }
        settings = Settings(
            database="sqlite:///unused.db",
            collection={"retries": 0, "jitter": 0.0},
            sources=[source],
        )
        return await Runtime.open(settings, clock=self.clock, store=self.store)


@pytest.fixture
async def world(store: Store) -> AsyncIterator[World]:
    clock = FakeClock(START)
    scenario = Scenario(
        projects=[
            ProjectSpec(
                "azure",
                "Fabrikam/web-ci",
                refs=("main", "dev"),
                jobs=JOBS,
                runs=(
                    RunSpec(at=-900, duration=120, result="failed"),
                    RunSpec(at=-600, duration=120),
                    RunSpec(at=-300, duration=120, ref="dev", result="failed"),
                    RunSpec(at=-30, queue=5, duration=300),
                ),
            ),
            ProjectSpec("azure", "Fabrikam/apps/api", runs=(RunSpec(at=-100, duration=30),)),
        ]
    )
    sim = Simulator(scenario, clock)
    async with await start_simulator(sim) as running:
        yield World(clock, running, store, sim)


async def _close(runtime: Runtime) -> None:
    for provider in runtime.providers.values():
        await provider.close()


async def test_cycles_collect_azure_pipelines(world: World) -> None:
    runtime = await world.runtime()
    try:
        assert runtime.scheduler is not None
        first = await runtime.scheduler.run_once()
        assert not first.failed, [o.error for o in first.failed]
        polled = {o.target.project for o in first.outcomes}
        assert polled == {"Fabrikam/web-ci", "Fabrikam/apps/api"}
        states = {(s.project, s.ref): s for s in await world.store.ref_states()}
        main = states[("Fabrikam/web-ci", "main")]
        assert main.status is Status.SUCCESS
        assert main.last_run.status is Status.RUNNING  # the build queued at -30 s runs
        assert states[("Fabrikam/web-ci", "dev")].status is Status.FAILED
        assert states[("Fabrikam/apps/api", "main")].status is Status.SUCCESS
        jobs = await world.store.jobs_for(main.last_run.key)
        assert {(j.name, j.stage) for j in jobs} == {("compile", "Build"), ("unit", "Test")}
        # Nothing moved: discovery lists the project's pipelines (one request), each target
        # costs one request from its cursor on, nothing changed; from the next cycle on the
        # answers are byte-identical, so they are not even decoded.
        for cycle in range(2):
            steady = await runtime.scheduler.run_once()
            assert not steady.failed
            assert steady.requests == 1 + len(steady.outcomes)
            assert sum(o.changed for o in steady.outcomes) == 0
            assert all(o.not_modified for o in steady.outcomes) is (cycle == 1)
        # The running build finishes: the next cycle stores it.
        world.clock.advance(400)
        await runtime.scheduler.run_once()
        states = {(s.project, s.ref): s for s in await world.store.ref_states()}
        assert states[("Fabrikam/web-ci", "main")].last_run.status is Status.SUCCESS
    finally:
        await _close(runtime)


def _test_requests(world: World) -> int:
    return sum(n for path, n in world.sim.stats.by_path.items() if "/_apis/test/" in path)


async def test_tests_true_stores_the_builds_test_results(world: World) -> None:
    runtime = await world.runtime(tests=True)
    try:
        assert runtime.scheduler is not None
        first = await runtime.scheduler.run_once()
        assert not first.failed, [o.error for o in first.failed]
        history = await world.store.history(source="az", project="Fabrikam/web-ci", limit=10)
        by_ref = {(r.ref, r.status): r for r in history.runs}
        broken = by_ref[("dev", Status.FAILED)]
        assert (broken.tests_total, broken.tests_failed, broken.tests_skipped) == (12, 2, 2)
        assert broken.tests_failing == ("unit.case_1", "unit.case_2")
        green = by_ref[("main", Status.SUCCESS)]
        assert (green.tests_total, green.tests_failed, green.tests_failing) == (12, 0, ())
        running = by_ref[("main", Status.RUNNING)]
        assert running.tests_total is None  # not finished: no test request
        # An unchanged cycle reads no test results: discovery, then one request a target.
        world.sim.stats.reset()
        steady = await runtime.scheduler.run_once()
        assert not steady.failed
        assert steady.requests == 1 + len(steady.outcomes)
        assert _test_requests(world) == 0
        # The running build finishes: its test runs are read once, when it is stored.
        world.clock.advance(400)
        world.sim.stats.reset()
        await runtime.scheduler.run_once()
        assert _test_requests(world) == 1  # a green build: the runs list, no results
        history = await world.store.history(source="az", project="Fabrikam/web-ci", limit=10)
        newest = max(history.runs, key=lambda r: int(r.run_id))
        assert (newest.status, newest.tests_total, newest.tests_failed) == (Status.SUCCESS, 12, 0)
    finally:
        await _close(runtime)


async def test_without_tests_no_test_request(world: World) -> None:
    runtime = await world.runtime()
    try:
        assert runtime.scheduler is not None
        first = await runtime.scheduler.run_once()
        assert not first.failed
        assert _test_requests(world) == 0
        history = await world.store.history(source="az", project="Fabrikam/web-ci", limit=10)
        assert history.runs and all(r.tests_total is None for r in history.runs)
    finally:
        await _close(runtime)


def _change_requests(world: World) -> int:
    return sum(n for path, n in world.sim.stats.by_path.items() if path.endswith("/changes"))


async def test_a_failed_build_carries_its_commit(world: World) -> None:
    runtime = await world.runtime()
    try:
        assert runtime.scheduler is not None
        first = await runtime.scheduler.run_once()
        assert not first.failed, [o.error for o in first.failed]
        history = await world.store.history(source="az", project="Fabrikam/web-ci", limit=10)
        failed = [r for r in history.runs if r.status is Status.FAILED]
        assert len(failed) == 2
        for run in failed:  # "Builds - Get Build Changes": the change whose id is the SHA
            assert run.commit_title and run.commit_author
            assert run.commit_email and run.commit_email.endswith("@example.com")
        others = [r for r in history.runs if r.status is not Status.FAILED]
        assert others and all(r.commit_title is None for r in others)
        assert _change_requests(world) == len(failed)  # one per failed build, none for others
        world.sim.stats.reset()
        steady = await runtime.scheduler.run_once()
        assert not steady.failed
        assert _change_requests(world) == 0  # unchanged: nothing read again
    finally:
        await _close(runtime)

"""Collection end to end for Azure Pipelines: `Runtime.open` with a `type: azure` source, the
scheduler's cycles against the simulator on 127.0.0.1, the real store (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime

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

    async def runtime(self) -> Runtime:
        source = {
            "name": "az",
            "type": "azure",
            "url": f"{self.running.url}/azure",
            "organization": "fabrikam",
            "projects": ["Fabrikam"],
            "token": DEFAULT_AZURE_TOKEN,
            # The token bucket sleeps on the fake clock, which also drives the simulator.
            "requests_per_second": 100_000,
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
    async with await start_simulator(Simulator(scenario, clock)) as running:
        yield World(clock, running, store)


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

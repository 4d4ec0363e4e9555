"""The forever loop on real time: adaptive intervals, a slow target that delays nobody, and a
stop that lets in-flight polls finish. Intervals are a fraction of a second so it stays short;
assertions are about counts and order, never about durations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ciwatch.clock import SystemClock
from ciwatch.config import GitHubSource, GitLabSource, Settings
from ciwatch.runtime import Runtime
from ciwatch.scheduler import Cadence
from ciwatch.simulator import Fault, RunningSimulator, Simulator, load_scenario, start_simulator
from ciwatch.store import Store

BASIC = Path(__file__).parents[2] / "examples" / "scenarios" / "basic.yaml"


@pytest.fixture
async def running() -> AsyncIterator[tuple[Simulator, RunningSimulator]]:
    sim = Simulator(load_scenario(BASIC), SystemClock())
    sim.clear_faults()
    server = await start_simulator(sim)
    try:
        yield sim, server
    finally:
        await server.stop()


async def _runtime(server: RunningSimulator, store: Store, cadence: Cadence) -> Runtime:
    settings = Settings(
        database="sqlite:///unused.db",
        collection={"retries": 0, "jitter": 0.0, "timeout": "30s"},
        sources=[
            GitLabSource(
                name="gl",
                url=server.gitlab_url,
                token="glpat-basic-example",
                projects=["platform/frontend/web", "tools/scripts"],
            ),
            GitHubSource(
                name="gh",
                url=server.github_url,
                token="ghp_basic_example",
                repos=["octo-org/web", "octo-org/api"],
                requests_per_second=1000,
            ),
        ],
    )
    runtime = await Runtime.open(settings, store=store)
    assert runtime.scheduler is not None
    runtime.scheduler.cadence = {"gl": cadence, "gh": cadence}
    return runtime


async def _run_for(runtime: Runtime, seconds: float) -> None:
    assert runtime.scheduler is not None
    stop = asyncio.Event()
    loop_task = asyncio.create_task(runtime.scheduler.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await asyncio.wait_for(loop_task, timeout=30)


def _polls(runtime: Runtime) -> dict[str, int]:
    assert runtime.scheduler is not None
    return {key[1]: entry.polls for key, entry in runtime.scheduler.entries.items()}


async def test_active_targets_are_polled_more_often(
    running: tuple[Simulator, RunningSimulator], store: Store
) -> None:
    _, server = running
    runtime = await _runtime(server, store, Cadence(interval=5.0, active_interval=0.2))
    try:
        await _run_for(runtime, 2.0)
    finally:
        for provider in runtime.providers.values():
            await provider.close()
    polls = _polls(runtime)
    # tools/scripts has a run stuck in `running`: active. platform/frontend/web is idle.
    assert polls["tools/scripts"] >= 4
    assert polls["platform/frontend/web"] == 1


async def test_a_slow_target_delays_nobody_and_stop_drains(
    running: tuple[Simulator, RunningSimulator], store: Store
) -> None:
    sim, server = running
    sim.add_fault(Fault(kind="slow", provider="github", path="*/octo-org/web/*", delay=4.0))
    runtime = await _runtime(server, store, Cadence(interval=0.2, active_interval=0.2))
    stop = asyncio.Event()
    assert runtime.scheduler is not None
    loop_task = asyncio.create_task(runtime.scheduler.run(stop))
    try:
        # While the slow poll is in flight (4 s), the others are polled several times: waited
        # for by count (at most 3.5 s), not for a fixed time, so a slow start does not matter.
        for _ in range(350):
            polls = _polls(runtime)
            if polls.get("octo-org/api", 0) >= 3 and polls.get("platform/frontend/web", 0) >= 3:
                break
            await asyncio.sleep(0.01)
        assert polls["octo-org/web"] == 0
        assert polls["octo-org/api"] >= 3
        assert polls["platform/frontend/web"] >= 3
    finally:
        stop.set()
        await asyncio.wait_for(loop_task, timeout=30)
        for provider in runtime.providers.values():
            await provider.close()
    # Stopping let the in-flight slow poll finish and store its result.
    assert _polls(runtime)["octo-org/web"] == 1
    state = await store.get_target_state("gh", "octo-org/web")
    assert state is not None
    assert state.healthy

"""GitHub `tests: true` end to end: the real poller against the simulator on 127.0.0.1, the real
store (SQLite and PostgreSQL). The failing tests of a changed failed run come from check-run
annotations, at most `1 + MAX_ANNOTATED` requests per failed run, none per unchanged poll."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.domain import Status
from ciwatch.providers.github_poll import MAX_ANNOTATED
from ciwatch.runtime import Runtime
from ciwatch.simulator import (
    DEFAULT_GITHUB_TOKEN,
    RunningSimulator,
    Scenario,
    Simulator,
    start_simulator,
)
from ciwatch.simulator.faults import Fault
from ciwatch.simulator.scenario import JobSpec, ProjectSpec, RunSpec
from ciwatch.store import Store

START = datetime(2026, 1, 1, tzinfo=UTC)
JOBS = (JobSpec("build", "build"), JobSpec("unit", "test"), JobSpec("lint", "test"))


@dataclass
class World:
    clock: FakeClock
    running: RunningSimulator
    store: Store
    sim: Simulator

    async def runtime(self, **extra: Any) -> Runtime:
        source: dict[str, Any] = {
            "name": "gh",
            "type": "github",
            "url": f"{self.running.url}/github",
            "repos": ["octo-org/app"],
            "token": DEFAULT_GITHUB_TOKEN,
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
    failing = (
        JobSpec("build", "build"),
        JobSpec("unit", "test", result="failed"),
        JobSpec("lint", "test", result="failed"),
    )
    scenario = Scenario(
        projects=[
            ProjectSpec(
                "github",
                "octo-org/app",
                jobs=JOBS,
                runs=(
                    RunSpec(at=-900, duration=120),
                    RunSpec(at=-600, duration=120, result="failed", jobs=failing),
                    RunSpec(at=-30, queue=5, duration=300, result="failed", jobs=failing),
                ),
            ),
        ]
    )
    sim = Simulator(scenario, clock)
    async with await start_simulator(sim) as running:
        yield World(clock, running, store, sim)


async def _close(runtime: Runtime) -> None:
    for provider in runtime.providers.values():
        await provider.close()


def _check_requests(world: World) -> tuple[int, int]:
    """(commit check-run lists, annotation lists) served since the last reset."""
    paths = world.sim.stats.by_path.items()
    lists = sum(n for path, n in paths if path.endswith("/check-runs"))
    notes = sum(n for path, n in paths if path.endswith("/annotations"))
    return lists, notes


async def test_a_failed_run_names_its_failing_tests_from_annotations(world: World) -> None:
    runtime = await world.runtime(tests=True)
    try:
        assert runtime.scheduler is not None
        first = await runtime.scheduler.run_once()
        assert not first.failed, [o.error for o in first.failed]
        runs = (await world.store.history(source="gh", project="octo-org/app", limit=10)).runs
        by_status = {r.status: r for r in runs}
        failed = by_status[Status.FAILED]
        # One name per failure annotation of the failed jobs (the runner's "Process completed
        # with exit code 1." and the warnings are not tests); GitHub gives no totals.
        assert set(failed.tests_failing) == {
            "unit::case_1",
            "unit::case_2",
            "lint::case_1",
            "lint::case_2",
        }
        assert failed.tests_failed == 4
        assert (failed.tests_total, failed.tests_skipped, failed.tests_errored) == (None,) * 3
        green = by_status[Status.SUCCESS]
        assert (green.tests_failed, green.tests_failing) == (None, ())
        running = by_status[Status.RUNNING]
        assert (running.tests_failed, running.tests_failing) == (None, ())
        # Only the failed run: its commit's check runs, then its two annotated failed jobs.
        assert _check_requests(world) == (1, 2)
        # An unchanged cycle reads nothing more.
        world.sim.stats.reset()
        steady = await runtime.scheduler.run_once()
        assert not steady.failed
        assert steady.requests == len(steady.outcomes)
        assert _check_requests(world) == (0, 0)
        # The running run fails: read once, within the bound.
        world.clock.advance(400)
        world.sim.stats.reset()
        await runtime.scheduler.run_once()
        lists, notes = _check_requests(world)
        assert (lists, notes) == (1, 2)
        assert lists + notes <= 1 + MAX_ANNOTATED
        runs = (await world.store.history(source="gh", project="octo-org/app", limit=10)).runs
        newest = max(runs, key=lambda r: int(r.run_id))
        assert newest.status is Status.FAILED
        assert newest.tests_failed == 4 and len(newest.tests_failing) == 4
    finally:
        await _close(runtime)


async def test_without_tests_no_check_run_is_read(world: World) -> None:
    runtime = await world.runtime()
    try:
        assert runtime.scheduler is not None
        first = await runtime.scheduler.run_once()
        assert not first.failed
        assert _check_requests(world) == (0, 0)
        runs = (await world.store.history(source="gh", project="octo-org/app", limit=10)).runs
        assert runs and all(r.tests_failed is None and not r.tests_failing for r in runs)
    finally:
        await _close(runtime)


async def test_a_token_without_checks_permission_stores_the_run_without_tests(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    # GitHub answers 403 to a fine-grained token without the Checks permission.
    world.sim.add_fault(Fault(kind="status", status=403, provider="github", path="*/check-runs"))
    runtime = await world.runtime(tests=True)
    try:
        assert runtime.scheduler is not None
        with caplog.at_level(logging.WARNING, logger="ciwatch.providers.github_poll"):
            first = await runtime.scheduler.run_once()
        assert not first.failed, [o.error for o in first.failed]
        runs = (await world.store.history(source="gh", project="octo-org/app", limit=10)).runs
        failed = next(r for r in runs if r.status is Status.FAILED)
        assert (failed.tests_failed, failed.tests_failing) == (None, ())
        assert {j.name for j in await world.store.jobs_for(failed.key)} == {"build", "unit", "lint"}
        assert "Checks (read) permission" in caplog.text
        assert _check_requests(world) == (1, 0)
    finally:
        await _close(runtime)

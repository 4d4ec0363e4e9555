"""Commits and test reports end to end (issue 13): the real pollers against the simulator,
storing into the real store (SQLite and PostgreSQL). The extra requests (a failed run's commit
on GitLab and Jenkins, the test report with `tests: true`) are made for changed runs only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ciwatch.clock import FakeClock
from ciwatch.domain import Run, Status
from ciwatch.simulator import Simulator, load_scenario, start_simulator
from ciwatch.store import Store
from collection.test_collect import BASIC, START, World, _close_keep_store


@pytest.fixture
async def world(store: Store) -> AsyncIterator[World]:
    clock = FakeClock(START)
    sim = Simulator(load_scenario(BASIC), clock)
    sim.clear_faults()
    running = await start_simulator(sim)
    try:
        yield World(sim, running, clock, store)
    finally:
        await running.stop()


TESTS_ON: dict[str, Any] = {
    "gitlab": {"tests": True},
    "github": {"tests": True},
    "jenkins": {"tests": True},
}


async def _runs(world: World, source: str, project: str) -> list[Run]:
    return (await world.store.history(source=source, project=project, limit=100)).runs


async def _cycle(world: World, **overrides: Any) -> tuple[int, int]:
    """One poll of every target: (requests made, requests of the second, unchanged, cycle)."""
    runtime = await world.runtime(**overrides)
    try:
        assert runtime.scheduler is not None
        first = await runtime.scheduler.run_once()
        second = await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    assert not first.failed and not second.failed
    assert second.requests == len(second.outcomes)  # unchanged polls: nothing extra
    return first.requests, second.requests


async def test_failed_runs_carry_their_commit_and_finished_runs_their_tests(world: World) -> None:
    await _cycle(world, **TESTS_ON)
    # GitLab: the failed develop pipeline, its commit read from the commits API.
    develop = [r for r in await _runs(world, "gl", "platform/backend/api") if r.ref == "develop"]
    failed = next(r for r in develop if r.status is Status.FAILED)
    assert failed.commit_title and failed.commit_author and failed.commit_email
    assert failed.commit_email.endswith("@example.com")
    assert failed.tests_failed and failed.tests_failed > 0
    assert failed.tests_total and failed.tests_total > failed.tests_failed
    assert failed.tests_failing and all("::case_" in name for name in failed.tests_failing)
    # A green pipeline: a report without failures, and no commit read (GitLab's API pipeline
    # has none: the commit is read for failed runs only).
    green = next(
        r for r in await _runs(world, "gl", "platform/backend/api") if r.status is Status.SUCCESS
    )
    assert green.tests_failed == 0 and green.tests_failing == ()
    assert green.commit_title is None
    # Jenkins: the failed branch build, its change set and its JUnit report.
    login = [r for r in await _runs(world, "jk", "team/gateway") if r.ref == "feature/login"]
    broken = next(r for r in login if r.status is Status.FAILED)
    assert broken.commit_author and broken.commit_email and broken.commit_title
    assert broken.tests_failed and broken.tests_failing
    # GitHub: every run carries `head_commit`. Check-run annotations are read for failed runs
    # only (tests/collection/test_github_tests.py) and no GitHub run here is failed (the failed
    # one was re-run green): no check run is read, and GitHub never gives a total.
    web = await _runs(world, "gh", "octo-org/web")
    assert web and all(r.commit_title and r.commit_author for r in web)
    assert all(r.tests_total is None and r.tests_failed is None for r in web)
    assert not any("check-runs" in path for path in world.sim.stats.by_path)


async def test_without_tests_no_report_is_read(world: World) -> None:
    plain, _ = await _cycle(world)
    runs = await _runs(world, "gl", "platform/backend/api")
    assert all(r.tests_total is None for r in runs)
    # The failed run's commit is read whatever `tests` says.
    assert any(r.commit_title for r in runs if r.status is Status.FAILED)
    before = world.sim.stats.by_path.copy()
    assert not any("test_report" in path or "testReport" in path for path in before)
    assert plain > 0

"""Flaky jobs end to end: the real pollers read basic.yaml's simulator (a GitLab retry, a GitHub
re-run as attempt 2, a Jenkins rebuild of a failed build), the runs and jobs go through the real
parse path into the store (SQLite and PostgreSQL), and the flaky query finds each provider's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.runtime import Runtime
from ciwatch.simulator import Simulator, load_scenario, start_simulator
from ciwatch.store import SqlStore
from ciwatch.store.reliability import flaky_jobs
from collection.basic import BASIC, START, basic_sources


@pytest.fixture
async def collected(store: SqlStore) -> AsyncIterator[tuple[SqlStore, FakeClock]]:
    clock = FakeClock(START)
    sim = Simulator(load_scenario(BASIC), clock)
    sim.clear_faults()
    running = await start_simulator(sim)
    try:
        settings = Settings(
            database="sqlite:///unused.db",
            collection={"retries": 2, "jitter": 0.0},
            sources=basic_sources(running, requests_per_second=100_000),
        )
        runtime = await Runtime.open(settings, clock=clock, store=store)
        try:
            assert runtime.scheduler is not None
            report = await runtime.scheduler.run_once()
            assert not report.failed, [o.error for o in report.failed]
        finally:
            for provider in runtime.providers.values():
                await provider.close()
        yield store, clock
    finally:
        await running.stop()


async def test_each_providers_retry_is_a_flaky_job(
    collected: tuple[SqlStore, FakeClock],
) -> None:
    store, clock = collected
    found = await store.read(
        "flaky", lambda conn: flaky_jobs(conn, now=clock.now(), window=timedelta(days=1))
    )
    by_job = {(f.source, f.project, f.job): f for f in found}
    # GitLab: pipeline 2's `unit` failed, its retry (a new job id, same pipeline) passed.
    unit = by_job[("gl", "platform/backend/api", "unit")]
    assert (unit.provider, unit.ref, unit.stage) == ("gitlab", "main", "test")
    assert unit.failures >= 1 and unit.flaky_runs == 1 and unit.flaky_commits == 1
    assert 0 < unit.rate <= 1
    assert unit.url is not None and unit.url.startswith("http")
    # GitHub: octo-org/web's run failed in attempt 1 and passed in attempt 2.
    test = by_job[("gh", "octo-org/web", "test")]
    assert (test.provider, test.failures, test.flaky_runs, test.ref) == ("github", 1, 1, "main")
    assert ("gh", "octo-org/web", "build") not in by_job  # it passed in attempt 1
    # Jenkins: team/app #2 failed, #3 rebuilt the same commit and passed.
    stage = by_job[("jk", "team/app", "Test")]
    assert (stage.provider, stage.flaky_runs) == ("jenkins", 1)
    assert stage.url is not None and stage.url.endswith("/job/team/job/app/2/")
    # A job that never failed is not listed.
    assert ("gl", "platform/backend/api", "compile") not in by_job

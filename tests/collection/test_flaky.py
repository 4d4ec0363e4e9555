"""Flaky jobs end to end: the real pollers read basic.yaml's simulator (a GitLab retry, a GitHub
re-run as attempt 2, a Jenkins rebuild of a failed build), the runs and jobs go through the real
parse path into the store (SQLite and PostgreSQL), and the flaky query finds each provider's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.runtime import Runtime
from ciwatch.simulator import Simulator, load_scenario, start_simulator
from ciwatch.store import SqlStore
from ciwatch.store.reliability import flaky_jobs
from ciwatch.web.app import create_app
from ciwatch.web.schemas import FlakyAnswer
from collection.basic import BASIC, START, basic_sources


@pytest.fixture
async def collected(store: SqlStore) -> AsyncIterator[tuple[SqlStore, FakeClock, Runtime]]:
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
        yield store, clock, runtime
    finally:
        await running.stop()


async def test_each_providers_retry_is_a_flaky_job(
    collected: tuple[SqlStore, FakeClock, Runtime],
) -> None:
    store, clock, _ = collected
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


async def test_the_api_and_the_page_list_them(
    collected: tuple[SqlStore, FakeClock, Runtime],
) -> None:
    _, _, runtime = collected
    app = create_app(runtime, metrics_max_age=0.0)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ciwatch.test") as c:
            body = (await c.get("/api/v1/flaky")).json()
            FlakyAnswer.model_validate(body)
            assert body["window_seconds"] == 14 * 86400
            jobs = {(j["source"], j["project"], j["job"]): j for j in body["jobs"]}
            assert set(jobs) == {
                ("gl", "platform/backend/api", "unit"),
                ("gh", "octo-org/web", "test"),
                ("jk", "team/app", "Test"),
            }
            unit = jobs[("gl", "platform/backend/api", "unit")]
            assert unit["flaky_runs"] == 1 and unit["stage"] == "test" and unit["ref"] == "main"
            assert unit["links"]["web"].endswith("/platform/backend/api/-/jobs/2001")
            assert unit["links"]["dashboard"] == (
                "http://ciwatch.test/projects/gl/platform/backend/api"
            )
            only = (await c.get("/api/v1/flaky", params={"source": "gh"})).json()
            assert [j["job"] for j in only["jobs"]] == ["test"]
            assert (await c.get("/api/v1/flaky", params={"project": "nope"})).json()["jobs"] == []
            # Bad input is a 400 naming the field, and changes nothing.
            for bad in ("soon", "0s", "91d"):
                reply = await c.get("/api/v1/flaky", params={"window": bad})
                assert reply.status_code == 400, reply.text
                assert reply.json()["detail"]["field"] == "window"
            assert (await c.get("/api/v1/flaky", params={"limit": 0})).status_code == 422
            # The page lists them, filters by source and project, and the nav links to it.
            page = await c.get("/flaky")
            assert page.status_code == 200
            assert page.text.count('class="flaky-row"') == 3
            assert 'href="/flaky" aria-current="page">Flaky jobs</a>' in page.text
            assert "/platform/backend/api/-/jobs/2001" in page.text
            narrowed = await c.get("/flaky", params={"source": "jk", "project": "team/app"})
            assert narrowed.text.count('class="flaky-row"') == 1
            assert "Test" in narrowed.text
            none = await c.get("/flaky", params={"project": "nope"})
            assert "No job failed and then passed" in none.text
            home = await c.get("/")
            assert 'href="/flaky">Flaky jobs</a>' in home.text
            # The project page shows its refs' time to recovery.
            project = await c.get("/projects/gl/platform/backend/api")
            assert project.status_code == 200
            assert "Time to recovery" in project.text
            assert project.text.count('class="ttr-row"') == 2  # main and develop
            states = (await c.get("/api/v1/projects", params={"source": "gl"})).json()
            develop = next(p for p in states["projects"] if p["ref"] == "develop")
            assert develop["recovery"]["breaks"] == 1
            assert develop["recovery"]["failure_rate"] == 1.0
            main = next(
                p
                for p in states["projects"]
                if (p["project"], p["ref"]) == ("platform/backend/api", "main")
            )
            # Pipeline 2 failed, then its retry passed: a retried pipeline keeps its id, so the
            # stored run is green and the run history holds no red period (docs/dashboard.md).
            assert main["recovery"]["breaks"] == 0
            assert main["recovery"]["failure_rate"] == 0.0
    finally:
        await app.state.metrics_cache.aclose()

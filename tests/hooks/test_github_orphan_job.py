"""A GitHub `workflow_job` whose run is not stored yet: the job is stored before the 202, and
the run (with its jobs) is read from the GitHub API in the background when the source is polled
(a real loopback server answering with the REST description's examples). On SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ciwatch.clock import FakeClock
from ciwatch.domain import Run, RunKey, Status
from ciwatch.providers.registry import build_provider
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import SqlStore

from .conftest import NOW, Server, build_app, serving, settings
from .payloads import fixture, github_headers

JOB_EVENT = "github/webhooks/octokit/api.github.com/workflow_job/in_progress.payload.json"
EVENT = json.loads(fixture(JOB_EVENT))
PROJECT = EVENT["repository"]["full_name"]
RUN_ID = str(EVENT["workflow_job"]["run_id"])
JOB_ID = str(EVENT["workflow_job"]["id"])
KEY = RunKey("gh", PROJECT, RUN_ID)


def api_run() -> dict[str, Any]:
    run = json.loads(fixture("github/api/workflow-run.json"))
    run.update(id=int(RUN_ID), status="in_progress", conclusion=None)
    return dict(run)


def api_jobs() -> dict[str, Any]:
    page = json.loads(fixture("github/api/workflow-run-jobs-list.json"))
    (job,) = page["jobs"]
    job.update(run_id=int(RUN_ID))
    page["jobs"] = [job, dict(job, id=int(JOB_ID), status="in_progress", conclusion=None)]
    return dict(page)


@dataclass
class GithubApi:
    asked: list[str] = field(default_factory=list)

    async def run(self, request: web.Request) -> web.Response:
        self.asked.append(request.path)
        return web.json_response(api_run())

    async def jobs(self, request: web.Request) -> web.Response:
        self.asked.append(request.path)
        return web.json_response(api_jobs())


@pytest.fixture
async def github_api() -> AsyncIterator[tuple[str, GithubApi]]:
    api = GithubApi()
    app = web.Application()
    app.router.add_get("/repos/{owner}/{repo}/actions/runs/{id}", api.run)
    app.router.add_get("/repos/{owner}/{repo}/actions/runs/{id}/jobs", api.jobs)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", api
    finally:
        await runner.cleanup()


@pytest.fixture
async def polled(store: SqlStore, github_api: tuple[str, GithubApi]) -> AsyncIterator[Server]:
    """The webhook app over `store`, with a real GitHub provider for source `gh`."""
    url, _ = github_api
    config = settings().model_copy(deep=True)
    gh = next(s for s in config.sources if s.name == "gh")
    gh = gh.model_copy(update={"url": url, "repos": [PROJECT]})
    config.sources[:] = [gh if s.name == "gh" else s for s in config.sources]
    clock = FakeClock(NOW)
    provider = build_provider(gh, config.collection, clock)
    runtime = Runtime(config, store, clock, CollectionMetrics(), providers={"gh": provider})
    app = build_app(runtime)
    try:
        async with serving(app) as base, aiohttp.ClientSession() as http:
            yield Server(base, runtime, http, app)
            await Server(base, runtime, http, app).settle()
    finally:
        await provider.close()


async def post_job(server: Server, delivery: str) -> None:
    body = fixture(JOB_EVENT)
    headers = github_headers(body, "workflow_job", delivery=delivery)
    status, answer = await server.post("/hooks/github/gh", body, headers)
    assert status == 202, answer
    assert answer["status"] == "accepted", answer


async def test_an_orphan_job_is_stored_and_its_run_fetched(
    polled: Server, github_api: tuple[str, GithubApi]
) -> None:
    _, api = github_api
    await post_job(polled, "d1")
    jobs = await polled.runtime.store.jobs_for(KEY)
    assert JOB_ID in {j.job_id for j in jobs}
    await polled.settle()
    run = await polled.runtime.store.get_run(KEY)
    assert run is not None
    assert (run.status, run.project, run.run_id) == (Status.RUNNING, PROJECT, RUN_ID)
    jobs = await polled.runtime.store.jobs_for(KEY)
    assert len(jobs) == 2
    assert api.asked == [
        f"/repos/{PROJECT}/actions/runs/{RUN_ID}",
        f"/repos/{PROJECT}/actions/runs/{RUN_ID}/jobs",
    ]


async def test_a_job_of_a_stored_run_fetches_nothing(
    polled: Server, github_api: tuple[str, GithubApi]
) -> None:
    _, api = github_api
    stored = Run(
        source="gh",
        provider="github",
        project=PROJECT,
        run_id=RUN_ID,
        status=Status.RUNNING,
        updated_at=NOW,
    )
    await polled.runtime.store.upsert_runs([stored], [])
    await post_job(polled, "d1")
    await polled.settle()
    assert api.asked == []
    assert {j.job_id for j in await polled.runtime.store.jobs_for(KEY)} == {JOB_ID}

"""A GitHub `workflow_run` webhook of a failed run with `tests: true`: the background read of the
run's details (its jobs) also names its failing tests from check-run annotations, as a poll
does. A real uvicorn server over the `store` fixture (SQLite and PostgreSQL), the source's
poller reading the simulated GitHub over loopback HTTP; the delivery wraps the simulator's own
run in a `workflow_run` event, signed as GitHub signs it."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.config.models import CollectionSettings
from ciwatch.domain import RunKey, Status
from ciwatch.providers import github
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.simulator import DEFAULT_GITHUB_TOKEN, Scenario, Simulator, start_simulator
from ciwatch.simulator.scenario import JobSpec, ProjectSpec, RunSpec
from ciwatch.store import Store

from .conftest import NOW, Server, build_app, serving

SECRET = "github-hook-secret"
REPO = "octo-org/app"
JOBS = (JobSpec("build", "build"), JobSpec("unit", "test", result="failed"))


@dataclass
class GitHub:
    server: Server
    store: Store
    sim: Simulator
    http: aiohttp.ClientSession
    api: str

    async def delivery(self, run_id: int) -> bytes:
        headers = {"Authorization": f"Bearer {DEFAULT_GITHUB_TOKEN}"}
        url = f"{self.api}/repos/{REPO}/actions/runs/{run_id}"
        async with self.http.get(url, headers=headers) as resp:
            run = await resp.json()
        event = {
            "action": "completed",
            "workflow_run": run,
            "workflow": {"name": run["name"]},
            "repository": run["repository"],
        }
        return json.dumps(event).encode()

    async def post(self, body: bytes) -> Any:
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "workflow_run",
            "X-GitHub-Delivery": hashlib.sha256(body).hexdigest(),
            "X-Hub-Signature-256": signature,
        }
        return await self.server.post("/hooks/github/gh", body, headers)


@pytest.fixture
async def gh(store: Store) -> AsyncIterator[GitHub]:
    clock = FakeClock(NOW)
    scenario = Scenario(
        projects=[
            ProjectSpec(
                "github",
                REPO,
                jobs=JOBS,
                runs=(
                    RunSpec(at=-600, duration=120),
                    RunSpec(at=-300, duration=60, result="failed"),
                ),
            )
        ]
    )
    sim = Simulator(scenario, clock)
    async with await start_simulator(sim) as running:
        source = {
            "name": "gh",
            "type": "github",
            "url": f"{running.url}/github",
            "repos": [REPO],
            "token": DEFAULT_GITHUB_TOKEN,
            "webhook_secret": SECRET,
            "tests": True,
        }
        settings = Settings(database="sqlite:///unused.db", sources=[source])
        provider = github.build(settings.sources[0], CollectionSettings(retries=0), clock, None)
        runtime = Runtime(settings, store, clock, CollectionMetrics(), {"gh": provider})
        app = build_app(runtime)
        try:
            async with serving(app) as url, aiohttp.ClientSession() as http:
                server = Server(url, runtime, http, app)
                yield GitHub(server, store, sim, http, f"{running.url}/github")
                await server.settle()
        finally:
            await provider.close()


async def _run_ids(gh: GitHub) -> dict[str, int]:
    headers = {"Authorization": f"Bearer {DEFAULT_GITHUB_TOKEN}"}
    async with gh.http.get(f"{gh.api}/repos/{REPO}/actions/runs", headers=headers) as resp:
        runs = (await resp.json())["workflow_runs"]
    return {r["conclusion"]: r["id"] for r in runs}


async def test_a_failed_runs_webhook_reads_its_failing_tests(gh: GitHub) -> None:
    ids = await _run_ids(gh)
    gh.sim.stats.reset()
    status, answer = await gh.post(await gh.delivery(ids["failure"]))
    assert (status, answer["status"], answer["changed"]) == (202, "accepted", True)
    await gh.server.settle()  # the jobs, and the tests, are read in the background
    run = await gh.store.get_run(RunKey("gh", REPO, str(ids["failure"])))
    assert run is not None and run.status is Status.FAILED
    assert run.tests_failing == ("unit::case_1", "unit::case_2")
    assert (run.tests_failed, run.tests_total) == (2, None)
    paths = gh.sim.stats.by_path
    assert sum(n for p, n in paths.items() if p.endswith("/check-runs")) == 1
    assert sum(n for p, n in paths.items() if p.endswith("/annotations")) == 1


async def test_a_green_runs_webhook_reads_no_check_run(gh: GitHub) -> None:
    ids = await _run_ids(gh)
    gh.sim.stats.reset()
    status, _ = await gh.post(await gh.delivery(ids["success"]))
    assert status == 202
    await gh.server.settle()
    run = await gh.store.get_run(RunKey("gh", REPO, str(ids["success"])))
    assert run is not None and run.status is Status.SUCCESS
    assert (run.tests_failed, run.tests_failing) == (None, ())
    assert not any("check-runs" in path for path in gh.sim.stats.by_path)

"""`POST /hooks/azure/{source}` end to end: a real uvicorn server over the `store` fixture
(SQLite and PostgreSQL), the source's poller reading the simulated Azure DevOps over loopback
HTTP, Microsoft's service hook samples (tests/fixtures/azure/webhooks) as the deliveries."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.config.models import CollectionSettings
from ciwatch.domain import RunKey, Status
from ciwatch.providers.azure_poll import make_provider
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.simulator import Scenario, Simulator, start_simulator
from ciwatch.simulator.azure import DEFAULT_AZURE_TOKEN, _guid
from ciwatch.simulator.scenario import JobSpec, ProjectSpec, RunSpec
from ciwatch.store import Store

from .conftest import NOW, Server, build_app, serving

FIXTURES = Path(__file__).parents[1] / "fixtures" / "azure" / "webhooks"
SECRET = "azure-hook-secret"
PROJECT = "Fabrikam"
JOBS = (JobSpec("compile", "Build"), JobSpec("unit", "Test"))


def sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


AUTH = basic("ciwatch", SECRET)


def naming(name: str, build_id: int, event_id: str | None = None) -> str:
    """A Microsoft sample, about build `build_id` of the simulated project."""
    event = sample(name)
    event["resource"]["run"]["id"] = build_id
    event["resourceContainers"]["project"]["id"] = _guid(f"project/{PROJECT}")
    if event_id is not None:
        event["id"] = event_id
    return json.dumps(event)


@dataclass
class Azure:
    server: Server
    store: Store
    sim: Simulator
    sim_url: str

    async def post(self, body: str | bytes, headers: dict[str, str] | None = None) -> Any:
        return await self.server.post("/hooks/azure/az", body, AUTH if headers is None else headers)


@pytest.fixture
async def azure(store: Store) -> AsyncIterator[Azure]:
    clock = FakeClock(NOW)
    scenario = Scenario(
        projects=[
            ProjectSpec(
                "azure",
                f"{PROJECT}/web-ci",
                jobs=JOBS,
                runs=(
                    RunSpec(at=-600, duration=120),
                    RunSpec(at=-300, duration=60, result="failed"),
                ),
            ),
            ProjectSpec("azure", f"{PROJECT}/legacy/old", runs=(RunSpec(at=-600, duration=60),)),
        ]
    )
    sim = Simulator(scenario, clock)
    async with await start_simulator(sim) as running:
        source = {
            "name": "az",
            "type": "azure",
            "url": f"{running.url}/azure",
            "organization": "fabrikam",
            "projects": [PROJECT],
            "pipelines": ["web-*"],
            "token": DEFAULT_AZURE_TOKEN,
            "webhook_secret": SECRET,
        }
        open_ = {**source, "name": "open", "webhook_secret": None}
        settings = Settings(database="sqlite:///unused.db", sources=[source, open_])
        provider = make_provider(settings.sources[0], CollectionSettings(retries=0), clock, None)  # type: ignore[arg-type]
        runtime = Runtime(settings, store, clock, CollectionMetrics(), {"az": provider})
        app = build_app(runtime)
        try:
            async with serving(app) as url, aiohttp.ClientSession() as http:
                server = Server(url, runtime, http, app)
                yield Azure(server, store, sim, running.url)
                await server.settle()
        finally:
            await provider.close()


async def test_authentication(azure: Azure) -> None:
    body = naming("run-state-changed.json", 10)
    for headers in (
        {"Content-Type": "application/json"},
        basic("ciwatch", "wrong"),
        {"Authorization": "Bearer " + SECRET},
        {"Authorization": "Basic not-base64!"},
    ):
        status, answer = await azure.post(body, headers)
        assert status == 401, headers
        assert answer["error"] == "missing or wrong Basic authentication"
    status, answer = await azure.server.post("/hooks/azure/open", body, AUTH)
    assert status == 401 and "no webhook_secret" in answer["error"]
    status, _ = await azure.server.post("/hooks/azure/nope", body, AUTH)
    assert status == 404
    # Any user name: only the password is the secret.
    status, answer = await azure.post(body, basic("someone-else", SECRET))
    assert (status, answer["status"]) == (202, "accepted")


async def test_run_state_changed_reads_and_stores_the_build(azure: Azure) -> None:
    status, answer = await azure.post(naming("run-state-changed.json", 10))
    assert (status, answer["status"], answer["changed"]) == (202, "accepted", True)
    assert answer["delivery"] == "62e4351f-1c24-40f9-8510-7af03692ab45"  # the event's id
    run = await azure.store.get_run(RunKey("az", f"{PROJECT}/web-ci", "10"))
    assert run is not None
    assert (run.provider, run.status, run.ref) == ("azure", Status.SUCCESS, "main")
    await azure.server.settle()  # a run event's jobs are read in the background
    assert sorted(job.name for job in await azure.store.jobs_for(run.key)) == ["compile", "unit"]
    status, answer = await azure.post(naming("run-state-changed.json", 10))
    assert (status, answer["status"]) == (202, "duplicate")


async def test_stage_state_changed_stores_the_jobs_too(azure: Azure) -> None:
    status, answer = await azure.post(naming("stage-state-changed.json", 20))
    assert (status, answer["status"], answer["changed"]) == (202, "accepted", True)
    key = RunKey("az", f"{PROJECT}/web-ci", "20")
    run = await azure.store.get_run(key)
    assert run is not None and run.status is Status.FAILED
    jobs = {job.name: job for job in await azure.store.jobs_for(key)}
    assert {name: (job.stage, job.status) for name, job in jobs.items()} == {
        "compile": ("Build", Status.SUCCESS),
        "unit": ("Test", Status.FAILED),
    }


async def simulated_build(azure: Azure, build_id: int) -> dict[str, Any]:
    """The build as the simulated REST API serves it (the resource of a `build.complete`)."""
    headers = {"Authorization": aiohttp.encode_basic_auth("", DEFAULT_AZURE_TOKEN)}
    url = f"{azure.sim_url}/azure/fabrikam/{PROJECT}/_apis/build/builds/{build_id}"
    async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
        build: dict[str, Any] = await resp.json()
    return build


async def test_build_complete_with_a_whole_build_is_stored_from_the_payload(azure: Azure) -> None:
    build = await simulated_build(azure, 20)
    requests = azure.sim.stats.total
    event = {"id": "e-20", "eventType": "build.complete", "publisherId": "tfs", "resource": build}
    status, answer = await azure.post(json.dumps(event))
    assert (status, answer["status"]) == (202, "accepted")
    assert answer["run"] == {"project": f"{PROJECT}/web-ci", "run_id": "20"}
    assert azure.sim.stats.total == requests  # stored from the payload alone
    await azure.server.settle()  # the timeline is read in the background
    jobs = await azure.store.jobs_for(RunKey("az", f"{PROJECT}/web-ci", "20"))
    assert sorted(job.name for job in jobs) == ["compile", "unit"]


async def test_unwatched_pipelines_are_not_stored(azure: Azure) -> None:
    build = await simulated_build(azure, 11)
    assert build["definition"]["path"] == "\\legacy"
    event = {"id": "e-11", "eventType": "build.complete", "resource": build}
    status, answer = await azure.post(json.dumps(event))
    assert (status, answer["status"]) == (202, "ignored")
    assert "not watched" in answer["reason"]
    status, answer = await azure.post(naming("run-state-changed.json", 11, "e-11b"))
    assert (status, answer["status"], answer["changed"]) == (202, "accepted", False)
    assert await azure.store.get_run(RunKey("az", f"{PROJECT}/legacy/old", "11")) is None


async def test_old_build_complete_of_an_unknown_build_is_503(azure: Azure) -> None:
    # resourceVersion 1.0 names its project by id only; that project does not exist here, so
    # reading the build fails: 503, and Azure DevOps retries the delivery.
    status, answer = await azure.post((FIXTURES / "build.complete.json").read_bytes())
    assert status == 503 and answer["error"] == "store unavailable"


async def test_other_events_and_bad_bodies(azure: Azure) -> None:
    status, answer = await azure.post((FIXTURES / "job-state-changed.json").read_bytes())
    assert (status, answer["status"]) == (202, "ignored")
    assert "ms.vss-pipelines.job-state-changed-event" in answer["reason"]
    status, answer = await azure.post(b'{"eventType": "ms.vss-pipelines.run-state-changed-event"}')
    assert status == 400 and "resource.run.id" in answer["detail"]
    status, answer = await azure.post(b"{not json")
    assert status == 400
    text = {"Authorization": AUTH["Authorization"], "Content-Type": "text/plain"}
    status, _ = await azure.post(naming("run-state-changed.json", 10), text)
    assert status == 415

"""One truth about a ref's colour (issue 10): over a simulator scenario stepped on a fake clock,
the real pollers store what the simulator serves, and at every step the refs that the dashboard
marks red, that `/api/v1/projects` calls failing, that `/cc.xml` calls Failure and that
`/metrics` gives `ci_ref_failing 1` are the same set, also while a red ref has a new run queued
or running (when `ci_pipeline_status` says queued or running)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from ciwatch.clock import FakeClock
from ciwatch.config import GitHubSource, GitLabSource, JenkinsSource, Settings
from ciwatch.runtime import Runtime
from ciwatch.simulator import RunningSimulator, Simulator, scenario_from_dict, start_simulator
from ciwatch.store import SqlStore
from ciwatch.web.app import create_app

from .harness import serve
from .test_dashboard import elements
from .test_metrics import Exposition

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
Ref = tuple[str, str, str]  # source, project, ref

# Minutes are relative to START. Comments say what each run does and when.
SCENARIO: dict[str, Any] = {
    "name": "colours",
    "seed": 7,
    "tokens": {"gitlab": ["glpat-c"], "github": ["ghp_c"], "jenkins": {"bot": "jk-c"}},
    "projects": [
        {
            "provider": "gitlab",
            "path": "team/red",
            "refs": ["main"],
            "runs": [
                {"at": "-1h", "duration": "2m"},  # success
                {"at": "-30m", "duration": "2m", "result": "failed"},  # red from -28m
                # queued 5m..7m, running 7m..12m, then failed: red all along
                {"at": "5m", "queue": "2m", "duration": "5m", "result": "failed"},
                {"at": "15m", "queue": "0s", "duration": "3m"},  # running 15m, green at 18m
            ],
        },
        {
            "provider": "gitlab",
            "path": "team/green",
            "refs": ["main", "develop"],
            "runs": [
                {"at": "-1h"},  # main: success
                {"at": "-20m", "ref": "develop", "duration": "1m", "result": "failed"},
                {"at": "2m", "ref": "develop", "queue": "0s", "duration": "3m"},  # green at 5m
            ],
        },
        {
            "provider": "github",
            "path": "octo/red",
            "runs": [
                {"at": "-40m", "duration": "2m", "result": "failed"},
                {"at": "3m", "queue": "1m", "duration": "10m"},  # queued 3m, green at 14m
            ],
        },
        {
            "provider": "jenkins",
            "path": "team/job",
            "jobs": [{"name": "Build", "stage": "Build"}, {"name": "Test", "stage": "Test"}],
            "runs": [
                {"at": "-50m", "duration": "2m", "result": "failed"},
                # in the Jenkins queue 8m..9m, building 9m..13m, then failed: red all along
                {"at": "8m", "queue": "1m", "duration": "4m", "result": "failed"},
            ],
        },
    ],
}

RED = ("gl", "team/red", "main")
DEVELOP = ("gl", "team/green", "develop")
OCTO = ("gh", "octo/red", "main")
JOB = ("jk", "team/job", "main")
# (minute, the red refs then, red refs whose newest run is queued or running then)
STEPS: list[tuple[float, set[Ref], set[Ref]]] = [
    (0, {RED, DEVELOP, OCTO, JOB}, set()),
    (3.5, {RED, DEVELOP, OCTO, JOB}, {DEVELOP, OCTO}),
    (6, {RED, OCTO, JOB}, {RED, OCTO}),
    (8.5, {RED, OCTO, JOB}, {RED, OCTO, JOB}),
    (10, {RED, OCTO, JOB}, {RED, OCTO, JOB}),
    (13.5, {RED, OCTO, JOB}, {OCTO}),
    (16, {RED, JOB}, {RED}),
    (19, {JOB}, set()),
]


@dataclass
class Colours:
    clock: FakeClock
    runtime: Runtime
    client: httpx.AsyncClient

    async def poll_at(self, minute: float) -> None:
        delta = START + timedelta(minutes=minute) - self.clock.now()
        assert delta >= timedelta(0)
        self.clock.advance(delta.total_seconds())
        assert self.runtime.scheduler is not None
        report = await self.runtime.scheduler.run_once()
        assert not report.failed, [outcome.error for outcome in report.failed]


def settings(running: RunningSimulator) -> Settings:
    # The token bucket sleeps on the fake clock, which also moves the simulator: never let it.
    fast = {"requests_per_second": 100_000}
    return Settings(
        database="sqlite:///unused.db",
        collection={"retries": 2, "jitter": 0.0},
        sources=[
            GitLabSource(
                name="gl",
                url=running.gitlab_url,
                token="glpat-c",
                projects=["team/red", "team/green"],
                **fast,
            ),
            GitHubSource(
                name="gh", url=running.github_url, token="ghp_c", repos=["octo/red"], **fast
            ),
            JenkinsSource(
                name="jk",
                url=running.jenkins_url,
                username="bot",
                token="jk-c",
                jobs=["team/job"],
                **fast,
            ),
        ],
    )


@pytest.fixture
async def colours(store: SqlStore) -> AsyncIterator[Colours]:
    clock = FakeClock(START)
    simulator = Simulator(scenario_from_dict(SCENARIO), clock)
    running = await start_simulator(simulator)
    runtime = await Runtime.open(settings(running), clock=clock, store=store)
    app = create_app(runtime, metrics_max_age=0.0)
    try:
        async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
            yield Colours(clock, runtime, client)
    finally:
        for provider in runtime.providers.values():  # the store belongs to its fixture
            await provider.close()
        await running.stop()


async def api_red(client: httpx.AsyncClient) -> tuple[set[Ref], dict[Ref, str]]:
    """The failing refs of `/api/v1/projects`, and the since of each."""
    reply = await client.get("/api/v1/projects")
    assert reply.status_code == 200
    projects = reply.json()["projects"]
    assert projects
    keys = [(p["source"], p["project"], p["ref"]) for p in projects]
    red = {key for key, p in zip(keys, projects, strict=True) if p["failing"]}
    # `failing` and `status` say the same: red is the colour `failed`.
    assert red == {key for key, p in zip(keys, projects, strict=True) if p["status"] == "failed"}
    return red, {key: p["since"] for key, p in zip(keys, projects, strict=True)}


async def cctray_red(client: httpx.AsyncClient) -> set[str]:
    reply = await client.get("/cc.xml")
    assert reply.status_code == 200
    root = ET.fromstring(reply.content)  # noqa: S314 (our own answer)
    assert len(root)
    return {node.attrib["name"] for node in root if node.attrib["lastBuildStatus"] == "Failure"}


async def metrics_red(client: httpx.AsyncClient) -> tuple[set[Ref], dict[Ref, float], set[Ref]]:
    """The refs with `ci_ref_failing 1`, their since gauge, and the refs whose newest run is
    queued or running by `ci_pipeline_status`."""
    reply = await client.get("/metrics")
    assert reply.status_code == 200
    m = Exposition(reply.text)

    def key(labels: dict[str, str]) -> Ref:
        return (labels["source"], labels["project"], labels["ref"])

    failing = m.samples("ci_ref_failing")
    assert failing
    assert {s.value for s in failing} <= {0.0, 1.0}
    red = {key(s.labels) for s in failing if s.value == 1.0}
    since = {key(s.labels): s.value for s in m.samples("ci_ref_failing_since_timestamp_seconds")}
    active = {
        key(s.labels)
        for s in m.samples("ci_pipeline_status")
        if s.labels["status"] in ("queued", "running") and s.value == 1.0
    }
    return red, since, active


async def dashboard_red(client: httpx.AsyncClient) -> set[Ref]:
    """The refs whose board row carries the `failing` class (what the CSS paints red)."""
    reply = await client.get("/", params={"refresh": "0"})
    assert reply.status_code == 200
    rows: list[tuple[bool, dict[str, str]]] = []
    for tag, attrs, text in elements(reply.text):
        classes = attrs.get("class", "").split()
        if tag == "tr" and "ref-row" in classes:
            rows.append(("failing" in classes, {}))
        elif rows and tag == "a" and "ref" in classes:
            rows[-1][1]["ref"] = "" if text == "—" else text
        elif rows and tag == "a" and attrs.get("href", "").startswith("/projects/"):
            rows[-1][1].setdefault("project", text)  # the project link comes first
        elif rows and tag == "span" and "source" in classes:
            rows[-1][1]["source"] = text
    assert rows
    assert all(set(cells) == {"project", "source", "ref"} for _, cells in rows), rows
    return {(c["source"], c["project"], c["ref"]) for red, c in rows if red}


async def wall_red(client: httpx.AsyncClient) -> set[tuple[str, str]]:
    reply = await client.get("/", params={"tv": "1", "refresh": "0"})
    assert reply.status_code == 200
    red: set[tuple[str, str]] = set()
    tile: list[str] | None = None
    for tag, attrs, text in elements(reply.text):
        classes = attrs.get("class", "").split()
        if tag == "li" and "tile" in classes:
            tile = [] if "failing" in classes else None
        elif tile is not None and tag == "span" and {"tile-project", "tile-ref"} & set(classes):
            tile.append(text)
            if len(tile) == 2:
                red.add((tile[0], tile[1]))
                tile = None
    return red


def parse_z(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_the_four_surfaces_agree_on_red_over_a_scenario(colours: Colours) -> None:
    client = colours.client
    broke: dict[Ref, str] = {}
    for minute, expected, in_progress in STEPS:
        await colours.poll_at(minute)
        api, since = await api_red(client)
        cc = await cctray_red(client)
        metrics, metrics_since, active = await metrics_red(client)
        dashboard = await dashboard_red(client)
        wall = await wall_red(client)
        where = f"at {minute} minutes"
        assert api == expected, where
        assert cc == {f"{s}/{p}:{r}" for s, p, r in expected}, where
        assert metrics == expected, where
        assert dashboard == expected, where
        assert wall == {(p, r) for _, p, r in expected}, where
        # The case of issue 10: red refs with a new run queued or running are still red
        # everywhere, while ci_pipeline_status shows the newest run queued or running.
        assert active & expected == in_progress, where
        # The since gauge exists for exactly the red refs and is the API's since, which does not
        # move while a ref stays red (new runs, even failed ones, do not restart it).
        assert set(metrics_since) == expected, where
        for ref in expected:
            assert metrics_since[ref] == parse_z(since[ref]), (where, ref)
            assert broke.setdefault(ref, since[ref]) == since[ref], (where, ref)
    # Every kind of change happened: red refs kept red through queued and running runs on all
    # three providers, and refs recovered.
    assert set().union(*(step[2] for step in STEPS)) == {RED, DEVELOP, OCTO, JOB}
    assert STEPS[0][1] - STEPS[-1][1] == {RED, DEVELOP, OCTO}

"""The Azure Pipelines poller against the simulator over real loopback HTTP: discovery with
folders and filters, the backfill, incremental polls by `minTime` with continuation tokens, the
"not modified" poll, the timeline, the test results of `tests: true`, reading one build by
project id, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import pytest

from ciwatch.clock import FakeClock
from ciwatch.config.models import CollectionSettings
from ciwatch.domain import Status, Target
from ciwatch.errors import AuthFailed, NotFound, ProviderError
from ciwatch.providers.azure import AzureSource
from ciwatch.providers.azure_poll import AzureProvider, make_provider, preview
from ciwatch.simulator import (
    RunningSimulator,
    Scenario,
    Simulator,
    scenario_from_dict,
    start_simulator,
)
from ciwatch.simulator.azure import DEFAULT_AZURE_TOKEN, AzureWorld, _guid
from ciwatch.simulator.scenario import GeneratorSpec, JobSpec, ProjectSpec, RunSpec

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
JOBS = (JobSpec("compile", "Build"), JobSpec("unit", "Test"), JobSpec("lint", "Test"))


def scenario() -> Scenario:
    return Scenario(
        projects=[
            ProjectSpec(
                "azure",
                "Fabrikam/web-ci",
                jobs=JOBS,
                runs=(
                    RunSpec(at=-900, duration=120),
                    RunSpec(at=-300, duration=120, result="failed", ref="feature/x"),
                    RunSpec(at=-60, queue=5, duration=600),
                    RunSpec(at=30, queue=5, duration=60),
                ),
            ),
            ProjectSpec(
                "azure",
                "Fabrikam/apps/api",
                generate=GeneratorSpec(every=5, since=-1200, duration=(1, 2), queue=(0, 1)),
            ),
            ProjectSpec("azure", "Fabrikam/tools/legacy"),
            ProjectSpec("azure", "Other/nightly"),
            ProjectSpec("github", "o/r"),
        ],
        retention=400,
    )


@dataclass
class Setup:
    clock: FakeClock
    running: RunningSimulator
    sim: Simulator

    def provider(self, **extra: Any) -> AzureProvider:
        data: dict[str, Any] = {
            "name": "az",
            "url": f"{self.running.url}/azure",
            "organization": "fabrikam",
            "projects": ["Fabrikam"],
            "token": DEFAULT_AZURE_TOKEN,
            "backfill": 3,
        }
        data.update(extra)
        return make_provider(AzureSource(**data), CollectionSettings(retries=0), self.clock, None)


@pytest.fixture
async def setup() -> AsyncIterator[Setup]:
    clock = FakeClock(START)
    sim = Simulator(scenario(), clock)
    async with await start_simulator(sim) as running:
        yield Setup(clock, running, sim)


async def test_discovery_names_pipelines_by_folder_and_filters(setup: Setup) -> None:
    provider = setup.provider()
    try:
        assert [t.project for t in await provider.discover()] == [
            "Fabrikam/web-ci",
            "Fabrikam/apps/api",
            "Fabrikam/tools/legacy",
        ]
    finally:
        await provider.close()
    filtered = setup.provider(
        pipelines=["*-ci", "apps/*", "tools/*"], exclude_projects=["*/tools/*"]
    )
    try:
        assert [t.project for t in await filtered.discover()] == [
            "Fabrikam/web-ci",
            "Fabrikam/apps/api",
        ]
    finally:
        await filtered.close()


async def test_backfill_then_incremental_polls(setup: Setup) -> None:
    provider = setup.provider()
    target = Target("az", "azure", "Fabrikam/web-ci")
    try:
        first = await provider.poll(target, None)  # before discovery: finds its definition
        assert first.requests == 2  # the definitions of the project, then the builds
        assert [(r.status, r.ref) for r in first.runs] == [
            (Status.RUNNING, "main"),
            (Status.FAILED, "feature/x"),
            (Status.SUCCESS, "main"),
        ]
        running = first.runs[0]
        assert running.created_at is not None
        assert first.state.cursor == running.created_at.isoformat()  # oldest unfinished
        assert first.state.extra["definition"] == "1"
        again = await provider.poll(target, first.state)  # from the cursor on: the running one
        assert ([r.run_id for r in again.runs], again.requests) == ([running.run_id], 1)
        unchanged = await provider.poll(target, again.state)  # identical: not decoded
        assert unchanged.not_modified and unchanged.runs == []
        # The next build is queued and the running one finishes: both come back.
        setup.clock.advance(700)
        later = await provider.poll(target, unchanged.state)
        assert {r.run_id: r.status for r in later.runs} == {
            running.run_id: Status.SUCCESS,
            "40": Status.SUCCESS,
        }
        newest = max(r.created_at for r in later.runs if r.created_at)
        assert later.state.cursor == newest.isoformat()  # all finished: the newest
    finally:
        await provider.close()


async def test_refs_filter_the_runs_of_a_poll(setup: Setup) -> None:
    provider = setup.provider(refs=["feature/*"])
    try:
        await provider.discover()
        result = await provider.poll(Target("az", "azure", "Fabrikam/web-ci"), None)
        assert [r.ref for r in result.runs] == ["feature/x"]
        # The cursor still follows every build, kept or not (the running one on main).
        assert result.state.cursor == "2026-03-01T11:59:00+00:00"
    finally:
        await provider.close()


async def test_incremental_poll_follows_continuation_tokens(setup: Setup) -> None:
    provider = setup.provider()
    target = Target("az", "azure", "Fabrikam/apps/api")
    try:
        await provider.discover()
        first = await provider.poll(target, None)
        assert (len(first.runs), first.requests) == (3, 1)
        setup.clock.advance(600)  # 120 new builds, one every 5 s: two pages of 100
        later = await provider.poll(target, first.state)
        assert later.requests == 2
        ids = [int(r.run_id) for r in later.runs]
        assert len(ids) == len(set(ids)) >= 120
        assert ids == sorted(ids)  # queueTimeAscending
    finally:
        await provider.close()


async def test_details_read_the_timeline(setup: Setup) -> None:
    provider = setup.provider()
    target = Target("az", "azure", "Fabrikam/web-ci")
    try:
        await provider.discover()
        failed = next(r for r in (await provider.poll(target, None)).runs if r.ref == "feature/x")
        run, jobs = await provider.details(failed)
        # A failed build: its commit is read (Builds - Get Build Changes), nothing else changes.
        assert run.commit_title and run.commit_author
        assert replace(run, commit_title=None, commit_author=None, commit_email=None) == failed
        assert [(j.name, j.stage, j.status) for j in jobs] == [
            ("compile", "Build", Status.SUCCESS),
            ("unit", "Test", Status.FAILED),
            ("lint", "Test", Status.SUCCESS),
        ]
        assert all(j.attempt == 1 and j.started_at is not None for j in jobs)
        setup.clock.advance(31)  # build 40 is queued: no timeline yet (204)
        queued = next(
            r for r in (await provider.poll(target, None)).runs if r.status is Status.QUEUED
        )
        assert await provider.details(queued) == (queued, [])
    finally:
        await provider.close()


def _test_requests(sim: Simulator) -> int:
    return sum(n for path, n in sim.stats.by_path.items() if "/_apis/test/" in path)


async def test_details_with_tests_read_the_builds_test_runs(setup: Setup) -> None:
    provider = setup.provider(tests=True)
    target = Target("az", "azure", "Fabrikam/web-ci")
    try:
        await provider.discover()
        runs = (await provider.poll(target, None)).runs
        failed = next(r for r in runs if r.status is Status.FAILED)
        setup.sim.stats.reset()
        run, jobs = await provider.details(failed)
        assert len(jobs) == 3
        # Six cases a finished job (simulator/reports.py): "unit" failed its first two, the
        # last case of each job is skipped; one test run a job, summed.
        assert (run.tests_total, run.tests_failed, run.tests_skipped, run.tests_errored) == (
            18,
            2,
            3,
            None,
        )
        assert run.tests_failing == ("unit.case_1", "unit.case_2")
        # The test runs, then the results of the one run with failures.
        assert _test_requests(setup.sim) == 2
        green = next(r for r in runs if r.status is Status.SUCCESS)
        setup.sim.stats.reset()
        run, _jobs = await provider.details(green)
        assert (run.tests_total, run.tests_failed, run.tests_failing) == (18, 0, ())
        assert _test_requests(setup.sim) == 1  # no failure: no results read
        running = next(r for r in runs if r.status is Status.RUNNING)
        setup.sim.stats.reset()
        run, _jobs = await provider.details(running)
        assert run.tests_total is None and _test_requests(setup.sim) == 0  # not finished
    finally:
        await provider.close()


def test_a_preview_api_version() -> None:
    assert [preview(v) for v in ("7.1", "6.0", "7.1-preview.6")] == [
        "7.1-preview",
        "6.0-preview",
        "7.1-preview.6",
    ]


async def test_a_build_without_test_runs_has_no_counts(setup: Setup) -> None:
    provider = setup.provider(tests=True)
    target = Target("az", "azure", "Fabrikam/web-ci")
    try:
        await provider.discover()
        green = next(r for r in (await provider.poll(target, None)).runs if r.status.terminal)
        # A finished build the Test API has no test run for (it published no results).
        unknown = replace(green, run_id="99999")
        setup.sim.stats.reset()
        run, jobs = await provider.details(unknown)
        assert (run.tests_total, run.tests_failed, run.tests_failing, jobs) == (None, None, (), [])
        assert _test_requests(setup.sim) == 1  # the test runs list alone
    finally:
        await provider.close()


async def test_details_without_tests_read_no_test_results(setup: Setup) -> None:
    provider = setup.provider()
    target = Target("az", "azure", "Fabrikam/web-ci")
    try:
        await provider.discover()
        failed = next(r for r in (await provider.poll(target, None)).runs if r.ref == "feature/x")
        run, _jobs = await provider.details(failed)
        assert run.tests_total is None
        assert _test_requests(setup.sim) == 0
    finally:
        await provider.close()


async def test_the_simulated_test_api(setup: Setup) -> None:
    """The simulator's Test API beside the poller: filters, paging, unknown runs."""
    provider = setup.provider()
    try:
        base = "fabrikam/Fabrikam/_apis/test"
        params = {"api-version": "7.1", "buildUri": "vstfs:///Build/Build/20"}
        runs = json.loads((await provider.http.get(f"{base}/runs", params=params)).body)
        assert [(r["name"], r["unanalyzedTests"]) for r in runs["value"]] == [
            ("compile", 0),
            ("unit", 2),
            ("lint", 0),
        ]
        unit = runs["value"][1]["id"]
        page = await provider.http.get(
            f"{base}/Runs/{unit}/results",
            params={"api-version": "7.1-preview.6", "outcomes": "Passed,NotExecuted", "$top": 2},
        )
        assert [r["outcome"] for r in json.loads(page.body)["value"]] == ["Passed", "Passed"]
        nothing = await provider.http.get(f"{base}/runs", params={"buildUri": "no"})
        assert json.loads(nothing.body)["value"] == []
        with pytest.raises(NotFound):
            await provider.http.get(
                f"{base}/Runs/{unit + 50}/results", params={"api-version": "7.1-preview"}
            )
        with pytest.raises(ProviderError):  # a preview API: "7.1" alone is refused
            await provider.http.get(f"{base}/Runs/{unit}/results", params={"api-version": "7.1"})
    finally:
        await provider.close()


async def test_one_build_by_project_id(setup: Setup) -> None:
    provider = setup.provider()
    try:
        run = await provider.build(_guid("project/Fabrikam"), 10)
        assert run is not None
        assert (run.project, run.run_id, run.status) == ("Fabrikam/web-ci", "10", Status.SUCCESS)
        assert run.url is not None and run.url.endswith("/_build/results?buildId=10")
        with pytest.raises(NotFound):
            await provider.build("Fabrikam", 99999)
    finally:
        await provider.close()


def test_an_azure_path_names_project_and_pipeline() -> None:
    loaded = scenario_from_dict({"projects": [{"provider": "azure", "path": "P/apps/web"}]})
    sim = Simulator(loaded, FakeClock(START))
    assert [(p.project, p.folder, p.name) for p in AzureWorld(sim.ctx).pipelines] == [
        ("P", "apps", "web")
    ]
    alone = scenario_from_dict({"projects": [{"provider": "azure", "path": "web"}]})
    with pytest.raises(ValueError, match="<project>/<pipeline>"):
        AzureWorld(Simulator(alone, FakeClock(START)).ctx)


async def test_a_wrong_token_and_an_unknown_project(setup: Setup) -> None:
    wrong = setup.provider(token="nope")
    try:
        with pytest.raises(AuthFailed):
            await wrong.discover()
    finally:
        await wrong.close()
    unknown = setup.provider(projects=["Nowhere"])
    try:
        with pytest.raises(NotFound):
            await unknown.discover()
    finally:
        await unknown.close()

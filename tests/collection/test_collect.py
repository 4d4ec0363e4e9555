"""Collection end to end: the real pollers against the simulator on 127.0.0.1, storing into the
real store (SQLite and PostgreSQL). No client is patched; the simulator's clock is fake so run
timelines move only when a test says so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ciwatch.clock import FakeClock
from ciwatch.config import GitHubSource, GitLabSource, JenkinsSource, Settings
from ciwatch.domain import RunKey, Status
from ciwatch.errors import RateLimited
from ciwatch.runtime import Runtime
from ciwatch.simulator import Fault, RunningSimulator, Simulator, load_scenario, start_simulator
from ciwatch.store import Store

ROOT = Path(__file__).parents[2]
BASIC = ROOT / "examples" / "scenarios" / "basic.yaml"
START = datetime(2026, 1, 1, tzinfo=UTC)
GITLAB_PROJECTS = {"platform/backend/api", "platform/frontend/web", "tools/scripts"}
GITHUB_REPOS = {"octo-org/web", "octo-org/api"}
JENKINS_JOBS = {"smoke", "team/app", "team/tools/nightly", "team/gateway"}


@dataclass
class World:
    sim: Simulator
    running: RunningSimulator
    clock: FakeClock
    store: Store

    def settings(self, **overrides: Any) -> Settings:
        gl: dict[str, Any] = {
            "name": "gl",
            "url": self.running.gitlab_url,
            "token": "glpat-basic-example",
            "projects": sorted(GITLAB_PROJECTS),
        }
        gh: dict[str, Any] = {
            "name": "gh",
            "url": self.running.github_url,
            "token": "ghp_basic_example",
            "repos": sorted(GITHUB_REPOS),
        }
        jk: dict[str, Any] = {
            "name": "jk",
            "url": self.running.jenkins_url,
            "username": "ci-bot",
            "token": "jenkins-basic-token",
            "jobs": sorted(JENKINS_JOBS),
        }
        # The token bucket sleeps on the clock it is given; the fake clock also drives the
        # simulator's timelines, so the bucket must never wait or runs would move on by themselves.
        for source in (gl, gh, jk):
            source["requests_per_second"] = 100_000
        gl.update(overrides.get("gitlab", {}))
        gh.update(overrides.get("github", {}))
        jk.update(overrides.get("jenkins", {}))
        return Settings(
            database="sqlite:///unused.db",
            collection={"retries": 2, "jitter": 0.0},
            sources=[GitLabSource(**gl), GitHubSource(**gh), JenkinsSource(**jk)],
        )

    async def runtime(self, **overrides: Any) -> Runtime:
        return await Runtime.open(self.settings(**overrides), clock=self.clock, store=self.store)


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


async def _close_keep_store(runtime: Runtime) -> None:
    for provider in runtime.providers.values():
        await provider.close()


async def test_one_cycle_collects_all_three_providers(world: World) -> None:
    runtime = await world.runtime()
    try:
        assert runtime.scheduler is not None
        report = await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    assert not report.failed, [o.error for o in report.failed]
    polled = {(o.target.source, o.target.project) for o in report.outcomes}
    assert polled == (
        {("gl", p) for p in GITLAB_PROJECTS}
        | {("gh", r) for r in GITHUB_REPOS}
        | {("jk", j) for j in JENKINS_JOBS}
    )
    states = {(s.source, s.project, s.ref): s for s in await world.store.ref_states()}
    assert {source for source, _, _ in states} == {"gl", "gh", "jk"}
    # platform/backend/api: pipeline 2 failed, then its retry went green; develop failed.
    api_main = states[("gl", "platform/backend/api", "main")]
    assert api_main.status is Status.SUCCESS
    assert api_main.last_run.status is Status.RUNNING  # run 4 was running at the start
    assert states[("gl", "platform/backend/api", "develop")].status is Status.FAILED
    # GitHub: the failed run was re-run as attempt 2 and succeeded.
    web = states[("gh", "octo-org/web", "main")]
    assert web.status is Status.SUCCESS
    # Jenkins multibranch: each branch is a ref.
    login = states[("jk", "team/gateway", "feature/login")]
    assert login.status is Status.FAILED
    first = RunKey("jk", "team/gateway", "feature%2Flogin/1")
    assert (await world.store.get_run(first)) is not None
    assert await world.store.jobs_for(first)  # stages of a branch build
    # Freestyle: the ref comes from the git BuildData; UNSTABLE is failed, the word kept.
    nightly = states[("jk", "team/tools/nightly", "main")]
    assert nightly.status is Status.FAILED
    # Details were fetched for changed runs: GitLab pipelines carry their user and jobs.
    newest_gl = api_main.last_run
    assert newest_gl.author is not None
    jobs = await world.store.jobs_for(newest_gl.key)
    assert {job.name for job in jobs} == {"compile", "unit", "lint", "deploy"}
    # Jenkins pipeline stages are jobs; the freestyle job has none.
    app_runs = (await world.store.history(source="jk", project="team/app", limit=50)).runs
    assert app_runs
    stages = await world.store.jobs_for(app_runs[-1].key)
    assert {stage.name for stage in stages} == {"Build", "Test", "Deploy"}
    # Health is recorded for every target, and for each source's discovery.
    states_of_targets = await world.store.target_states()
    targets = [t for t in states_of_targets if not t.is_discovery]
    assert len(targets) == len(polled)
    assert all(t.healthy and t.last_success_at == START for t in states_of_targets)
    assert {t.source for t in states_of_targets if t.is_discovery} == {"gl", "gh", "jk"}


async def test_steady_state_is_cheap_and_github_answers_304(world: World) -> None:
    runtime = await world.runtime()
    try:
        assert runtime.scheduler is not None
        await runtime.scheduler.run_once()
        before_304 = runtime.metrics.api_requests[("gh", "304")]
        report = await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    assert not report.failed
    assert runtime.metrics.api_requests[("gh", "304")] - before_304 == len(GITHUB_REPOS)
    # Nothing changed (the clock did not move): one request per target, no detail requests.
    assert report.requests == len(report.outcomes)
    assert sum(o.changed for o in report.outcomes) == 0


async def test_time_moves_runs_forward_and_new_runs_arrive(world: World) -> None:
    runtime = await world.runtime()
    try:
        assert runtime.scheduler is not None
        await runtime.scheduler.run_once()
        api = await world.store.history(source="gl", project="platform/backend/api", limit=100)
        known = {run.run_id for run in api.runs}
        world.clock.advance(15 * 60)
        report = await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    assert not report.failed
    after = await world.store.history(source="gl", project="platform/backend/api", limit=100)
    assert {run.run_id for run in after.runs} > known  # run 5 (one minute in) and generated ones
    run4 = [r for r in after.runs if r.number == 4]
    assert run4
    assert run4[0].status is Status.SUCCESS  # was running at the start, done after 10 minutes
    run5 = [r for r in after.runs if r.number == 5]
    assert run5
    assert run5[0].status is Status.FAILED
    # The GitLab cursor moved to the newest updated_at seen.
    state = await world.store.get_target_state("gl", "platform/backend/api")
    assert state is not None
    assert state.cursor is not None


async def test_a_failing_target_does_not_stop_the_others_and_heals(world: World) -> None:
    world.sim.add_fault(Fault(kind="html", provider="github", path="*/octo-org/web/*"))
    runtime = await world.runtime()
    try:
        assert runtime.scheduler is not None
        report = await runtime.scheduler.run_once()
        failed = {o.target.project for o in report.failed}
        assert failed == {"octo-org/web"}
        state = await world.store.get_target_state("gh", "octo-org/web")
        assert state is not None
        assert not state.healthy
        assert state.reason is not None
        assert "HTML" in state.reason
        assert await world.store.history(source="gh", project="octo-org/api", limit=1)
        world.sim.clear_faults()
        healed = await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    assert not healed.failed
    state = await world.store.get_target_state("gh", "octo-org/web")
    assert state is not None
    assert state.healthy
    assert state.reason is None


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault(kind="status", status=500, provider="gitlab"), "unavailable"),
        (Fault(kind="bad_json", provider="gitlab"), "bad_payload"),
        (Fault(kind="truncated", provider="gitlab"), "bad_payload"),
        (Fault(kind="html", status=200, provider="gitlab"), "bad_payload"),
        (Fault(kind="reset", provider="gitlab"), "unavailable"),
    ],
    ids=lambda v: getattr(v, "kind", v),
)
async def test_every_fault_marks_only_its_targets(world: World, fault: Fault, kind: str) -> None:
    world.sim.add_fault(fault)
    runtime = await world.runtime()
    try:
        assert runtime.scheduler is not None
        report = await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    failed = {(o.target.source, o.error_kind) for o in report.failed}
    assert failed == {("gl", kind)}
    assert len(report.failed) == len(GITLAB_PROJECTS)
    ok = {o.target.source for o in report.outcomes if o.ok}
    assert ok == {"gh", "jk"}
    assert runtime.metrics.poll_errors[("gl", kind)] == len(GITLAB_PROJECTS)
    assert await world.store.history(source="gl", limit=1) == type(
        await world.store.history(source="gl", limit=1)
    )(runs=[], next=None)


async def test_transient_5xx_is_retried_within_the_poll(world: World) -> None:
    world.sim.add_fault(Fault(kind="status", status=503, provider="gitlab", count=2))
    runtime = await world.runtime()
    try:
        assert runtime.scheduler is not None
        report = await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    assert not report.failed
    assert runtime.metrics.api_requests[("gl", "503")] == 2


async def test_rate_limit_with_a_long_retry_after_parks_the_source(world: World) -> None:
    world.sim.add_fault(Fault(kind="rate_limit", provider="github", retry_after=3600))
    runtime = await world.runtime()
    try:
        assert runtime.scheduler is not None
        report = await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    errors = [o.error for o in report.failed]
    assert len(errors) == len(GITHUB_REPOS)
    assert all(isinstance(e, RateLimited) and e.retry_after == 3600 for e in errors)
    paused = runtime.scheduler.paused_until["gh"]
    assert START + timedelta(hours=1) <= paused <= START + timedelta(hours=1, minutes=1)


async def test_wrong_token_marks_targets_unhealthy_with_the_reason(world: World) -> None:
    runtime = await world.runtime(gitlab={"token": "wrong"})
    try:
        assert runtime.scheduler is not None
        report = await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    assert {o.error_kind for o in report.failed} == {"auth"}
    state = await world.store.get_target_state("gl", "tools/scripts")
    assert state is not None
    assert state.reason is not None
    assert "401" in state.reason


async def test_discovery_expands_groups_orgs_and_folders(world: World) -> None:
    runtime = await world.runtime(
        gitlab={"projects": [], "groups": ["platform"]},
        github={"repos": [], "orgs": ["octo-org"]},
        jenkins={"jobs": [], "folders": ["team"], "exclude_projects": ["team/tools/*"]},
    )
    try:
        assert runtime.scheduler is not None
        targets = await runtime.scheduler.discover()
    finally:
        await _close_keep_store(runtime)
    found = {(t.source, t.project) for t in targets}
    assert found == {
        ("gl", "platform/backend/api"),
        ("gl", "platform/frontend/web"),
        ("gh", "octo-org/web"),
        ("gh", "octo-org/api"),
        ("jk", "team/app"),
        ("jk", "team/gateway"),
    }


async def test_ref_globs_filter_what_is_stored(world: World) -> None:
    runtime = await world.runtime(gitlab={"refs": ["main"]})
    try:
        assert runtime.scheduler is not None
        await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    refs = {s.ref for s in await world.store.ref_states(source="gl")}
    assert refs == {"main"}


async def test_github_rerun_attempt_reopens_then_finishes(world: World) -> None:
    runtime = await world.runtime()
    try:
        assert runtime.scheduler is not None
        world.clock.advance(-55 * 60)  # the failed run (-1h) is re-run 10 minutes after it ends
        await runtime.scheduler.run_once()
        runs = (await world.store.history(source="gh", project="octo-org/web", limit=10)).runs
        failed = [r for r in runs if r.status is Status.FAILED]
        assert failed
        key = RunKey("gh", "octo-org/web", failed[0].run_id)
        world.clock.advance(55 * 60)
        await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    rerun = await world.store.get_run(key)
    assert rerun is not None
    assert rerun.attempt == 2
    assert rerun.status is Status.SUCCESS


async def test_jenkins_queue_shows_as_a_queued_run_that_then_starts(world: World) -> None:
    runtime = await world.runtime()
    try:
        assert runtime.scheduler is not None
        await runtime.scheduler.run_once()
        key = RunKey("jk", "team/app", "5")  # at -1m with a 2 minute queue: waiting at the start
        waiting = await world.store.get_run(key)
        assert waiting is not None
        assert waiting.status is Status.QUEUED
        assert waiting.provider_status is not None
        assert waiting.provider_status.startswith("in queue")
        assert waiting.created_at == START - timedelta(minutes=1)
        world.clock.advance(90)
        await runtime.scheduler.run_once()
    finally:
        await _close_keep_store(runtime)
    started = await world.store.get_run(key)
    assert started is not None
    assert started.status is Status.RUNNING
    assert started.started_at == START + timedelta(minutes=1)

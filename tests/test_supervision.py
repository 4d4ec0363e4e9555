"""Never silently wrong (issue 10): supervised loops, one bad item never stops a loop, a source
that cannot discover is visible everywhere, `/readyz` tells the truth.

Real parts: the store on SQLite and PostgreSQL, the CI simulator over HTTP, real channels
posting to aiohttp receivers, the web app under uvicorn, the CLI in a subprocess."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from channels.harness import SlackWebhook, WebhookReceiver
from ciwatch.alerting import AlertEngine, DeliveryWorkers
from ciwatch.channels import Channel, Message, build_channel
from ciwatch.clock import FakeClock
from ciwatch.config import GitLabSource, JenkinsSource, Settings
from ciwatch.config.models import AlertSettings, RouteSettings, SlackChannel, WebhookChannel
from ciwatch.domain import DISCOVERY, Job, Run, Status, Target, TargetState
from ciwatch.health import probe_once
from ciwatch.http import Backoff
from ciwatch.providers.base import PollResult, Provider
from ciwatch.runtime import Runtime
from ciwatch.scheduler import Cadence, Scheduler
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.simulator import RunningSimulator, Simulator, load_scenario, start_simulator
from ciwatch.store import SqlStore, open_store
from ciwatch.store.alerting import outbox_rows
from ciwatch.supervisor import Supervisor
from collection.basic import BASIC, START
from factories import at, make_run
from web.harness import serve

QUICK = Backoff(base=0.01, cap=0.02)


# -- the supervisor ---------------------------------------------------------------------------


async def test_a_loop_that_dies_is_restarted_and_reported_down_meanwhile() -> None:
    metrics = CollectionMetrics()
    supervisor = Supervisor(metrics, backoff=Backoff(base=0.2, cap=0.2))
    stop = asyncio.Event()
    started = 0
    running = asyncio.Event()

    async def flaky(stopped: asyncio.Event) -> None:
        nonlocal started
        started += 1
        if started <= 2:
            raise RuntimeError(f"boom {started}")
        running.set()
        await stopped.wait()

    task = supervisor.start("flaky", flaky, stop)
    await asyncio.sleep(0.05)  # died once, waiting 0.2 s to restart
    assert supervisor.down() == {"flaky": "RuntimeError: boom 1"}
    assert metrics.task_up["flaky"] is False
    await asyncio.wait_for(running.wait(), 5)
    assert supervisor.down() == {}
    assert metrics.task_up["flaky"] is True
    assert metrics.task_errors["flaky"] == 2
    assert supervisor.loops["flaky"].restarts == 2
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_loop_that_returns_early_counts_as_dead() -> None:
    metrics = CollectionMetrics()
    supervisor = Supervisor(metrics, backoff=QUICK)
    stop = asyncio.Event()
    calls = 0

    async def quits(stopped: asyncio.Event) -> None:
        nonlocal calls
        calls += 1
        if calls >= 3:
            stopped.set()

    await asyncio.wait_for(supervisor.run("quits", quits, stop), 5)
    assert calls == 3
    assert metrics.task_errors["quits"] == 2


# -- one bad item never stops a loop ----------------------------------------------------------


class ExplodingDiscovery:
    """A provider with bugs: its discovery and its polls raise exceptions that are not
    ProviderErrors (what a parser meeting an unexpected answer does)."""

    kind = "gitlab"

    def __init__(self, source: str) -> None:
        self.source = source
        self.polled: list[str] = []
        self.discoveries = 0

    async def discover(self) -> list[Target]:
        self.discoveries += 1
        if self.discoveries == 1:
            return [Target(self.source, "gitlab", "group/app")]
        raise KeyError("path_with_namespace")

    async def poll(self, target: Target, state: TargetState | None) -> PollResult:
        self.polled.append(target.project)
        raise ZeroDivisionError("a parser bug")

    async def details(self, run: Run) -> tuple[Run, list[Job]]:
        raise AssertionError("never reached: no poll succeeds")

    async def close(self) -> None:
        return None


async def test_a_discovery_or_poll_that_raises_keeps_the_scheduler_alive(store: SqlStore) -> None:
    provider = ExplodingDiscovery("src")
    metrics = CollectionMetrics()
    clock = FakeClock(at(1000))
    providers: dict[str, Provider] = {"src": provider}
    scheduler = Scheduler(
        providers,
        store,
        cadence={"src": Cadence(interval=0.05, active_interval=0.05)},
        discovery_interval=0.1,
        clock=clock,
        metrics=metrics,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    for _ in range(500):
        await asyncio.sleep(0.01)
        clock.advance(0.05)
        if provider.discoveries >= 3 and len(provider.polled) >= 2:
            break
    assert not task.done(), "the scheduler ended"
    stop.set()
    await asyncio.wait_for(task, 5)
    assert provider.discoveries >= 3 and len(provider.polled) >= 2
    assert metrics.task_errors["discovery"] >= 2
    assert metrics.task_errors["poll"] >= 2
    states = {s.project: s for s in await store.target_states()}
    assert not states[DISCOVERY].healthy
    assert "internal error: KeyError" in (states[DISCOVERY].reason or "")
    # The previous discovery's target is kept, and its crash is recorded on it.
    assert not states["group/app"].healthy
    assert "internal error: ZeroDivisionError: a parser bug" in (states["group/app"].reason or "")
    # Each remembers since when it is unhealthy: its first failure, not its latest.
    for state in (states[DISCOVERY], states["group/app"]):
        assert state.unhealthy_since is not None and state.last_error_at is not None
        assert state.unhealthy_since < state.last_error_at


class RaisingChannel(Channel):
    """A channel whose renderer has a bug for one project."""

    def __init__(self, inner: Channel) -> None:
        self.inner = inner
        self.name = inner.name
        self.min_interval = 0.0

    async def send(self, message: Message) -> None:
        if any(n.project == "group/bad" for n in message.notices):
            raise TypeError("cannot render this notice")
        await self.inner.send(message)

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
async def receivers() -> AsyncIterator[tuple[WebhookReceiver, SlackWebhook]]:
    hook, slack = WebhookReceiver(), SlackWebhook()
    await hook.start()
    await slack.start()
    yield hook, slack
    await hook.stop()
    await slack.stop()


def _run(project: str, n: int, status: Status, **extra: Any) -> Run:
    return make_run(
        project=project,
        run_id=str(n),
        status=status,
        provider_status=status.value,
        created_at=at(n),
        started_at=at(n + 1),
        finished_at=at(n + 100),
        updated_at=at(n + 100),
        **extra,
    )


async def _watched_green(store: SqlStore, engine: AlertEngine, *projects: str) -> None:
    """Refs seen green first, so that their next failure is a plain `broken`."""
    await store.upsert_runs([_run(p, 10, Status.SUCCESS) for p in projects], [])
    await engine.evaluate()


async def test_a_notice_a_channel_cannot_send_is_failed_and_the_next_ones_flow(
    store: SqlStore, receivers: tuple[WebhookReceiver, SlackWebhook]
) -> None:
    hook, slack = receivers
    settings = AlertSettings(
        channels=[
            WebhookChannel(name="hook", url=hook.url),
            SlackChannel(name="slack", url=slack.url),
        ],
        routes=[RouteSettings(channels=["hook", "slack"])],
        group_wait=timedelta(0),
    )
    clock = FakeClock(at(50))
    real = {c.name: build_channel(c) for c in settings.channels}
    channels: dict[str, Channel] = {"hook": real["hook"], "slack": RaisingChannel(real["slack"])}
    metrics = CollectionMetrics()
    supervisor = Supervisor(metrics)
    engine = AlertEngine(store, settings, clock, supervisor=supervisor)
    workers = DeliveryWorkers(store, channels, clock, metrics=metrics, supervisor=supervisor)
    try:
        await _watched_green(store, engine, "group/bad", "group/good")
        await store.upsert_runs([_run("group/bad", 100, Status.FAILED)], [])
        await engine.evaluate()
        assert await workers.drain() == 2
        await store.upsert_runs([_run("group/good", 200, Status.FAILED)], [])
        await engine.evaluate()
        assert await workers.drain() == 2
        assert await workers.drain() == 0  # the failed row is never claimed again
    finally:
        for channel in channels.values():
            await channel.close()
    rows = {(r.channel, r.payload["project"]): r for r in await outbox_rows(store)}
    bad = rows[("slack", "group/bad")]
    assert bad.failed_at is not None and bad.sent_at is None
    assert bad.last_error == "internal error: TypeError: cannot render this notice"
    assert rows[("slack", "group/good")].sent_at is not None
    assert rows[("hook", "group/bad")].sent_at is not None
    assert [m["text"] for m in slack.messages if "group/good" in str(m)]
    assert metrics.task_errors["delivery"] == 1
    assert metrics.notifications[("slack", "failed")] == 1


async def test_an_infinite_duration_fails_its_notice_not_the_slack_channel(
    tmp_path: Path, receivers: tuple[WebhookReceiver, SlackWebhook]
) -> None:
    """The measured defect: `duration_seconds: 1e999` made Slack's renderer raise and ended the
    channel's loop for good. The edge and the domain refuse such a value now; one stored before
    (written here with SQL) reads back as no duration, so the notice is sent and the channel
    goes on. (SQLite only: PostgreSQL refuses to store the value at all.)"""
    _hook, slack = receivers
    store = open_store(f"sqlite:///{tmp_path / 'inf.db'}")
    await store.upgrade()
    settings = AlertSettings(
        channels=[SlackChannel(name="slack", url=slack.url)],
        routes=[RouteSettings(channels=["slack"])],
        group_wait=timedelta(0),
    )
    clock = FakeClock(at(50))
    channels = {"slack": build_channel(settings.channels[0])}
    workers = DeliveryWorkers(store, channels, clock, poll_interval=0.01)
    engine = AlertEngine(store, settings, clock, on_queued=workers.wake)
    stop = asyncio.Event()
    loop = asyncio.create_task(workers.channel_loop("slack", stop))
    try:
        await _watched_green(store, engine, "group/inf", "group/next")
        await store.upsert_runs([_run("group/inf", 100, Status.FAILED)], [])
        await store.write("infinite duration", _infinite_duration)
        await engine.evaluate()
        await store.upsert_runs([_run("group/next", 200, Status.FAILED)], [])
        await engine.evaluate()
        for _ in range(500):
            if any("group/next" in str(m) for m in slack.messages):
                break
            await asyncio.sleep(0.01)
        assert not loop.done()
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)
        await channels["slack"].close()
        rows = await outbox_rows(store)
        await store.close()
    assert any("group/next" in str(m) for m in slack.messages)
    by_project = {r.payload["project"]: r for r in rows}
    first = by_project["group/inf"]
    assert first.sent_at is not None and first.failed_at is None
    assert first.payload["run"]["duration_seconds"] is None


async def _infinite_duration(conn: AsyncConnection) -> None:
    await conn.exec_driver_sql(
        "UPDATE runs SET duration_seconds = 9e999 WHERE project = 'group/inf'"
    )


# -- a source that cannot discover is visible everywhere ---------------------------------------


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    sim = Simulator(load_scenario(BASIC), FakeClock(START))
    sim.clear_faults()
    running = await start_simulator(sim)
    yield running
    await running.stop()


def _wrong_token_settings(running: RunningSimulator, database: str) -> Settings:
    return Settings(
        database=database,
        sources=[
            JenkinsSource(
                name="jk",
                url=running.jenkins_url,
                username="ci-bot",
                token="wrong-token",
                folders=["team"],
            ),
            GitLabSource(
                name="gl",
                url=running.gitlab_url,
                token="glpat-basic-example",
                projects=["platform/backend/api"],
            ),
        ],
    )


async def test_a_source_whose_discovery_fails_shows_on_every_surface(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'ciwatch.db'}"
    settings = _wrong_token_settings(simulator, database)
    runtime = await Runtime.open(settings)
    try:
        assert runtime.scheduler is not None
        report = await runtime.scheduler.run_once()
        assert "HTTP 401" in report.discovery_errors["jk"]
        from ciwatch.web.app import create_app

        async with serve(create_app(runtime)) as url, httpx.AsyncClient(base_url=url) as client:
            targets = (await client.get("/api/v1/targets")).json()["targets"]
            jk = [t for t in targets if t["source"] == "jk"]
            assert jk == [
                {
                    "source": "jk",
                    "provider": "jenkins",
                    "project": "",
                    "kind": "discovery",
                    "healthy": False,
                    "reason": jk[0]["reason"],
                    "last_polled_at": jk[0]["last_polled_at"],
                    "last_success_at": None,
                    "last_error_at": jk[0]["last_error_at"],
                    "paused_until": None,
                }
            ]
            assert "folder team" in jk[0]["reason"] and "HTTP 401" in jk[0]["reason"]
            metrics = (await client.get("/metrics")).text
            assert 'ciwatch_source_up{source="jk"} 0.0' in metrics
            assert 'ciwatch_source_up{source="gl"} 1.0' in metrics
            assert 'ciwatch_last_successful_poll_timestamp_seconds{source="jk"} 0.0' in metrics
            page = (await client.get("/")).text
            assert "(discovery)" in page and "HTTP 401" in page
    finally:
        await runtime.close()
    status = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ciwatch", "status", "--database", database],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
        check=False,
    )
    assert status.returncode == 0, status.stderr
    assert "(discovery)" in status.stdout and "unhealthy" in status.stdout


# -- /readyz tells the truth ------------------------------------------------------------------


async def test_readyz_fails_on_a_read_only_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    writable = open_store(f"sqlite:///{path}")
    await writable.upgrade()
    await writable.close()
    # The same file opened read-only by SQLite itself: reads work, every write is refused.
    store = open_store(f"sqlite:///file:{path}?mode=ro&uri=true")
    runtime = Runtime(
        Settings(database="sqlite:///unused.db"), store, FakeClock(at(0)), CollectionMetrics()
    )
    from ciwatch.web.app import create_app

    try:
        async with serve(create_app(runtime)) as url, httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/readyz")).status_code == 200  # no probe yet
            await probe_once(store, runtime.store_health, runtime.instance, at(0))
            answer = await client.get("/readyz")
            assert answer.status_code == 503
            body = answer.json()
            assert body["error"] == "store refuses writes"
            assert body["detail"]["check"] == "store_writes"
            assert "readonly" not in answer.text  # no driver message in the body
            assert "ciwatch_store_up 0.0" in (await client.get("/metrics")).text
            assert (await client.get("/healthz")).status_code == 200
    finally:
        await store.close()


async def test_readyz_fails_when_postgresql_refuses_connections() -> None:
    from web.harness import free_port

    store = open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")
    runtime = Runtime(
        Settings(database="sqlite:///unused.db"), store, FakeClock(at(0)), CollectionMetrics()
    )
    from ciwatch.web.app import create_app

    try:
        async with serve(create_app(runtime)) as url, httpx.AsyncClient(base_url=url) as client:
            answer = await client.get("/readyz")
            assert answer.status_code == 503
            assert answer.json()["detail"]["check"] == "store"
            assert "127.0.0.1" not in answer.text
    finally:
        await store.close()


async def test_readyz_names_a_supervised_loop_that_is_down(store: SqlStore) -> None:
    runtime = Runtime(
        Settings(database="sqlite:///unused.db"), store, FakeClock(at(0)), CollectionMetrics()
    )
    runtime.supervisor.backoff = Backoff(base=30.0, cap=30.0)
    stop = asyncio.Event()

    async def broken(stopped: asyncio.Event) -> None:
        raise RuntimeError("scheduler bug")

    from ciwatch.web.app import create_app

    task = runtime.supervisor.start("scheduler", broken, stop)
    try:
        async with serve(create_app(runtime)) as url, httpx.AsyncClient(base_url=url) as client:
            for _ in range(100):
                if runtime.supervisor.down():
                    break
                await asyncio.sleep(0.01)
            answer = await client.get("/readyz")
            assert answer.status_code == 503
            detail = answer.json()["detail"]
            assert detail["check"] == "task"
            assert "scheduler" in detail["message"]
            metrics = (await client.get("/metrics")).text
            assert 'ciwatch_task_up{task="scheduler"} 0.0' in metrics
            assert 'ciwatch_task_errors_total{task="scheduler"} 1.0' in metrics
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


async def test_targets_and_sources_no_longer_watched_are_forgotten(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    """A removed source or target must not stay unhealthy (and alerted on) for ever."""
    database = f"sqlite:///{tmp_path / 'ciwatch.db'}"
    settings = _wrong_token_settings(simulator, database)
    runtime = await Runtime.open(settings)
    try:
        store = runtime.store
        await store.save_target_state(TargetState("removed", "x/y", healthy=False, reason="401"))
        await store.save_target_state(TargetState("removed", DISCOVERY, healthy=False))
        await store.save_target_state(TargetState("gl", "old/project", healthy=False))
        assert runtime.scheduler is not None
        await runtime.scheduler.run_once()
        keys = {state.key for state in await store.target_states()}
    finally:
        await runtime.close()
    assert keys == {("gl", DISCOVERY), ("gl", "platform/backend/api"), ("jk", DISCOVERY)}

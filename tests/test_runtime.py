"""The composition root (docs/architecture.md#composition): the runtime builds the store,
providers, scheduler, alerting, ingest and metrics snapshot once, and the web app, the serve
loops and the receivers take them from it instead of building their own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx

from ciwatch.cli.serve import run_alerting
from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.runtime import Runtime
from ciwatch.web.app import create_app

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "hook-secret-for-the-runtime-test"
FIXTURES = Path(__file__).parent / "fixtures"
GITLAB_HEADERS = {
    "X-Gitlab-Event": "Pipeline Hook",
    "X-Gitlab-Token": SECRET,
    "Idempotency-Key": "delivery-1",
    "Content-Type": "application/json",
}


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        database=f"sqlite:///{tmp_path / 'ciwatch.db'}",
        server={"base_url": "https://ci.example/"},
        sources=[
            {
                "name": "gl",
                "type": "gitlab",
                "projects": ["gitlab-org/gitlab-test"],
                "webhook_secret": SECRET,
            }
        ],
        alerts={
            "channels": [{"name": "hook", "type": "webhook", "url": "http://127.0.0.1:1/hook"}],
            "routes": [{"channels": ["hook"]}],
        },
    )


async def test_each_part_is_built_once_over_the_runtimes_store(tmp_path: Path) -> None:
    runtime = await Runtime.open(_settings(tmp_path), clock=FakeClock(NOW))
    try:
        assert runtime.scheduler is not None and set(runtime.providers) == {"gl"}
        alerting = runtime.alerting
        assert runtime.alerting is alerting
        assert set(alerting.channels) == {"hook"}
        assert alerting.engine.store is runtime.store
        assert alerting.workers.store is runtime.store
        assert runtime.snapshot is runtime.snapshot
        assert runtime.ingest.runtime is runtime
        # The notices link to the dashboard's project page (web/paths.py's quoting).
        link = alerting.engine.dashboard_url
        assert link is not None
        assert link("gl", "group/app", "feature/x") == (
            "https://ci.example/projects/gl/group/app?ref=feature%2Fx"
        )
    finally:
        await runtime.close()


async def test_the_app_serves_the_runtimes_snapshot_and_its_receivers_store_through_its_ingest(
    tmp_path: Path,
) -> None:
    runtime = await Runtime.open(_settings(tmp_path), clock=FakeClock(NOW))
    try:
        app = create_app(runtime, metrics_max_age=0.0)
        assert app.state.metrics_cache is runtime.snapshot
        assert runtime.snapshot.max_age == 0.0
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://ci.test") as web:
                metrics = await web.get("/metrics")
                assert metrics.status_code == 200
                assert runtime.snapshot.current is not None
                body = (FIXTURES / "gitlab" / "webhooks" / "pipeline-hook.json").read_bytes()
                hook = await web.post("/hooks/gitlab/gl", content=body, headers=GITLAB_HEADERS)
                assert hook.status_code == 202, hook.text
                assert runtime.ingest.deliveries.seen("gl", "delivery-1")
        (state,) = await runtime.store.ref_states()
        assert (state.project, state.ref, state.status.value) == (
            "gitlab-org/gitlab-test",
            "master",
            "success",
        )
    finally:
        await runtime.close()


async def test_serve_runs_the_runtimes_alerting_until_stopped(tmp_path: Path) -> None:
    runtime = await Runtime.open(_settings(tmp_path), clock=FakeClock(NOW))
    try:
        stop = asyncio.Event()
        stop.set()
        await run_alerting(runtime, stop)  # every loop sees `stop` and returns
        # The runtime's engine, its store alarm and one worker per channel ran, and ended.
        assert runtime.supervisor.down() == {
            "alert-engine": "not running",
            "store-alarm": "not running",
            "delivery:hook": "not running",
        }
    finally:
        await runtime.close()

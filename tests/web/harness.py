"""Helpers for the web tests: a runtime over a test store, a real uvicorn server on 127.0.0.1,
sample data, and the Prometheus tools (skipped when absent, failing under CI=true)."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import shutil
import socket
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import fastapi.routing
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.routing import Mount

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.domain import Job, Run, Status
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import Store
from factories import T0, at, make_job, make_run

ROOT = Path(__file__).parents[2]
DEPLOY = ROOT / "deploy"
USER = "admin"
PASSWORD = "s3cret-pässword"  # non-ASCII on purpose: the challenge announces UTF-8


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


GOOD = basic(USER, PASSWORD)


def settings(**server: Any) -> Settings:
    return Settings(database="sqlite:///unused.db", server=server)


def make_runtime(store: Store, **server: Any) -> Runtime:
    """A runtime over `store` with no sources, a fake clock and fresh self-metrics."""
    clock = FakeClock(T0 + timedelta(days=1))
    return Runtime(settings(**server), store, clock, CollectionMetrics())


def require_tool(name: str) -> str:
    """The path of a command-line tool; skip when it is missing (fail under CI=true)."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Run `app` under a real uvicorn server on 127.0.0.1 (a free port) in this event loop;
    yields its base URL, and shuts it down (lifespan included) afterwards."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_level="warning",
        http="h11",
        ws="none",
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            if task.done():
                task.result()
            raise RuntimeError("uvicorn did not start")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def concrete_path(path: str) -> str:
    """A request path for a route template: every `{param}` replaced by a sample value."""
    return re.sub(r"\{([^}:]+)(:[^}]+)?\}", lambda m: f"sample-{m.group(1)}", path)


def get_routes(app: FastAPI) -> Iterable[tuple[str, str, str]]:
    """(method, path template, concrete path) of every route and mount of `app`, through
    included routers (FastAPI >= 0.16x keeps them as included-router entries of `app.routes`)."""
    contexts: Iterable[Any] = (
        fastapi.routing.iter_route_contexts(app.routes)
        if hasattr(fastapi.routing, "iter_route_contexts")
        else app.routes
    )
    for route in contexts:
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        if isinstance(getattr(route, "original_route", route), Mount):
            yield "GET", path, f"{path}/sample.css"
            continue
        for method in sorted(getattr(route, "methods", None) or ()):
            if method != "HEAD":
                yield method, path, concrete_path(path)


def history(n: int, **overrides: Any) -> list[Run]:
    """`n` finished runs of one ref, 100 s apart (run ids 1..n), the newest last."""
    runs = []
    for i in range(1, n + 1):
        fields: dict[str, Any] = {
            "run_id": str(i),
            "number": i,
            "created_at": at(100 * i),
            "started_at": at(100 * i + 5),
            "finished_at": at(100 * i + 65),
            "updated_at": at(100 * i + 65),
            "duration_seconds": 60.0,
            "queued_seconds": 5.0,
        }
        fields.update(overrides)
        runs.append(make_run(**fields))
    return runs


async def fill(store: Store) -> dict[str, Any]:
    """A small world over two sources:

    - gitlab-main group/app main: runs 1..4 (1, 2 success, 3 failed, 4 running with jobs);
    - gitlab-main group/app feature/x: run 10 success;
    - gh octo/repo main: run 20 failed (with a retried job), run 21 canceled (newest);
    - gitlab-main group/other: run 30 success without a ref.
    """
    runs = [
        make_run(run_id="1", number=1, created_at=at(0), finished_at=at(100)),
        make_run(run_id="2", number=2, created_at=at(1000), finished_at=at(1100)),
        make_run(
            run_id="3",
            number=3,
            status=Status.FAILED,
            created_at=at(2000),
            started_at=at(2010),
            finished_at=at(2300),
            updated_at=at(2300),
            duration_seconds=290.0,
        ),
        make_run(
            run_id="4",
            number=4,
            status=Status.RUNNING,
            created_at=at(3000),
            started_at=at(3042),
            finished_at=None,
            updated_at=at(3050),
            duration_seconds=None,
            queued_seconds=42.0,
        ),
        make_run(run_id="10", number=10, ref="feature/x", created_at=at(1500)),
        make_run(
            source="gh",
            provider="github",
            project="octo/repo",
            run_id="20",
            number=20,
            status=Status.FAILED,
            created_at=at(500),
            duration_seconds=120.0,
        ),
        make_run(
            source="gh",
            provider="github",
            project="octo/repo",
            run_id="21",
            number=21,
            status=Status.CANCELED,
            created_at=at(2500),
            finished_at=at(2510),
            updated_at=at(2510),
            duration_seconds=7.0,
        ),
        make_run(project="group/other", run_id="30", number=30, ref=None, created_at=at(800)),
    ]
    jobs: list[Job] = [
        make_job(run_id="4", job_id="41", name="build", stage="build", created_at=at(3001)),
        make_job(
            run_id="4",
            job_id="42",
            name="test",
            stage="test",
            status=Status.RUNNING,
            created_at=at(3002),
            finished_at=None,
            duration_seconds=None,
        ),
        make_job(
            source="gh",
            project="octo/repo",
            run_id="21",
            job_id="211",
            name="lint",
            stage=None,
            status=Status.FAILED,
            created_at=at(2501),
            duration_seconds=3.0,
        ),
        make_job(
            source="gh",
            project="octo/repo",
            run_id="21",
            job_id="212",
            name="lint",
            stage=None,
            status=Status.SUCCESS,
            created_at=at(2502),
            duration_seconds=4.0,
        ),
    ]
    await store.upsert_runs(runs)
    await store.upsert_jobs(jobs)
    return {"runs": runs, "jobs": jobs}

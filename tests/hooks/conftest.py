"""A real uvicorn server on 127.0.0.1 serving the webhook and report routes over the `store`
fixture (SQLite and PostgreSQL), and an aiohttp client to talk to it."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
import uvicorn
from fastapi import FastAPI

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import Store
from ciwatch.web import hooks, report

from .payloads import REPORT_TOKEN, SECRETS

__all__ = ["NOW", "REPORT_TOKEN", "SECRETS", "Server", "settings"]

NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


def settings() -> Settings:
    return Settings(
        database="sqlite:///unused.db",
        server={"report_token": REPORT_TOKEN},
        sources=[
            # Watching the projects of the recorded deliveries (tests/fixtures/*/webhooks).
            {
                "name": "gl",
                "type": "gitlab",
                "projects": ["a/b", "gitlab-org/gitlab-test"],
                "webhook_secret": SECRETS["gl"],
            },
            {
                "name": "gh",
                "type": "github",
                "repos": ["o/r", "octo-org/octo-repo", "Codertocat/Hello-World"],
                "webhook_secret": SECRETS["gh"],
            },
            {
                "name": "jk",
                "type": "jenkins",
                "url": "http://127.0.0.1:1/jenkins",
                "jobs": ["x", "asgard"],
                "webhook_secret": SECRETS["jk"],
            },
            {"name": "open", "type": "gitlab", "projects": ["a/b"]},
        ],
    )


def build_app(runtime: Runtime) -> FastAPI:
    app = FastAPI()
    app.state.runtime = runtime
    app.include_router(hooks.router)
    app.include_router(report.router)
    return app


@dataclass
class Server:
    url: str
    runtime: Runtime
    http: aiohttp.ClientSession
    app: FastAPI

    async def post(
        self, path: str, body: bytes | str, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data: bytes | io.BytesIO = body.encode() if isinstance(body, str) else body
        if len(data) > 1024 * 1024:
            data = io.BytesIO(data)  # aiohttp warns about large raw bodies
        async with self.http.post(self.url + path, data=data, headers=headers or {}) as resp:
            payload = await resp.json(content_type=None)
            return resp.status, payload

    async def settle(self) -> None:
        await self.runtime.ingest.drain()


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture
async def server(store: Store) -> AsyncIterator[Server]:
    runtime = Runtime(settings(), store, FakeClock(NOW), CollectionMetrics())
    app = build_app(runtime)
    async with serving(app) as url, aiohttp.ClientSession() as http:
        yield Server(url, runtime, http, app)
        await Server(url, runtime, http, app).settle()

"""Fixtures of the web tests: a runtime over the `store` fixture (both engines), the app, and an
httpx client talking to it in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from ciwatch.runtime import Runtime
from ciwatch.store import SqlStore
from ciwatch.web.app import create_app

from .harness import make_runtime


@pytest.fixture
def runtime(store: SqlStore) -> Runtime:
    return make_runtime(store)


@pytest.fixture
async def app(runtime: Runtime) -> AsyncIterator[FastAPI]:
    built = create_app(runtime, metrics_max_age=0.0)
    yield built
    await built.state.metrics_cache.aclose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ciwatch.test") as c:
        yield c

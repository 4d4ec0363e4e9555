"""`/readyz` is unauthenticated: a background task that died of a store error is named with
the error's class only, never with the database's host, name or user (both engines)."""

from __future__ import annotations

import json

import httpx

from ciwatch.runtime import Runtime
from ciwatch.store import SqlStore


async def test_a_dead_task_is_named_without_the_database(
    client: httpx.AsyncClient, runtime: Runtime, store: SqlStore
) -> None:
    where = store.endpoint.where
    state = runtime.supervisor.register("poll")
    state.error = f"StoreError: write failed on {where}: password authentication failed"
    answer = await client.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["error"] == "background task down"
    assert body["detail"]["message"] == "background task poll is down: StoreError"
    assert where not in json.dumps(body)
    assert "password" not in json.dumps(body)

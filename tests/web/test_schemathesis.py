"""Schemathesis over the served OpenAPI document (both engines): every operation of
`/openapi.json` (fetched behind basic auth, as a client would) gets generated requests
against a real uvicorn server, and none is answered 5xx (`not_a_server_error`).

The server runs in a thread with its own event loop, so that schemathesis's synchronous
client can talk to it; each operation gets a bounded number of examples."""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import open_store
from ciwatch.web.app import create_app
from hooks.conftest import NOW, REPORT_TOKEN, SECRETS
from hooks.conftest import settings as hook_settings

from .harness import PASSWORD, USER, serve

BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
EXAMPLES = 25


def app_settings() -> Settings:
    base = hook_settings().model_dump(mode="python")
    for source in base["sources"]:
        if source["type"] == "github":
            source["url"] = "http://127.0.0.1:1"
    base["server"].update(username=USER, password=PASSWORD)
    return Settings(**base)


@pytest.fixture
def live_url(store_url: str) -> Iterator[str]:
    """A real server over `store_url` (migrated), in a thread with its own event loop."""
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        store = open_store(store_url)
        try:
            await store.upgrade()
            runtime = Runtime(app_settings(), store, FakeClock(NOW), CollectionMetrics())
            app = create_app(runtime, metrics_max_age=0.0)
            async with serve(app) as url:
                stop = asyncio.Event()
                state.update(url=url, loop=asyncio.get_running_loop(), stop=stop)
                ready.set()
                await stop.wait()
        finally:
            await store.close()

    def run() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:
            state["error"] = exc
            ready.set()

    thread = threading.Thread(target=run, name="schemathesis-server", daemon=True)
    thread.start()
    assert ready.wait(60), "the server did not start"
    if "error" in state:
        raise state["error"]
    yield state["url"]
    state["loop"].call_soon_threadsafe(state["stop"].set)
    thread.join(30)
    assert "error" not in state, state.get("error")


@pytest.fixture
def api_schema(live_url: str) -> Any:
    """The OpenAPI document the server serves, read with basic auth."""
    # The password is not Latin-1: the header is built as UTF-8, as the server announces.
    answer = requests.get(live_url + "/openapi.json", headers={"Authorization": BASIC}, timeout=30)
    assert answer.status_code == 200, answer.text
    return schemathesis.openapi.from_dict(answer.json())


schema = schemathesis.pytest.from_fixture("api_schema")


def _credentials(path: str, case: Any) -> dict[str, str]:
    """What a legitimate client sends to this operation: the bearer report token, a
    receiver's own secret for a configured source, basic auth everywhere else."""
    if path == "/api/v1/report":
        return {"Authorization": f"Bearer {REPORT_TOKEN}", "Content-Type": "application/json"}
    if path.startswith("/hooks/gitlab/"):
        case.path_parameters = {**(case.path_parameters or {}), "source": "gl"}
        return {"X-Gitlab-Token": SECRETS["gl"], "X-Gitlab-Event": "Pipeline Hook"}
    if path.startswith("/hooks/jenkins/"):
        case.path_parameters = {**(case.path_parameters or {}), "source": "jk"}
        return {"X-Ciwatch-Token": SECRETS["jk"]}
    if path.startswith("/hooks/"):
        return {}
    return {"Authorization": BASIC}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
def test_no_operation_answers_5xx(case: Any, live_url: str) -> None:
    headers = _credentials(case.operation.path, case)
    case.call_and_validate(base_url=live_url, headers=headers, checks=[not_a_server_error])

"""Hostile input at the edge (both engines), against the whole app under a real uvicorn server:
the three receivers, `POST /api/v1/report` and the silence API never answer 5xx, a 4xx
answer carries the error object and leaves the store as it was, and whatever is accepted
renders afterwards (strict JSON, the dashboard)."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import SqlStore
from ciwatch.web.app import create_app
from web.harness import GOOD, PASSWORD, USER, serve

from .conftest import NOW, REPORT_TOKEN
from .conftest import settings as hook_settings
from .hostile import SILENCE_IDS, encode, hostile_field, request, silence_body

HOSTILE = settings(
    max_examples=60,
    deadline=None,
    # The served app is shared by every example; each one compares the store before and after.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
TABLES = ("runs", "jobs", "ref_states", "silences")
RECEIVERS = ("report", "gitlab", "github", "jenkins")


def app_settings() -> Settings:
    """The receivers' sources (GitHub's API pointed nowhere) behind basic auth."""
    base = hook_settings().model_dump(mode="python")
    for source in base["sources"]:
        if source["type"] == "github":
            source["url"] = "http://127.0.0.1:1"
    base["server"].update(username=USER, password=PASSWORD)
    return Settings(**base)


@dataclass
class Served:
    url: str
    http: aiohttp.ClientSession
    store: SqlStore
    numbers: itertools.count[int]

    async def send(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, data=body, headers=headers) as answer:
            text = await answer.text()
            try:
                return answer.status, json.loads(text)
            except ValueError:
                return answer.status, text

    async def rows(self) -> list[str]:
        """Every row of the tables a request may write, as text (NaN-proof comparison)."""

        async def read(conn: AsyncConnection) -> list[str]:
            found = []
            for table in TABLES:
                result = await conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY id")  # noqa: S608
                found.extend(f"{table}: {row!r}" for row in result.all())
            return found

        return await self.store.read("snapshot", read)


@pytest.fixture
async def served(store: SqlStore) -> AsyncIterator[Served]:
    runtime = Runtime(app_settings(), store, FakeClock(NOW), CollectionMetrics())
    app = create_app(runtime, metrics_max_age=0.0)
    async with serve(app) as url, aiohttp.ClientSession() as http:
        yield Served(url, http, store, itertools.count(1))


async def _refused_or_renders(served: Served, status: int, answer: Any, before: list[str]) -> None:
    event(f"answer {status}")
    assert status < 500, answer
    if 400 <= status < 500:
        assert isinstance(answer, dict) and set(answer) == {"error", "detail"}, answer
        assert await served.rows() == before
        return
    for path in ("/api/v1/runs", "/api/v1/projects"):
        code, listed = await served.send("GET", path, None, GOOD)
        assert code == 200, listed
    code, page = await served.send("GET", "/", None, GOOD)
    assert code == 200, page


@pytest.mark.parametrize("receiver", RECEIVERS)
@HOSTILE
@given(case=st.data())
async def test_hostile_values_never_5xx_and_a_refusal_stores_nothing(
    served: Served, receiver: str, case: st.DataObject, caplog: pytest.LogCaptureFixture
) -> None:
    field, value = case.draw(hostile_field(receiver), label="field, value")
    sent = request(receiver, next(served.numbers), field, value, REPORT_TOKEN)
    before = await served.rows()
    with caplog.at_level(logging.INFO):
        status, answer = await served.send("POST", sent.path, sent.body, sent.headers)
    await _refused_or_renders(served, status, answer, before)
    # No request-derived value forges a log line.
    for record in caplog.records:
        assert "\n" not in record.getMessage() and "\r" not in record.getMessage()


@HOSTILE
@given(body=silence_body())
async def test_hostile_silences_never_5xx_and_a_refusal_stores_nothing(
    served: Served, body: Any
) -> None:
    before = await served.rows()
    headers = {**GOOD, "Content-Type": "application/json"}
    status, answer = await served.send("POST", "/api/v1/silences", encode(body), headers)
    await _refused_or_renders(served, status, answer, before)
    code, listed = await served.send("GET", "/api/v1/silences?all=1", None, GOOD)
    assert code == 200, listed


@HOSTILE
@given(silence_id=SILENCE_IDS)
async def test_expiring_any_silence_id_never_5xx(served: Served, silence_id: int) -> None:
    before = await served.rows()
    status, answer = await served.send("DELETE", f"/api/v1/silences/{silence_id}", None, GOOD)
    assert status in (404, 422), answer
    assert set(answer) == {"error", "detail"}
    assert await served.rows() == before


GET_TEXT = st.one_of(
    st.builds(
        lambda a, c, b: a + c + b,
        st.text(max_size=5),
        st.sampled_from(["\x00", "\r\n", "\x1b", "\u2028", "\ud800", "\x85"]),
        st.text(max_size=5),
    ),
    st.integers(1001, 20_000).map(lambda n: "p" * n),
)
GET_PATHS = [
    "/?source={v}",
    "/?project={v}&ref={v}",
    "/projects/{v}/{v}",
    "/projects/gitlab-main/group/app?ref={v}&cursor={v}",
    "/alerts?state={v}",
    "/api/v1/runs?source={v}",
    "/api/v1/runs?project={v}&ref={v}",
    "/api/v1/runs?cursor={v}",
    "/api/v1/runs?since={v}",
    "/api/v1/runs/{v}/{v}/{v}",
    "/api/v1/projects?source={v}&project={v}&ref={v}",
    "/api/v1/targets?source={v}",
    "/api/v1/silences?all={v}",
    "/cc.xml?source={v}&project={v}",
]


@HOSTILE
@given(path=st.sampled_from(GET_PATHS), value=GET_TEXT)
async def test_hostile_filters_and_path_values_never_5xx(
    served: Served, path: str, value: str
) -> None:
    quoted = quote(value.encode("utf-8", "surrogatepass"), safe="")
    status, answer = await served.send("GET", path.format(v=quoted), None, GOOD)
    event(f"answer {status}")
    assert status < 500, answer

"""The error object `{"error", "detail"}` for every class of error
(docs/architecture.md#http-and-dashboard)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from ciwatch.store import open_store
from ciwatch.web.app import create_app

from .harness import make_runtime

# Nothing listens on port 1: every query fails fast with "connection refused".
DOWN_URL = "postgresql://postgres@127.0.0.1:1/ciwatch"


def assert_error(reply: httpx.Response, status: int, error: str | None = None) -> object:
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert set(body) == {"error", "detail"}
    assert isinstance(body["error"], str) and body["error"]
    if error is not None:
        assert body["error"] == error
    return body["detail"]


async def test_bad_cursor_is_400_naming_cursor(client: httpx.AsyncClient) -> None:
    for cursor in ("garbage", "WyJub3QiXQ", "!!!"):
        reply = await client.get("/api/v1/runs", params={"cursor": cursor})
        detail = assert_error(reply, 400, "invalid cursor")
        assert isinstance(detail, dict) and detail["field"] == "cursor"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=many", "limit"),
        ("status=green", "status"),
        ("since=yesterday", "since"),
    ],
)
async def test_bad_parameter_is_422_naming_it(
    client: httpx.AsyncClient, query: str, field: str
) -> None:
    reply = await client.get(f"/api/v1/runs?{query}")
    detail = assert_error(reply, 422, f"invalid request: {field}")
    assert isinstance(detail, list)
    assert [(d["field"], d["in"]) for d in detail] == [(field, "query")]
    assert detail[0]["message"]


async def test_several_bad_parameters_are_all_named(client: httpx.AsyncClient) -> None:
    reply = await client.get("/api/v1/runs?limit=0&status=green")
    detail = assert_error(reply, 422, "invalid request: status, limit")
    assert isinstance(detail, list)
    assert {d["field"] for d in detail} == {"limit", "status"}


@pytest.mark.parametrize(
    "path", ["/nope", "/api/v1/nope", "/api/v1/runs/only-source", "/projects", "/static/x.css"]
)
async def test_unknown_path_is_404(client: httpx.AsyncClient, path: str) -> None:
    # /projects without a source is not a dashboard page either.
    assert_error(await client.get(path), 404, "not found")


BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.mark.parametrize("path", ["/nope", "/projects", "/static/x.css", "/no/<script>"])
async def test_a_browser_gets_an_html_404_with_a_way_back(
    client: httpx.AsyncClient, path: str
) -> None:
    """Issue 12: a browser's 404 was raw JSON."""
    reply = await client.get(path, headers=BROWSER)
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("text/html")
    assert '<a class="button primary" href="/">Back to the dashboard</a>' in reply.text
    assert "<script>" not in reply.text  # the path is escaped


@pytest.mark.parametrize("path", ["/api/v1/nope", "/hooks/gitlab", "/metrics/x"])
async def test_programs_paths_keep_the_json_404_even_for_a_browser(
    client: httpx.AsyncClient, path: str
) -> None:
    assert_error(await client.get(path, headers=BROWSER), 404, "not found")


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    reply = await client.post("/api/v1/runs")
    detail = assert_error(reply, 405, "method not allowed")
    assert detail == "POST is not allowed on /api/v1/runs"
    assert reply.headers["allow"] == "GET"


async def test_unexpected_failure_is_500_without_traceback(app: FastAPI) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        reply = await client.get("/boom")
    assert_error(reply, 500, "internal error")
    assert "secret" not in reply.text and "Traceback" not in reply.text


@pytest.fixture
async def down_client() -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app whose store is unreachable."""
    store = open_store(DOWN_URL)
    app = create_app(make_runtime(store), metrics_max_age=0.0)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client
    await app.state.metrics_cache.aclose()
    await store.close()


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/runs",
        "/api/v1/runs?cursor=garbage-too",
        "/api/v1/runs/gitlab-main/group/app/1",
        "/api/v1/projects",
        "/api/v1/targets",
        "/cc.xml",
    ],
)
async def test_store_outage_is_503(down_client: httpx.AsyncClient, path: str) -> None:
    reply = await down_client.get(path)
    if "cursor" in path:
        # The cursor is checked before the store is asked.
        assert_error(reply, 400, "invalid cursor")
        return
    detail = assert_error(reply, 503, "store unavailable")
    # The reason (with the database's address) goes to the log, not to the client.
    assert "127.0.0.1" not in reply.text and isinstance(detail, str)


async def test_readyz_names_the_store_when_it_is_down(down_client: httpx.AsyncClient) -> None:
    detail = assert_error(await down_client.get("/readyz"), 503, "store unavailable")
    problem = {"check": "store", "message": "the database did not answer"}
    assert detail == {**problem, "problems": [problem]}
    live = await down_client.get("/healthz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})


async def test_metrics_still_answer_when_the_store_is_down(
    down_client: httpx.AsyncClient,
) -> None:
    reply = await down_client.get("/metrics")
    assert reply.status_code == 200
    assert "ciwatch_store_up 0.0" in reply.text
    assert "# TYPE ci_pipeline_status gauge" in reply.text


async def test_readyz_names_an_old_schema(empty_url: str) -> None:
    store = open_store(empty_url)
    app = create_app(make_runtime(store))
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            detail = assert_error(await client.get("/readyz"), 503, "schema not current")
        problem = {"check": "schema", "message": "run `ciwatch db upgrade`"}
        assert detail == {**problem, "problems": [problem]}
    finally:
        await store.close()

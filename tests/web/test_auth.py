"""Basic auth (docs/architecture.md#http-and-dashboard): every route but the probes needs
credentials once they are set; /metrics only with protect_metrics. The route list is read from the
app, so a new route is covered (and must be classified here if it is meant to be open)."""

from __future__ import annotations

import base64
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ciwatch.providers.registry import SPECS
from ciwatch.store import SqlStore, open_store
from ciwatch.web import auth
from ciwatch.web.app import create_app

from .harness import GOOD, PASSWORD, USER, basic, get_routes, make_runtime, serve

OPEN = {"/healthz", "/readyz", "/static"}
# Routes with their own secret (tested in tests/hooks): the source's webhook secret, the bearer
# report token.
OWN_SECRET = {f"/hooks/{spec.kind}/{{source}}" for spec in SPECS if spec.webhook is not None}
OWN_SECRET_METHODS = {("POST", "/api/v1/report")}
METRICS = "/metrics"


def _routes() -> list[tuple[str, str, str]]:
    # Built without I/O (the store connects on first use), just to list the routes.
    app = create_app(make_runtime(open_store("sqlite:///unused.db")))
    return sorted(set(get_routes(app)))


ROUTES = _routes()
PROTECTED = [
    (method, template, path)
    for method, template, path in ROUTES
    if template not in OPEN | OWN_SECRET | {METRICS}
    and (method, template) not in OWN_SECRET_METHODS
]
GETS = [(template, path) for method, template, path in ROUTES if method == "GET"]
WRONG = [
    pytest.param(None, id="none"),
    pytest.param(basic(USER, "wrong"), id="wrong-password"),
    pytest.param(basic("root", PASSWORD), id="wrong-user"),
    pytest.param(basic(USER, PASSWORD + "x"), id="longer-password"),
    pytest.param(basic(USER, PASSWORD[:-1]), id="prefix-password"),
    pytest.param(basic("", ""), id="empty"),
    pytest.param({"Authorization": "Basic !!!not-base64"}, id="malformed"),
    pytest.param(
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, id="no-colon"
    ),
    pytest.param({"Authorization": "Bearer some-token"}, id="bearer"),
]


def test_the_route_list_is_complete() -> None:
    templates = {template for _, template, _ in ROUTES}
    assert {"/api/v1/runs", "/api/v1/projects", "/cc.xml", "/openapi.json", "/docs"} <= templates
    assert {"/healthz", "/readyz", METRICS, "/api/v1/report"} <= templates
    assert templates >= OWN_SECRET


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    """Authentication does not depend on the engine: these many cases run on SQLite only."""
    opened = open_store(f"sqlite:///{tmp_path / 'auth.db'}")
    await opened.upgrade()
    yield opened
    await opened.close()


@pytest.fixture
async def protected_app(sqlite_store: SqlStore) -> AsyncIterator[FastAPI]:
    runtime = make_runtime(sqlite_store, username=USER, password=PASSWORD)
    app = create_app(runtime, metrics_max_age=0)
    yield app
    await app.state.metrics_cache.aclose()


@pytest.fixture
async def client(protected_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=protected_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


@pytest.mark.parametrize(("method", "template", "path"), PROTECTED)
@pytest.mark.parametrize("headers", WRONG)
async def test_protected_route_refuses_without_the_right_credentials(
    client: httpx.AsyncClient,
    method: str,
    template: str,
    path: str,
    headers: dict[str, str] | None,
) -> None:
    reply = await client.request(method, path, headers=headers)
    assert reply.status_code == 401, (template, reply.text)
    assert reply.headers["www-authenticate"] == 'Basic realm="ciwatch", charset="UTF-8"'
    body = reply.json()
    assert body["error"] == "unauthorized"
    assert body["detail"] in ("credentials required", "wrong user name or password")


@pytest.mark.parametrize(("method", "template", "path"), PROTECTED)
async def test_protected_route_answers_with_the_right_credentials(
    client: httpx.AsyncClient, method: str, template: str, path: str
) -> None:
    reply = await client.request(method, path, headers=GOOD)
    # Sample path values may name nothing (404) and a bodiless POST is invalid (422), but
    # authentication never fails.
    # The dashboard's silence forms also need their CSRF token: authenticated, then refused.
    allowed = (200, 404, 422, 403) if template.startswith("/alerts/silences") else (200, 404, 422)
    assert reply.status_code in allowed, (template, reply.text)


@pytest.mark.parametrize("path", ["/healthz", "/readyz", METRICS])
async def test_probes_and_metrics_are_open_by_default(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path)).status_code == 200


async def test_metrics_protected_when_asked(store: SqlStore) -> None:
    app = create_app(
        make_runtime(store, username=USER, password=PASSWORD, protect_metrics=True),
        metrics_max_age=0,
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        refused = await client.get(METRICS, headers=basic(USER, "nope"))
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
        assert (await client.get(METRICS, headers=GOOD)).status_code == 200
        assert (await client.get("/healthz")).status_code == 200
    await app.state.metrics_cache.aclose()


@pytest.mark.parametrize(("template", "path"), GETS)
async def test_nothing_is_protected_without_credentials_configured(
    sqlite_store: SqlStore, template: str, path: str
) -> None:
    app = create_app(make_runtime(sqlite_store))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get(path)).status_code in (200, 404)
    await app.state.metrics_cache.aclose()


@pytest.mark.parametrize(("method", "template", "path"), sorted(set(ROUTES) - set(PROTECTED)))
async def test_own_secret_and_open_routes_ignore_basic_auth(
    client: httpx.AsyncClient, method: str, template: str, path: str
) -> None:
    reply = await client.request(method, path)
    # Webhooks and reports may refuse (401 with a Bearer challenge), never for basic auth.
    assert reply.headers.get("www-authenticate") != auth.CHALLENGE, (template, reply.text)


async def test_auth_through_a_real_server(store: SqlStore) -> None:
    app = create_app(make_runtime(store, username=USER, password=PASSWORD))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/api/v1/runs")).status_code == 401
        answer = await client.get("/api/v1/runs", auth=(USER, PASSWORD))
        assert answer.status_code == 200
        assert answer.json() == {"runs": [], "next": None}
        assert (await client.get("/healthz")).status_code == 200


def _recording_compare(calls: list[tuple[bytes, bytes]]) -> Any:
    real = hmac.compare_digest

    def compare(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    return compare


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic !!!",
        basic("root", "x")["Authorization"],
        basic(USER, "x")["Authorization"],
        basic(USER, PASSWORD)["Authorization"],
    ],
)
def test_user_and_password_are_always_both_compared(
    monkeypatch: pytest.MonkeyPatch, header: str | None
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    monkeypatch.setattr(auth.hmac, "compare_digest", _recording_compare(calls))
    ok = auth.credentials_match(header, USER, PASSWORD)
    assert ok == (header == GOOD["Authorization"])
    assert len(calls) == 2
    assert all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)
    assert calls[0][1] == USER.encode() and calls[1][1] == PASSWORD.encode()


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("Basic", None),
        ("Digest abc", None),
        ("basic " + base64.b64encode(b"a:b:c").decode(), ("a", "b:c")),
        ("Basic " + base64.b64encode("ü:ß".encode()).decode(), ("ü", "ß")),
        ("Basic " + base64.b64encode(b"\xff:x").decode(), None),
    ],
)
def test_parse_basic(header: str | None, expected: tuple[str, str] | None) -> None:
    assert auth.parse_basic(header) == expected

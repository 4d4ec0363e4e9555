"""`GET /api/v1/alerts` with delivery outcomes, and silences CRUD, on both engines."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from alert_seed import DINGTALK_ERROR, seed_alerts
from ciwatch.store import SqlStore, open_store
from ciwatch.web.app import create_app
from ciwatch.web.schemas import AlertsAnswer, SilenceAnswer, SilencesAnswer

from .harness import GOOD, PASSWORD, USER, make_runtime


async def test_alerts_firing_first_with_channel_outcomes(
    store: SqlStore, client: httpx.AsyncClient
) -> None:
    await seed_alerts(store)
    reply = await client.get("/api/v1/alerts")
    assert reply.status_code == 200
    body = reply.json()
    AlertsAnswer.model_validate(body)
    labels = [(a["state"], a["rule"], a["source"]) for a in body["alerts"]]
    assert labels == [
        ("firing", "stuck", "jenkins"),
        ("firing", "broken", "gitlab-main"),
        ("resolved", "broken", "gh"),
    ]
    app = body["alerts"][1]
    assert app["event"] == "broken"
    assert (app["project"], app["ref"]) == ("group/app", "main")
    assert app["first_seen"] == "2026-01-05T09:00:00Z"
    assert app["last_notified"] == "2026-01-05T09:00:00Z"
    outcomes = {c["channel"]: (c["outcome"], c["error"]) for c in app["channels"]}
    assert outcomes == {
        "dingtalk": ("failed", DINGTALK_ERROR),
        "hook": ("pending", "timed out"),
        "slack": ("sent", None),
    }
    assert body["alerts"][0]["channels"] == [] and body["alerts"][0]["event"] is None
    resolved = body["alerts"][2]
    assert resolved["event"] == "recovered"
    assert [(c["channel"], c["event"]) for c in resolved["channels"]] == [("slack", "recovered")]


async def test_alerts_filters(store: SqlStore, client: httpx.AsyncClient) -> None:
    await seed_alerts(store)
    firing = (await client.get("/api/v1/alerts", params={"state": "firing"})).json()
    assert {a["state"] for a in firing["alerts"]} == {"firing"} and len(firing["alerts"]) == 2
    resolved = (await client.get("/api/v1/alerts", params={"state": "resolved"})).json()
    assert [a["source"] for a in resolved["alerts"]] == ["gh"]
    one = (await client.get("/api/v1/alerts", params={"limit": 1})).json()
    assert [a["rule"] for a in one["alerts"]] == ["stuck"]
    bad = await client.get("/api/v1/alerts", params={"state": "burning"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["field"] == "state"


async def test_silences_create_list_expire(client: httpx.AsyncClient) -> None:
    reply = await client.post(
        "/api/v1/silences",
        json={
            "matchers": {"project": "group/*", "event": "broken"},
            "duration": "2h",
            "comment": "maintenance",
            "created_by": "ops",
        },
    )
    assert reply.status_code == 201, reply.text
    silence = SilenceAnswer.model_validate(reply.json()).silence
    assert silence.matchers == {"project": "group/*", "event": "broken"}
    assert (silence.ends_at - silence.starts_at).total_seconds() == 7200
    assert (silence.comment, silence.created_by, silence.active) == ("maintenance", "ops", True)
    later = await client.post(
        "/api/v1/silences",
        json={"matchers": {"ref": "release/*"}, "ends_at": "2030-01-01T00:00:00Z"},
    )
    assert later.status_code == 201
    listed = SilencesAnswer.model_validate((await client.get("/api/v1/silences")).json())
    assert [s.id for s in listed.silences] == [silence.id, later.json()["silence"]["id"]]

    gone = await client.delete(f"/api/v1/silences/{silence.id}")
    assert gone.status_code == 200
    assert gone.json()["silence"]["active"] is False
    active = (await client.get("/api/v1/silences")).json()["silences"]
    assert [s["id"] for s in active] == [later.json()["silence"]["id"]]
    everything = (await client.get("/api/v1/silences", params={"all": "1"})).json()["silences"]
    assert [s["id"] for s in everything] == [silence.id, later.json()["silence"]["id"]]
    # Expiring again answers the silence unchanged; an unknown id is 404.
    again = await client.delete(f"/api/v1/silences/{silence.id}")
    assert again.json() == gone.json()
    missing = await client.delete("/api/v1/silences/999")
    assert (missing.status_code, missing.json()["error"]) == (404, "silence not found")


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"matchers": {}, "duration": "1h"}, 400, "matchers"),
        ({"matchers": {"ref": "main"}}, 400, "ends_at"),
        (
            {"matchers": {"ref": "main"}, "duration": "1h", "ends_at": "2030-01-01T00:00:00Z"},
            400,
            "ends_at",
        ),
        ({"matchers": {"ref": "main"}, "duration": "soon"}, 400, "duration"),
        ({"matchers": {"ref": "main"}, "duration": "0s"}, 400, "duration"),
        ({"matchers": {"ref": "main"}, "ends_at": "2000-01-01T00:00:00Z"}, 400, "ends_at"),
        ({"matchers": {"branch": "main"}, "duration": "1h"}, 422, "matchers.branch"),
        ({"matchers": {"ref": ""}, "duration": "1h"}, 422, "matchers.ref"),
    ],
)
async def test_bad_silences_name_the_field(
    client: httpx.AsyncClient, body: dict[str, object], status: int, field: str
) -> None:
    reply = await client.post("/api/v1/silences", json=body)
    assert reply.status_code == status, reply.text
    detail = reply.json()["detail"]
    fields = [d["field"] for d in detail] if isinstance(detail, list) else [detail["field"]]
    assert field in fields
    assert (await client.get("/api/v1/silences")).json() == {"silences": []}


async def test_alerts_and_silences_need_credentials_when_configured(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'auth.db'}")
    await store.upgrade()
    app = create_app(make_runtime(store, username=USER, password=PASSWORD), metrics_max_age=0)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            new = {"matchers": {"ref": "main"}, "duration": "1h"}
            for method, path, body in [
                ("GET", "/api/v1/alerts", None),
                ("GET", "/api/v1/silences", None),
                ("POST", "/api/v1/silences", new),
                ("DELETE", "/api/v1/silences/1", None),
            ]:
                refused = await client.request(method, path, json=body)
                assert refused.status_code == 401, path
                assert refused.json()["error"] == "unauthorized"
            made = await client.post("/api/v1/silences", json=new, headers=GOOD)
            assert made.status_code == 201
            listed = await client.get("/api/v1/silences", headers=GOOD)
            assert len(listed.json()["silences"]) == 1
            assert (await client.delete("/api/v1/silences/1", headers=GOOD)).status_code == 200
    finally:
        await app.state.metrics_cache.aclose()
        await store.close()

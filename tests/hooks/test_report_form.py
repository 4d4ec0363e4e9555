"""`POST /api/v1/report` with a form body (`application/x-www-form-urlencoded`, what
`curl --data-urlencode` sends): the same fields, validation and answers as the JSON body."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest

from ciwatch.domain import RunKey
from ciwatch.web.report import FORM, form_report

from .conftest import REPORT_TOKEN, Server

JSON = {"Authorization": f"Bearer {REPORT_TOKEN}", "Content-Type": "application/json"}
FORMED = {"Authorization": f"Bearer {REPORT_TOKEN}", "Content-Type": FORM}

FULL = {
    "project": "team/app & co",
    "status": "failed",
    "source": "ci-push",
    "number": 12,
    "workflow": 'CI "nightly" = yes',
    "ref": "feat/ü a+b%20c",
    "sha": "abc123",
    "event": "push",
    "provider_status": "UNSTABLE",
    "started_at": "2026-02-01T11:58:00+01:00",
    "finished_at": "2026-02-01T11:00:30Z",
    "queued_seconds": 2.5,
    "url": "https://ci.example.com/r?a=1&b=2",
    "author": "o'brien\nsecond line",
    "attempt": 3,
}


def form(fields: dict[str, Any]) -> str:
    return urlencode({k: str(v) for k, v in fields.items()})


async def test_form_report_is_stored_like_the_json_one(server: Server) -> None:
    status, by_json = await server.post("/api/v1/report", json.dumps({**FULL, "run_id": "j"}), JSON)
    assert status == 202, by_json
    status, by_form = await server.post("/api/v1/report", form({**FULL, "run_id": "f"}), FORMED)
    assert status == 202, by_form
    assert {**by_form, "run_id": "j"} == by_json
    # Numbers came in as text and are numbers again.
    assert (by_form["number"], by_form["attempt"], by_form["queued_seconds"]) == (12, 3, 2.5)
    assert by_form["duration_seconds"] == 150.0
    stored = await server.runtime.store.get_run(RunKey("ci-push", "team/app & co", "f"))
    assert stored is not None
    assert (stored.ref, stored.author) == ("feat/ü a+b%20c", "o'brien\nsecond line")


BASE = {"project": "p", "run_id": "1", "status": "success"}


@pytest.mark.parametrize(
    "fields",
    [
        {"run_id": "1", "status": "success"},
        {"project": "p", "status": "success"},
        {**BASE, "status": "green"},
        {**BASE, "started_at": "soon"},
        {**BASE, "colour": "red"},
        {**BASE, "number": "twelve"},
        {**BASE, "attempt": "0"},
        {**BASE, "duration_seconds": "-1"},
        {**BASE, "source": "Not A Name"},
    ],
)
async def test_a_bad_form_gets_the_json_answer(server: Server, fields: dict[str, str]) -> None:
    as_json = {
        k: json.loads(v) if k in ("attempt", "duration_seconds") else v for k, v in fields.items()
    }
    json_status, json_answer = await server.post("/api/v1/report", json.dumps(as_json), JSON)
    form_status, form_answer = await server.post("/api/v1/report", form(fields), FORMED)
    assert json_status == 422
    assert (form_status, form_answer) == (json_status, json_answer)
    assert (await server.runtime.store.history(limit=1)).runs == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("project=p&run_id=1&status=success&status=failed", "status"),
        ("project=%FF&run_id=1&status=success", "project"),
        ("project=&run_id=1&status=success", "project"),
    ],
)
async def test_form_only_problems_name_the_field(server: Server, body: str, field: str) -> None:
    status, answer = await server.post("/api/v1/report", body, FORMED)
    assert status == 422, answer
    assert answer["error"] == f"invalid report: {field}"
    assert [p["field"] for p in answer["detail"]] == [field]
    assert (await server.runtime.store.history(limit=1)).runs == []


async def test_json_labelled_as_a_form_is_still_json(server: Server) -> None:
    # `curl -d '{...}'` without a content type header labels its JSON as a form.
    headers = {**FORMED, "Content-Type": f"{FORM}; charset=utf-8"}
    status, run = await server.post("/api/v1/report", json.dumps(BASE), headers)
    assert status == 202, run
    status, run = await server.post("/api/v1/report", form({**BASE, "run_id": "2"}), headers)
    assert status == 202, run
    assert run["run_id"] == "2"


def test_form_report_decodes_like_a_browser() -> None:
    body = b"project=a%2Fb+c&run_id=7&status=success&ref=x%2By%3Dz%26w&number=4&sha=&attempt=x"
    assert form_report(body) == {
        "project": "a/b c",
        "run_id": "7",
        "status": "success",
        "ref": "x+y=z&w",
        "number": 4,
        "attempt": "x",  # not a number: left for the validation to name
    }
    assert form_report(b"") == {}
    assert form_report(b"run_id=0012") == {"run_id": "0012"}  # a string field stays text


async def test_openapi_gives_both_bodies(server: Server) -> None:
    body = server.app.openapi()["paths"]["/api/v1/report"]["post"]["requestBody"]
    content = body["content"]
    assert set(content) == {"application/json", FORM}
    assert content[FORM]["schema"] == content["application/json"]["schema"]
    assert content[FORM]["schema"]["required"] == ["project", "run_id", "status"]

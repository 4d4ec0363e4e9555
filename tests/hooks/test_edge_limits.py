"""The cases of issue 11 one by one, against the receivers and the report API (real server, both
engines): each hostile value is refused with 400 or 422 naming the field, the store is left as
it was, and no log line is forged."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from ciwatch.validation import (
    Invalid,
    check_delivery,
    json_depth_over,
    loggable,
)
from factories import make_job, make_run

from .conftest import NOW, REPORT_TOKEN, Server
from .hostile import Raw, request

AUTH = {"Authorization": f"Bearer {REPORT_TOKEN}", "Content-Type": "application/json"}
DEEP = 100_000


async def _nothing_stored(server: Server) -> None:
    assert (await server.runtime.store.history(limit=5)).runs == []


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("created_at", "9999-12-31T23:59:59-01:00", "created_at"),
        ("started_at", "0001-01-01T00:00:00+01:00", "started_at"),
        ("created_at", "0001-01-01T00:00:00Z", "created_at"),
        ("updated_at", "2999-01-01T00:00:00Z", "updated_at"),
        ("finished_at", 1e20, "finished_at"),
        ("number", 2**64, "number"),
        ("attempt", -5, "attempt"),
        ("attempt", 10**6, "attempt"),
        ("duration_seconds", Raw("1e999"), "duration_seconds"),
        ("duration_seconds", Raw("NaN"), "duration_seconds"),
        ("queued_seconds", -1, "queued_seconds"),
        ("ref", "main\x00", "ref"),
        ("ref", "main\r\nFAKE log line", "ref"),
        ("workflow", "CI\u2028x", "workflow"),
        ("sha", "a" * 201, "sha"),
        ("author", "bob\x00", "author"),
    ],
)
async def test_report_refuses_and_names_the_field(
    server: Server, field: str, value: Any, named: str
) -> None:
    sent = request("report", 1, field, value, REPORT_TOKEN)
    status, answer = await server.post(sent.path, sent.body, sent.headers)
    assert status == 422, answer
    assert named in answer["error"]
    assert any(named in problem["field"] for problem in answer["detail"])
    await _nothing_stored(server)


async def test_report_nested_too_deep_is_refused_before_parsing(server: Server) -> None:
    body = "[" * DEEP + "]" * DEEP
    status, answer = await server.post("/api/v1/report", body, AUTH)
    assert status == 422
    assert answer["detail"] == [{"field": "body", "problem": "JSON nested too deep"}]


@pytest.mark.parametrize("receiver", ["gitlab", "github", "jenkins"])
async def test_receivers_refuse_deep_json_with_400(server: Server, receiver: str) -> None:
    sent = request(receiver, 1, "", Raw('{"a":' * DEEP + "1" + "}" * DEEP), REPORT_TOKEN)
    status, answer = await server.post(sent.path, sent.body, sent.headers)
    assert status == 400, answer
    assert "64 levels" in answer["detail"]
    await _nothing_stored(server)


@pytest.mark.parametrize(
    ("receiver", "field", "value", "status", "named"),
    [
        ("github", "workflow_run.run_attempt", -5, 422, "payload"),
        ("github", "workflow_run.updated_at", "2999-01-01T00:00:00Z", 422, "run.updated_at"),
        ("github", "workflow_run.created_at", "9999-12-31T23:59:59-01:00", 400, "created_at"),
        ("github", "workflow_run.run_number", 2**63, 422, "run.number"),
        ("github", "workflow_run.head_branch", "main\r\nx", 422, "run.ref"),
        ("gitlab", "object_attributes.ref", "main\x00", 422, "run.ref"),
        ("gitlab", "object_attributes.created_at", "1969-12-31T23:59:59Z", 422, "run.created_at"),
        ("gitlab", "builds.0.name", "te\nst", 422, "].name"),
        ("gitlab", "object_attributes.duration", -3.5, 422, "run.duration_seconds"),
        ("jenkins", "build.timestamp", 1e20, 400, "timestamp"),
        ("jenkins", "build.scm.branch", "dev\x1b[31m", 422, "run.ref"),
        ("jenkins", "build.full_url", "http://j/" + "x" * 3000, 422, "run.url"),
    ],
)
async def test_receivers_refuse_and_name_the_field(
    server: Server,
    caplog: pytest.LogCaptureFixture,
    receiver: str,
    field: str,
    value: Any,
    status: int,
    named: str,
) -> None:
    sent = request(receiver, 1, field, value, REPORT_TOKEN)
    with caplog.at_level(logging.INFO):
        answered, answer = await server.post(sent.path, sent.body, sent.headers)
    assert answered == status, answer
    assert named in json.dumps(answer)
    await _nothing_stored(server)
    for record in caplog.records:
        assert "\n" not in record.getMessage() and "\r" not in record.getMessage()


async def test_a_cr_lf_source_name_is_escaped_in_the_log(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ciwatch.hooks"):
        status, _ = await server.post("/hooks/gitlab/x%0D%0AFORGED", "{}", {})
    assert status == 404
    messages = [record.getMessage() for record in caplog.records]
    assert any("\\r\\n" in message for message in messages)
    assert all("\n" not in message for message in messages)


def test_depth_scan_ignores_brackets_inside_strings() -> None:
    quoted = json.dumps({"a": "[" * 1000 + '\\"{' * 100})
    assert not json_depth_over(quoted)
    assert json_depth_over("[" * 65 + "]" * 65)
    assert not json_depth_over("[" * 64 + "]" * 64)
    assert json_depth_over(b'{"a":' * 65 + b"1" + b"}" * 65)


def test_loggable_escapes_line_breaks_and_keeps_plain_text() -> None:
    assert loggable("group/app") == "group/app"
    assert loggable("a\r\nb") == "a\\r\\nb"
    assert loggable("x\u2028y\x1b") == "x\\u2028y\\x1b"
    assert loggable("é" * 400).endswith("…") and len(loggable("é" * 400)) == 300


def test_check_delivery_names_every_bad_field_of_the_run_and_its_jobs() -> None:
    run = make_run(ref="a\nb", duration_seconds=-1.0, updated_at=NOW)
    job = make_job(name="n\x00", job_id="77", updated_at=NOW)
    with pytest.raises(Invalid) as raised:
        check_delivery(run, [job], NOW)
    assert [p["field"] for p in raised.value.detail()] == [
        "run.ref",
        "run.duration_seconds",
        "jobs[77].name",
    ]
    check_delivery(make_run(updated_at=NOW), [make_job(updated_at=NOW)], NOW)


def test_the_domain_refuses_non_finite_durations() -> None:
    with pytest.raises(ValueError, match="duration_seconds"):
        make_run(duration_seconds=float("inf"))
    with pytest.raises(ValueError, match="queued_seconds"):
        make_job(queued_seconds=float("nan"))


async def test_a_report_over_the_size_limit_is_413(server: Server) -> None:
    body = json.dumps({"project": "p", "run_id": "1", "status": "success", "url": "x" * 300_000})
    status, answer = await server.post("/api/v1/report", body, AUTH)
    assert status == 413
    assert answer["error"] == "report over 262144 bytes"
    await _nothing_stored(server)

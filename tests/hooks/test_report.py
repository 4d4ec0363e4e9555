"""`POST /api/v1/report` and `ciwatch report` (a real process) against a running app."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys

import pytest

from ciwatch.domain import RunKey, Status
from ciwatch.reporting import build_report, detect_ci, parse_status

from .conftest import REPORT_TOKEN, Server

AUTH = {"Authorization": f"Bearer {REPORT_TOKEN}", "Content-Type": "application/json"}


async def test_report_is_stored_and_returned(server: Server) -> None:
    body = {
        "project": "team/app",
        "run_id": "77",
        "status": "success",
        "ref": "main",
        "started_at": "2026-02-01T11:58:00+01:00",
        "finished_at": "2026-02-01T11:00:30Z",
    }
    status, run = await server.post("/api/v1/report", json.dumps(body), AUTH)
    assert status == 202, run
    assert run["source"] == "push"
    assert run["provider"] == "push"
    assert run["started_at"] == "2026-02-01T10:58:00Z"
    assert run["duration_seconds"] == 150.0
    stored = await server.runtime.store.get_run(RunKey("push", "team/app", "77"))
    assert stored is not None
    assert stored.status is Status.SUCCESS


async def test_running_then_success_converge_whatever_the_order(server: Server) -> None:
    base = {"project": "p", "run_id": "1"}
    done = {**base, "status": "success", "updated_at": "2026-02-01T12:05:00Z"}
    running = {**base, "status": "running", "updated_at": "2026-02-01T12:01:00Z"}
    for body in (done, running):
        status, _ = await server.post("/api/v1/report", json.dumps(body), AUTH)
        assert status == 202
    stored = await server.runtime.store.get_run(RunKey("push", "p", "1"))
    assert stored is not None
    assert stored.status is Status.SUCCESS


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({"Content-Type": "application/json"}, "bearer"),
        ({"Authorization": "Bearer nope", "Content-Type": "application/json"}, "bearer"),
    ],
)
async def test_report_needs_the_token(server: Server, headers: dict[str, str], error: str) -> None:
    body = json.dumps({"project": "p", "run_id": "1", "status": "success"})
    status, answer = await server.post("/api/v1/report", body, headers)
    assert status == 401
    assert error in answer["error"]
    assert (await server.runtime.store.history(limit=1)).runs == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"run_id": "1", "status": "success"}, "project"),
        ({"project": "p", "status": "success"}, "run_id"),
        ({"project": "p", "run_id": "1", "status": "green"}, "status"),
        ({"project": "p", "run_id": "1", "status": "success", "started_at": "soon"}, "started_at"),
        ({"project": "p", "run_id": "1", "status": "success", "colour": "red"}, "colour"),
    ],
)
async def test_bad_reports_name_the_field(server: Server, body: dict[str, str], field: str) -> None:
    status, answer = await server.post("/api/v1/report", json.dumps(body), AUTH)
    assert status == 422
    assert field in answer["error"]
    assert (await server.runtime.store.history(limit=1)).runs == []


async def test_malformed_json_is_422(server: Server) -> None:
    status, answer = await server.post("/api/v1/report", "{not json", AUTH)
    assert status == 422
    assert "error" in answer


async def _cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ciwatch",
        "report",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_reports_from_github_actions_variables(server: Server) -> None:
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": "octo-org/app",
        "GITHUB_RUN_ID": "555",
        "GITHUB_RUN_NUMBER": "12",
        "GITHUB_REF_NAME": "main",
        "GITHUB_SHA": "b" * 40,
        "GITHUB_ACTOR": "octocat",
        "GITHUB_SERVER_URL": "https://github.com",
        "CIWATCH_REPORT_TOKEN": REPORT_TOKEN,
    }
    code, out, err = await _cli("--server", server.url, "--status", "failure", "--json", env=env)
    assert code == 0, err
    run = json.loads(out)
    assert (run["project"], run["run_id"], run["number"]) == ("octo-org/app", "555", 12)
    assert run["status"] == "failed"
    assert run["url"] == "https://github.com/octo-org/app/actions/runs/555"


async def test_cli_bad_token_exits_2(server: Server) -> None:
    code, _, err = await _cli(
        "--server", server.url, "--token", "x", "--project", "p", "--run-id", "1",
        "--status", "success",
    )  # fmt: skip
    assert code == 2
    assert "HTTP 401" in err


async def test_cli_exits_3_when_the_server_stays_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = await _cli(
        "--server", f"http://127.0.0.1:{port}", "--token", "t", "--project", "p",
        "--run-id", "1", "--status", "success", "--retries", "1",
    )  # fmt: skip
    assert code == 3
    assert "cannot reach ciwatch" in err
    assert "Traceback" not in err


def test_detection_per_ci_system() -> None:
    gitlab = {
        "GITLAB_CI": "true",
        "CI_PROJECT_PATH": "g/app",
        "CI_PIPELINE_ID": "9",
        "CI_PIPELINE_IID": "3",
        "CI_COMMIT_REF_NAME": "main",
        "CI_PIPELINE_URL": "https://gl/p/9",
    }
    assert detect_ci(gitlab)[0] == "gitlab"
    assert build_report({"status": "success"}, gitlab)["number"] == 3
    jenkins = {
        "JENKINS_URL": "https://j/",
        "JOB_NAME": "team/app",
        "BUILD_NUMBER": "41",
        "GIT_BRANCH": "origin/main",
        "BUILD_URL": "https://j/job/team/job/app/41/",
    }
    kind, fields = detect_ci(jenkins)
    assert kind == "jenkins"
    assert fields["ref"] == "main"
    assert build_report({"project": "override"}, jenkins)["project"] == "override"
    assert detect_ci({}) == (None, {})
    assert parse_status("UNSTABLE") is Status.FAILED
    assert parse_status("cancelled") is Status.CANCELED
    with pytest.raises(ValueError, match="not a status"):
        parse_status("purple")

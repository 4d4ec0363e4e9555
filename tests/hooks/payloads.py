"""Deliveries for each receiver, built from the recorded fixtures: numbered variants (a run id
per `n`) with the headers that authenticate them, and the run each one must leave stored."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ciwatch.domain import RunKey, Status

FIXTURES = Path(__file__).parents[1] / "fixtures"
SECRETS = {"gl": "gl-hook-secret", "gh": "It's a Secret to Everybody", "jk": "jk-token"}
REPORT_TOKEN = "report-token-123"
RECEIVERS = ("gitlab", "github", "jenkins", "report")


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def gitlab_headers(event: str, token: str = SECRETS["gl"], key: str = "k1") -> dict[str, str]:
    return {
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token,
        "Idempotency-Key": key,
        "Content-Type": "application/json",
    }


def github_headers(
    body: bytes, event: str, delivery: str = "d1", secret: str | None = None
) -> dict[str, str]:
    key = (secret or SECRETS["gh"]).encode()
    sig = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sig,
        "Content-Type": "application/json",
    }


def jenkins_headers(key: str | None = None) -> dict[str, str]:
    headers = {"X-Ciwatch-Token": SECRETS["jk"], "Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


@dataclass(frozen=True)
class Delivery:
    """One request, and the run it must leave in the store."""

    path: str
    body: bytes
    headers: dict[str, str]
    key: RunKey
    status: Status


def jenkins_notification(
    number: int, phase: str = "COMPLETED", status: str | None = "SUCCESS", **build: Any
) -> bytes:
    """The plugin's example payload for build `number` of `asgard` (no timestamp unless given
    in `build`)."""
    data = json.loads(fixture("jenkins/webhooks/notification-plugin.completed.json"))
    data["build"].update(
        number=number,
        phase=phase,
        status=status,
        url=f"job/asgard/{number}/",
        full_url=f"http://localhost:8080/job/asgard/{number}/",
        **build,
    )
    if status is None:
        del data["build"]["status"]
    return json.dumps(data).encode()


def delivery(receiver: str, n: int) -> Delivery:
    """Delivery number `n` (a distinct run) for `receiver`, for sources named as in
    `conftest.settings`."""
    if receiver == "gitlab":
        data = json.loads(fixture("gitlab/webhooks/pipeline-hook.json"))
        data["object_attributes"]["id"] = 10_000 + n
        data["object_attributes"]["status"] = "failed" if n % 2 else "success"
        body = json.dumps(data).encode()
        key = RunKey("gl", data["project"]["path_with_namespace"], str(10_000 + n))
        headers = gitlab_headers("Pipeline Hook", key=f"gl-{n}")
        status = Status.FAILED if n % 2 else Status.SUCCESS
        return Delivery("/hooks/gitlab/gl", body, headers, key, status)
    if receiver == "github":
        data = json.loads(fixture("github/webhooks/workflow_run.completed.json"))
        data["workflow_run"]["id"] = 20_000 + n
        data["workflow_run"]["conclusion"] = "failure" if n % 2 else "success"
        body = json.dumps(data).encode()
        key = RunKey("gh", data["repository"]["full_name"], str(20_000 + n))
        headers = github_headers(body, "workflow_run", delivery=f"gh-{n}")
        status = Status.FAILED if n % 2 else Status.SUCCESS
        return Delivery("/hooks/github/gh", body, headers, key, status)
    if receiver == "jenkins":
        result = "FAILURE" if n % 2 else "SUCCESS"
        body = jenkins_notification(n, status=result)
        status = Status.FAILED if n % 2 else Status.SUCCESS
        return Delivery(
            "/hooks/jenkins/jk",
            body,
            jenkins_headers(f"jk-{n}"),
            RunKey("jk", "asgard", str(n)),
            status,
        )
    if receiver == "report":
        word = "failed" if n % 2 else "success"
        body = json.dumps({"project": "team/app", "run_id": str(n), "status": word}).encode()
        headers = {"Authorization": f"Bearer {REPORT_TOKEN}", "Content-Type": "application/json"}
        return Delivery(
            "/api/v1/report", body, headers, RunKey("push", "team/app", str(n)), Status(word)
        )
    raise ValueError(f"unknown receiver {receiver!r}")

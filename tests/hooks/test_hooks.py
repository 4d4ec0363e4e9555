"""Every webhook fixture replayed against a running app: valid and invalid secrets, truncated
bodies, wrong content types, duplicates, out-of-order deliveries, and random input."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ciwatch.domain import RunKey, Status
from ciwatch.providers.github import signature_ok

from .conftest import SECRETS, Server
from .payloads import fixture, github_headers, gitlab_headers


def test_signature_matches_githubs_own_test_vector() -> None:
    vector = json.loads(fixture("github/webhooks/signature-test-vector.json"))
    secret, payload = vector["secret"].encode(), vector["payload"].encode()
    assert signature_ok(secret, payload, vector["X-Hub-Signature-256"])
    assert not signature_ok(secret, payload + b" ", vector["X-Hub-Signature-256"])
    assert not signature_ok(b"other", payload, vector["X-Hub-Signature-256"])
    assert not signature_ok(secret, payload, "sha1=" + vector["signature"])
    assert not signature_ok(secret, payload, None)


async def test_gitlab_pipeline_hook_is_stored_with_its_jobs(server: Server) -> None:
    body = fixture("gitlab/webhooks/pipeline-hook.json")
    status, answer = await server.post("/hooks/gitlab/gl", body, gitlab_headers("Pipeline Hook"))
    assert status == 202, answer
    assert answer["status"] == "accepted"
    run = await server.runtime.store.get_run(RunKey("gl", "gitlab-org/gitlab-test", "31"))
    assert run is not None
    assert run.status is Status.SUCCESS
    assert run.ref == "master"
    jobs = await server.runtime.store.jobs_for(run.key)
    assert jobs
    # A replay of the same delivery is recognised and changes nothing.
    status, again = await server.post("/hooks/gitlab/gl", body, gitlab_headers("Pipeline Hook"))
    assert (status, again["status"]) == (202, "duplicate")
    # Another delivery id with the same content: stored again, no change.
    status, other = await server.post(
        "/hooks/gitlab/gl", body, gitlab_headers("Pipeline Hook", key="k2")
    )
    assert (status, other["status"], other["changed"]) == (202, "accepted", False)
    assert server.runtime.metrics.webhooks[("gl", "accepted")] == 2
    assert server.runtime.metrics.webhooks[("gl", "duplicate")] == 1


async def test_gitlab_job_hook_is_stored(server: Server) -> None:
    body = fixture("gitlab/webhooks/job-hook.json")
    status, answer = await server.post("/hooks/gitlab/gl", body, gitlab_headers("Job Hook"))
    assert status == 202, answer
    assert answer["jobs"] == 1


@pytest.mark.parametrize(
    ("headers", "code", "result"),
    [
        ({"X-Gitlab-Event": "Pipeline Hook"}, 401, "rejected_signature"),
        (gitlab_headers("Pipeline Hook", token="wrong"), 401, "rejected_signature"),
        (gitlab_headers("Pipeline Hook") | {"Content-Type": "text/plain"}, 415, "bad_payload"),
    ],
    ids=["missing-token", "wrong-token", "wrong-content-type"],
)
async def test_gitlab_rejections_store_nothing(
    server: Server, headers: dict[str, str], code: int, result: str
) -> None:
    body = fixture("gitlab/webhooks/pipeline-hook.json")
    status, answer = await server.post("/hooks/gitlab/gl", body, headers)
    assert status == code
    assert set(answer) == {"error", "detail"}
    assert server.runtime.metrics.webhooks[("gl", result)] == 1
    assert (await server.runtime.store.history(limit=5)).runs == []


async def test_a_source_without_a_secret_refuses_webhooks(server: Server) -> None:
    body = fixture("gitlab/webhooks/pipeline-hook.json")
    status, answer = await server.post("/hooks/gitlab/open", body, gitlab_headers("Pipeline Hook"))
    assert status == 401
    assert "no webhook_secret" in answer["error"]


@pytest.mark.parametrize("path", ["/hooks/gitlab/nope", "/hooks/github/gl", "/hooks/jenkins/x"])
async def test_unknown_source_is_404(server: Server, path: str) -> None:
    status, answer = await server.post(path, b"{}", {"Content-Type": "application/json"})
    assert status == 404
    assert "no " in answer["error"]


async def test_truncated_body_is_400_naming_the_problem(server: Server) -> None:
    body = fixture("gitlab/webhooks/pipeline-hook.json")
    status, answer = await server.post(
        "/hooks/gitlab/gl", body[: len(body) // 2], gitlab_headers("Pipeline Hook")
    )
    assert status == 400
    assert "GitLab Pipeline Hook" in answer["detail"]
    assert (await server.runtime.store.history(limit=5)).runs == []


async def test_oversized_body_is_413(server: Server) -> None:
    body = b"{" + b" " * (5 * 1024 * 1024 + 10) + b"}"
    status, answer = await server.post("/hooks/gitlab/gl", body, gitlab_headers("Pipeline Hook"))
    assert status == 413
    assert "limit" in answer["error"]


async def test_other_gitlab_events_are_ignored_with_a_reason(server: Server) -> None:
    status, answer = await server.post("/hooks/gitlab/gl", b"{}", gitlab_headers("Push Hook"))
    assert status == 202
    assert answer["status"] == "ignored"
    assert "Push Hook" in answer["reason"]


GITHUB_FIXTURES = [
    ("workflow_run", "github/webhooks/workflow_run.requested.json"),
    ("workflow_run", "github/webhooks/workflow_run.completed.json"),
    ("workflow_job", "github/webhooks/workflow_job.queued.json"),
    ("workflow_job", "github/webhooks/workflow_job.in_progress.json"),
    ("workflow_job", "github/webhooks/workflow_job.completed.json"),
    ("check_run", "github/webhooks/check_run.completed.json"),
    ("check_suite", "github/webhooks/check_suite.completed.json"),
]


@pytest.mark.parametrize(("event", "name"), GITHUB_FIXTURES, ids=[n for _, n in GITHUB_FIXTURES])
async def test_every_github_fixture(server: Server, event: str, name: str) -> None:
    body = fixture(name)
    status, answer = await server.post("/hooks/github/gh", body, github_headers(body, event))
    assert status == 202, answer
    expected = "ignored" if event.startswith("check_") else "accepted"
    assert answer["status"] == expected
    bad = github_headers(body, event, secret="not the secret")
    status, answer = await server.post("/hooks/github/gh", body, bad)
    assert status == 401


async def test_github_ping_and_form_encoding(server: Server) -> None:
    status, answer = await server.post("/hooks/github/gh", b"{}", github_headers(b"{}", "ping"))
    assert (status, answer["reason"]) == (202, "ping")
    payload = fixture("github/webhooks/workflow_run.completed.json")
    from urllib.parse import quote

    form = ("payload=" + quote(payload.decode())).encode()
    headers = github_headers(form, "workflow_run", delivery="form-1")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    status, answer = await server.post("/hooks/github/gh", form, headers)
    assert (status, answer["status"]) == (202, "accepted")


async def test_github_out_of_order_converges_to_the_final_state(server: Server) -> None:
    completed = fixture("github/webhooks/workflow_run.completed.json")
    requested = fixture("github/webhooks/workflow_run.requested.json")
    for delivery, body in (("c", completed), ("r", requested)):
        status, _ = await server.post(
            "/hooks/github/gh", body, github_headers(body, "workflow_run", delivery=delivery)
        )
        assert status == 202
    run_id = str(json.loads(completed)["workflow_run"]["id"])
    project = json.loads(completed)["repository"]["full_name"]
    run = await server.runtime.store.get_run(RunKey("gh", project, run_id))
    assert run is not None
    assert run.status.terminal


async def test_jenkins_notification_with_token_header_or_query(server: Server) -> None:
    body = fixture("jenkins/webhooks/notification-plugin.completed.json")
    headers = {"X-Ciwatch-Token": SECRETS["jk"], "Content-Type": "application/json"}
    status, answer = await server.post("/hooks/jenkins/jk", body, headers)
    assert status == 202, answer
    await server.settle()
    run = await server.runtime.store.get_run(RunKey("jk", "asgard", "18"))
    assert run is not None
    assert run.status is Status.SUCCESS
    status, _ = await server.post(
        f"/hooks/jenkins/jk?token={SECRETS['jk']}",
        body,
        {"Content-Type": "application/json", "Idempotency-Key": "n2"},
    )
    assert status == 202
    status, _ = await server.post(
        "/hooks/jenkins/jk", body, {"X-Ciwatch-Token": "wrong", "Content-Type": "application/json"}
    )
    assert status == 401


SAMPLES = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda kids: (
            st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
        ),
        max_leaves=20,
    ).map(lambda value: json.dumps(value).encode()),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=SAMPLES, hook=st.sampled_from(["gitlab", "github", "jenkins"]))
async def test_random_input_never_gives_a_5xx(server: Server, body: bytes, hook: str) -> None:
    headers: dict[str, Any] = {"Content-Type": "application/json"}
    if hook == "gitlab":
        headers |= gitlab_headers("Pipeline Hook", key=hashlib.sha1(body).hexdigest())  # noqa: S324
        path = "/hooks/gitlab/gl"
    elif hook == "github":
        headers |= github_headers(body, "workflow_run", delivery=hashlib.sha1(body).hexdigest())  # noqa: S324
        path = "/hooks/github/gh"
    else:
        headers["X-Ciwatch-Token"] = SECRETS["jk"]
        path = "/hooks/jenkins/jk"
    status, answer = await server.post(path, body, headers)
    assert status < 500, answer
    assert status in (202, 400, 415)

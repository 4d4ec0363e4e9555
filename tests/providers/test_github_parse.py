"""GitHub Actions payload parsing over the vendor's published examples (tests/fixtures/github),
field by field, plus unknown statuses and malformed bodies."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ciwatch.domain import Status
from ciwatch.errors import BadPayload
from ciwatch.providers import github
from ciwatch.providers.common import forget_unknown_statuses

FIXTURES = Path(__file__).parent.parent / "fixtures" / "github"
SRC = "gh"

# Which parser reads each fixture; every file must be listed here or in SKIPPED, so a new
# fixture fails `test_every_fixture_is_covered_or_skipped` until someone decides.
COVERED = {
    "api/workflow-runs-list.json": "parse_runs",
    "api/workflow-run.json": "parse_run (+ parse_repos on its repository)",
    "api/workflow-run-jobs-list.json": "parse_jobs",
    "api/job.json": "parse_job",
    "api/check-run.json": "parse_failing_check_runs (test_github_checks_parse.py)",
    "api/check-runs-list.json": "parse_failing_check_runs (test_github_checks_parse.py)",
    "api/check-run-annotations.json": "parse_failing_annotations (test_github_checks_parse.py)",
    "api/compare.json": "parse_comparison (test_commit_range_parse.py)",
    "webhooks/workflow_run.requested.json": "parse_workflow_run_event",
    "webhooks/workflow_run.completed.json": "parse_workflow_run_event (+ parse_repos)",
    "webhooks/workflow_job.queued.json": "parse_workflow_job_event",
    "webhooks/workflow_job.in_progress.json": "parse_workflow_job_event",
    "webhooks/workflow_job.completed.json": "parse_workflow_job_event (+ parse_repos)",
}
SKIPPED = {
    "api/workflows-list.json": "not parsed: each run names its workflow (watch.workflow_wanted)",
    "api/workflow.json": "not parsed: each run names its workflow (watch.workflow_wanted)",
    "webhooks/check_run.completed.json": "not parsed: workflow_job events carry the jobs",
    "webhooks/check_suite.completed.json": "not parsed: workflow_run events carry the runs",
    "webhooks/delivery-headers.example.json": "request headers: read by the webhook endpoint",
    "webhooks/signature-test-vector.json": "HMAC test vector: for the webhook endpoint",
}


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def loaded(name: str) -> Any:
    return json.loads(raw(name))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_warnings() -> Iterator[None]:
    forget_unknown_statuses()
    yield
    forget_unknown_statuses()


# Every published example of the events the receiver takes: tests/hooks/test_vendor_examples.py
# posts each one to `POST /hooks/github/{source}` and checks what is stored.
VENDOR_EXAMPLES = "webhooks/octokit/"


def test_every_fixture_is_covered_or_skipped() -> None:
    on_disk = {
        str(p.relative_to(FIXTURES))
        for p in FIXTURES.rglob("*")
        if p.is_file() and not str(p.relative_to(FIXTURES)).startswith(VENDOR_EXAMPLES)
    }
    assert not set(COVERED) & set(SKIPPED)
    assert on_disk == set(COVERED) | set(SKIPPED)


def test_runs_list() -> None:
    (run,) = github.parse_runs(SRC, "octo-org/octo-repo", raw("api/workflow-runs-list.json"))

    assert run.source == SRC
    assert run.provider == "github"
    assert run.project == "octo-org/octo-repo"
    assert run.run_id == "30433642"
    assert run.number == 562
    assert run.workflow == "Build"
    assert run.ref == "master"
    assert run.sha == "acb5820ced9479c074f688cc328bf03f341a511d"
    assert run.event == "push"
    assert run.status is Status.QUEUED
    assert run.provider_status == "queued"
    assert run.created_at == utc(2020, 1, 22, 19, 33, 8)
    assert run.started_at == utc(2020, 1, 22, 19, 33, 8)
    assert run.finished_at is None
    assert run.updated_at == utc(2020, 1, 22, 19, 33, 8)
    assert run.duration_seconds is None
    assert run.queued_seconds is None  # still queued: no queue time yet
    assert run.url == "https://github.com/octo-org/octo-repo/actions/runs/30433642"
    assert run.author == "octocat"
    assert run.attempt == 1


def test_single_run() -> None:
    run = github.parse_run(SRC, "octo-org/octo-repo", raw("api/workflow-run.json"))

    assert run.run_id == "30433642"
    assert run.number == 562
    assert run.workflow == "Build"
    assert run.ref == "main"
    assert run.sha == "acb5820ced9479c074f688cc328bf03f341a511d"
    assert run.event == "push"
    assert run.status is Status.QUEUED
    assert run.provider_status == "queued"
    assert run.created_at == utc(2020, 1, 22, 19, 33, 8)
    assert run.started_at == utc(2020, 1, 22, 19, 33, 8)
    assert run.updated_at == utc(2020, 1, 22, 19, 33, 8)
    assert run.finished_at is None
    assert run.url == "https://github.com/octo-org/octo-repo/actions/runs/30433642"
    assert run.author == "octocat"
    assert run.attempt == 1


def test_completed_rerun_attempt() -> None:
    data = loaded("api/workflow-run.json")
    data.update(
        status="completed",
        conclusion="timed_out",
        run_attempt=2,
        run_started_at="2020-01-22T20:00:00Z",
        updated_at="2020-01-22T20:05:30Z",
    )
    data["triggering_actor"]["login"] = "hubot"
    run = github.parse_run(SRC, "o/r", json.dumps(data))
    assert run.status is Status.FAILED
    assert run.provider_status == "completed/timed_out"
    assert run.attempt == 2
    assert run.created_at == utc(2020, 1, 22, 19, 33, 8)
    assert run.started_at == utc(2020, 1, 22, 20, 0, 0)
    assert run.finished_at == utc(2020, 1, 22, 20, 5, 30)
    assert run.duration_seconds == 330.0
    # created_at belongs to attempt 1: a re-run has no queue time of its own here.
    assert run.queued_seconds is None
    assert run.author == "hubot"


def test_author_falls_back_to_actor() -> None:
    data = loaded("api/workflow-run.json")
    data["triggering_actor"] = None
    data["actor"]["login"] = "monalisa"
    assert github.parse_run(SRC, "o/r", json.dumps(data)).author == "monalisa"


def test_workflow_run_requested_event() -> None:
    run = github.parse_workflow_run_event(SRC, raw("webhooks/workflow_run.requested.json"))

    assert run.project == "octo-org/octo-repo"
    assert run.run_id == "289782451"
    assert run.number == 163
    assert run.workflow == "test"  # workflow_run.name is "": the event's workflow.name
    assert run.ref == "master"
    assert run.sha == "3484a3fb816e0859fd6e1cea078d76385ff50625"
    assert run.event == "repository_dispatch"
    assert run.status is Status.QUEUED
    assert run.provider_status == "queued"
    assert run.created_at == utc(2020, 10, 5, 16, 33, 24)
    assert run.started_at == utc(2020, 10, 5, 16, 33, 49)
    assert run.updated_at == utc(2020, 10, 5, 16, 33, 24)
    assert run.finished_at is None
    assert run.duration_seconds is None
    assert run.queued_seconds is None
    assert run.url == "https://github.com/octo-org/octo-repo/actions/runs/289782451"
    assert run.author == "Codertocat"
    assert run.attempt == 1


def test_workflow_run_completed_event() -> None:
    run = github.parse_workflow_run_event(SRC, raw("webhooks/workflow_run.completed.json"))

    assert run.project == "octo-org/octo-repo"
    assert run.run_id == "289782451"
    assert run.number == 163
    assert run.workflow == "test"
    assert run.ref == "master"
    assert run.sha == "3484a3fb816e0859fd6e1cea078d76385ff50625"
    assert run.event == "repository_dispatch"
    assert run.status is Status.SUCCESS
    assert run.provider_status == "completed/success"
    assert run.created_at == utc(2020, 10, 5, 16, 33, 24)
    assert run.started_at == utc(2020, 10, 5, 16, 33, 49)
    assert run.finished_at == utc(2020, 10, 5, 16, 33, 49)
    assert run.updated_at == utc(2020, 10, 5, 16, 33, 49)
    assert run.duration_seconds == 0.0
    assert run.queued_seconds == 25.0
    assert run.url == "https://github.com/octo-org/octo-repo/actions/runs/289782451"
    assert run.author == "Codertocat"
    assert run.attempt == 1


def test_jobs_list() -> None:
    (job,) = github.parse_jobs(
        SRC, "octo-org/octo-repo", "29679449", raw("api/workflow-run-jobs-list.json")
    )

    assert job.source == SRC
    assert job.project == "octo-org/octo-repo"
    assert job.run_id == "29679449"
    assert job.job_id == "399444496"
    assert job.name == "build"
    assert job.stage is None
    assert job.status is Status.SUCCESS
    assert job.provider_status == "completed/success"
    assert job.created_at is None
    assert job.started_at == utc(2020, 1, 20, 17, 42, 40)
    assert job.finished_at == utc(2020, 1, 20, 17, 44, 39)
    assert job.updated_at == utc(2020, 1, 20, 17, 44, 39)
    assert job.duration_seconds == 119.0
    assert job.queued_seconds is None
    assert job.runner == "my runner"
    assert job.allow_failure is False
    assert job.url == "https://github.com/octo-org/octo-repo/runs/29679449/jobs/399444496"
    assert job.attempt == 1


def test_jobs_of_another_run_are_refused() -> None:
    with pytest.raises(BadPayload, match=r"belongs to run 29679449, not to the requested run 1"):
        github.parse_jobs(SRC, "o/r", "1", raw("api/workflow-run-jobs-list.json"))


def test_single_job_with_offset_times() -> None:
    data = loaded("api/job.json")
    # The example's steps use -08:00 offsets; the job times may too, and must come out UTC.
    data["started_at"] = "2020-01-20T09:42:40.000-08:00"
    data["completed_at"] = "2020-01-20T09:44:39.000-08:00"
    job = github.parse_job(SRC, "o/r", json.dumps(data))
    assert job.started_at == utc(2020, 1, 20, 17, 42, 40)
    assert job.finished_at == utc(2020, 1, 20, 17, 44, 39)
    assert job.started_at is not None
    assert job.started_at.tzinfo is UTC

    plain = github.parse_job(SRC, "o/r", raw("api/job.json"))
    assert plain == job


def test_workflow_job_queued_event() -> None:
    job = github.parse_workflow_job_event(SRC, raw("webhooks/workflow_job.queued.json"))

    assert job.project == "Codertocat/Hello-World"
    assert job.run_id == "2202229078"
    assert job.job_id == "289782451"
    assert job.name == "update"
    assert job.status is Status.QUEUED
    assert job.provider_status == "queued"
    assert job.created_at == utc(2021, 9, 13, 2, 21, 13)
    assert job.started_at is None  # GitHub's placeholder start of a queued job is dropped
    assert job.finished_at is None
    assert job.updated_at == utc(2021, 9, 13, 2, 21, 13)
    assert job.duration_seconds is None
    assert job.queued_seconds is None
    assert job.runner == "GitHub Actions 5"
    assert job.url == "https://github.com/octo-org/octo-repo/runs/1291536064"
    assert job.attempt == 1


def test_workflow_job_in_progress_event() -> None:
    job = github.parse_workflow_job_event(SRC, raw("webhooks/workflow_job.in_progress.json"))

    assert job.project == "Codertocat/Hello-World"
    assert job.run_id == "2202229078"
    assert job.job_id == "289782451"
    assert job.name == "Analyze (javascript)"
    assert job.status is Status.RUNNING
    assert job.provider_status == "in_progress"
    assert job.created_at == utc(2021, 9, 13, 2, 21, 13)
    assert job.started_at == utc(2021, 9, 13, 2, 21, 13)
    assert job.finished_at is None
    assert job.updated_at == utc(2021, 9, 13, 2, 21, 13)
    assert job.duration_seconds is None
    assert job.queued_seconds == 0.0
    assert job.runner == "GitHub Actions 5"
    assert job.attempt == 1


def test_workflow_job_completed_event() -> None:
    job = github.parse_workflow_job_event(SRC, raw("webhooks/workflow_job.completed.json"))

    assert job.project == "Codertocat/Hello-World"
    assert job.run_id == "2202229078"
    assert job.job_id == "289782451"
    assert job.name == "linters"
    assert job.status is Status.SUCCESS
    assert job.provider_status == "completed/success"
    assert job.created_at == utc(2021, 8, 5, 10, 33, 58)
    assert job.started_at == utc(2021, 8, 5, 10, 34, 58)
    assert job.finished_at == utc(2021, 8, 5, 10, 38, 16)
    assert job.updated_at == utc(2021, 8, 5, 10, 38, 16)
    assert job.duration_seconds == 198.0
    assert job.queued_seconds == 60.0
    assert job.runner == "GitHub Actions 5"
    assert job.url == "https://github.com/octo-org/octo-repo/runs/1291536064"
    assert job.attempt == 1


def test_repos() -> None:
    repos = [
        loaded("webhooks/workflow_run.completed.json")["repository"],
        loaded("webhooks/workflow_job.completed.json")["repository"],
        loaded("api/workflow-run.json")["repository"],
    ]
    octo, coder, minimal = github.parse_repos(json.dumps(repos))
    assert octo.full_name == "octo-org/octo-repo"
    assert octo.default_branch == "master"
    assert octo.archived is False
    assert octo.html_url == "https://github.com/octo-org/octo-repo"
    assert coder.full_name == "Codertocat/Hello-World"
    assert coder.default_branch == "master"
    # The "minimal repository" of a run has neither default_branch nor archived.
    assert minimal.full_name == "octocat/Hello-World"
    assert minimal.default_branch is None
    assert minimal.archived is False
    assert minimal.html_url == "https://github.com/octocat/Hello-World"


# -- unknown statuses ---------------------------------------------------------------------------


def test_unknown_conclusion_is_failed_kept_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = loaded("webhooks/workflow_run.completed.json")
    data["workflow_run"]["conclusion"] = "exploded"
    body = json.dumps(data)
    with caplog.at_level(logging.WARNING, logger="ciwatch.providers"):
        runs = [github.parse_workflow_run_event(SRC, body) for _ in range(2)]
    for run in runs:
        assert run.status is Status.FAILED
        assert run.provider_status == "completed/exploded"
    records = [r for r in caplog.records if r.name == "ciwatch.providers"]
    assert len(records) == 1
    assert "'completed/exploded'" in records[0].getMessage()


def test_unknown_status_is_running_kept_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    data = loaded("webhooks/workflow_job.in_progress.json")
    data["workflow_job"]["status"] = "daydreaming"
    body = json.dumps(data)
    with caplog.at_level(logging.WARNING, logger="ciwatch.providers"):
        jobs = [github.parse_workflow_job_event(SRC, body) for _ in range(2)]
    assert [(j.status, j.provider_status) for j in jobs] == [(Status.RUNNING, "daydreaming")] * 2
    assert len(caplog.records) == 1


# -- malformed bodies ---------------------------------------------------------------------------

PARSERS: dict[str, tuple[Callable[[bytes], object], str]] = {
    "runs": (lambda b: github.parse_runs(SRC, "o/r", b), "api/workflow-runs-list.json"),
    "run": (lambda b: github.parse_run(SRC, "o/r", b), "api/workflow-run.json"),
    "jobs": (lambda b: github.parse_jobs(SRC, "o/r", None, b), "api/workflow-run-jobs-list.json"),
    "job": (lambda b: github.parse_job(SRC, "o/r", b), "api/job.json"),
    "run_event": (
        lambda b: github.parse_workflow_run_event(SRC, b),
        "webhooks/workflow_run.completed.json",
    ),
    "job_event": (
        lambda b: github.parse_workflow_job_event(SRC, b),
        "webhooks/workflow_job.completed.json",
    ),
}


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", r"the body is empty$"),
        (b"<html><body>502 Bad Gateway</body></html>", r"looks like HTML.*502 Bad Gateway"),
        (b"undefined", r"not valid JSON"),
    ],
)
def test_unusable_bodies_raise_bad_payload(parser: str, body: bytes, message: str) -> None:
    parse, _ = PARSERS[parser]
    with pytest.raises(BadPayload, match=message):
        parse(body)


@pytest.mark.parametrize("parser", PARSERS)
def test_truncated_bodies_raise_bad_payload(parser: str) -> None:
    parse, fixture = PARSERS[parser]
    with pytest.raises(BadPayload, match=r"the JSON is truncated after 400 bytes"):
        parse(raw(fixture)[:400])


def test_wrong_type_names_the_path() -> None:
    data = loaded("api/workflow-runs-list.json")
    data["workflow_runs"][0]["run_number"] = "562"
    with pytest.raises(
        BadPayload,
        match=r"Expected `int \| null`, got `str` - at `\$\.workflow_runs\[0\]\.run_number`",
    ):
        github.parse_runs(SRC, "o/r", json.dumps(data))


def test_missing_required_field_is_named() -> None:
    data = loaded("webhooks/workflow_job.completed.json")
    del data["repository"]
    with pytest.raises(
        BadPayload, match=r"GitHub workflow_job event: .*missing required field `repository`"
    ):
        github.parse_workflow_job_event(SRC, json.dumps(data))

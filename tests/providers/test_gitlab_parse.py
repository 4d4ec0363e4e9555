"""GitLab payload parsing over the vendor's published examples (tests/fixtures/gitlab), field by
field, plus unknown statuses and malformed bodies."""

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
from ciwatch.providers import gitlab
from ciwatch.providers.common import forget_unknown_statuses

FIXTURES = Path(__file__).parent.parent / "fixtures" / "gitlab"
SRC = "gl"

# Which parser reads each fixture; every file must be listed here or in SKIPPED, so a new
# fixture fails `test_every_fixture_is_covered_or_skipped` until someone decides.
COVERED = {
    "api/pipelines-list.json": "parse_pipelines",
    "api/pipeline.json": "parse_pipeline",
    "api/pipeline-jobs-list.json": "parse_jobs",
    "api/jobs-list.json": "parse_jobs",
    "webhooks/pipeline-hook.json": "parse_pipeline_hook (+ parse_projects on its project)",
    "webhooks/job-hook.json": "parse_job_hook (+ parse_projects on its project)",
    "webhooks/go-gitlab/job.json": "parse_job_hook (no `project` object)",
    "webhooks/go-gitlab/build.json": "parse_job_hook (no `project` object)",
    "webhooks/go-gitlab/pipeline.json": "parse_pipeline_hook",
    "api/commit.json": "parse_commit (test_commits_tests_parse.py)",
    "api/test-report.json": "parse_failing_tests (test_commits_tests_parse.py)",
    "api/test-report-summary.json": "parse_test_summary (test_commits_tests_parse.py)",
    "api/compare.json": "parse_compare (test_commit_range_parse.py)",
}
SKIPPED = {
    "webhooks/pipeline-hook.headers.json": "request headers: read by the webhook endpoint",
    "webhooks/job-hook.headers.json": "request headers: read by the webhook endpoint",
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


def test_every_fixture_is_covered_or_skipped() -> None:
    on_disk = {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*") if p.is_file()}
    assert not set(COVERED) & set(SKIPPED)
    assert on_disk == set(COVERED) | set(SKIPPED)


def test_pipelines_list() -> None:
    first, second = gitlab.parse_pipelines(SRC, "foo/bar", raw("api/pipelines-list.json"))

    assert first.source == SRC
    assert first.provider == "gitlab"
    assert first.project == "foo/bar"
    assert first.run_id == "47"
    assert first.number == 12
    assert first.workflow == "Build pipeline"
    assert first.ref == "new-pipeline"
    assert first.sha == "a91957a858320c0e17f3a0eca7cfacbff50ea29a"
    assert first.event == "push"
    assert first.status is Status.QUEUED
    assert first.provider_status == "pending"
    assert first.created_at == utc(2016, 8, 11, 11, 28, 34, 85000)
    assert first.updated_at == utc(2016, 8, 11, 11, 32, 35, 169000)
    assert first.started_at is None
    assert first.finished_at is None
    assert first.duration_seconds is None
    assert first.queued_seconds is None
    assert first.url == "https://example.com/foo/bar/pipelines/47"
    assert first.author is None
    assert first.attempt == 1

    assert second.run_id == "48"
    assert second.number == 13
    assert second.sha == "eb94b618fb5865b26e80fdd8ae531b7a63ad851a"
    assert second.event == "web"
    assert second.status is Status.QUEUED
    assert second.created_at == utc(2016, 8, 12, 10, 6, 4, 561000)
    assert second.updated_at == utc(2016, 8, 12, 10, 9, 56, 223000)
    assert second.url == "https://example.com/foo/bar/pipelines/48"


def test_single_pipeline() -> None:
    run = gitlab.parse_pipeline(SRC, "test-group/test-project", raw("api/pipeline.json"))

    assert run.project == "test-group/test-project"
    assert run.run_id == "287"
    assert run.number == 144
    assert run.workflow == "Build pipeline"
    assert run.ref == "main"
    assert run.sha == "50f0acb76a40e34a4ff304f7347dcc6587da8a14"
    assert run.event == "push"
    assert run.status is Status.SUCCESS
    assert run.provider_status == "success"
    assert run.created_at == utc(2022, 9, 21, 1, 5, 7, 200000)
    assert run.started_at == utc(2022, 9, 21, 1, 5, 14, 197000)
    assert run.finished_at == utc(2022, 9, 21, 1, 5, 50, 175000)
    assert run.updated_at == utc(2022, 9, 21, 1, 5, 50, 185000)
    # GitLab's own figures win over the timestamps (which would give 35.978 s).
    assert run.duration_seconds == 34.0
    assert run.queued_seconds == 6.0
    assert run.url == "http://127.0.0.1:3000/test-group/test-project/-/pipelines/287"
    assert run.author == "root"
    assert run.attempt == 1


def test_duration_is_computed_when_gitlab_gives_none() -> None:
    data = loaded("api/pipeline.json")
    data["duration"] = None
    run = gitlab.parse_pipeline(SRC, "g/p", json.dumps(data).encode())
    assert run.duration_seconds == pytest.approx(35.978)


def test_pipeline_jobs_list() -> None:
    rspec, teaspoon = gitlab.parse_jobs(SRC, "foo/bar", "6", raw("api/pipeline-jobs-list.json"))

    assert rspec.source == SRC
    assert rspec.project == "foo/bar"
    assert rspec.run_id == "6"
    assert rspec.job_id == "6"
    assert rspec.name == "rspec:other"
    assert rspec.stage == "test"
    assert rspec.status is Status.FAILED
    assert rspec.provider_status == "failed"
    assert rspec.created_at == utc(2015, 12, 24, 15, 51, 21, 727000)
    assert rspec.started_at == utc(2015, 12, 24, 17, 54, 24, 729000)
    assert rspec.finished_at == utc(2015, 12, 24, 17, 54, 24, 921000)
    assert rspec.updated_at == utc(2015, 12, 24, 17, 54, 24, 921000)
    assert rspec.duration_seconds == 0.192
    assert rspec.queued_seconds == 0.023
    assert rspec.runner is None
    assert rspec.allow_failure is False
    assert rspec.url == "https://example.com/foo/bar/-/jobs/6"
    assert rspec.attempt == 1

    assert teaspoon.run_id == "6"
    assert teaspoon.job_id == "7"
    assert teaspoon.name == "teaspoon"
    assert teaspoon.stage == "test"
    assert teaspoon.status is Status.FAILED
    assert teaspoon.created_at == utc(2015, 12, 24, 15, 51, 21, 802000)
    assert teaspoon.started_at == utc(2015, 12, 24, 17, 54, 27, 722000)
    assert teaspoon.finished_at == utc(2015, 12, 24, 17, 54, 27, 895000)
    assert teaspoon.updated_at == utc(2015, 12, 24, 17, 54, 27, 895000)
    assert teaspoon.duration_seconds == 0.173
    assert teaspoon.queued_seconds == 0.023
    assert teaspoon.url == "https://example.com/foo/bar/-/jobs/7"


def test_project_jobs_list_takes_run_ids_from_the_items() -> None:
    teaspoon, rspec = gitlab.parse_jobs(SRC, "foo/bar", None, raw("api/jobs-list.json"))

    assert (teaspoon.run_id, teaspoon.job_id, teaspoon.name) == ("6", "7", "teaspoon")
    assert teaspoon.queued_seconds == 0.01
    assert teaspoon.duration_seconds == 0.173
    assert teaspoon.finished_at == utc(2015, 12, 24, 17, 54, 27, 895000)
    assert (rspec.run_id, rspec.job_id, rspec.name) == ("6", "6", "rspec:other")
    assert rspec.queued_seconds == 0.023
    assert rspec.status is Status.FAILED


def test_jobs_of_another_pipeline_are_refused() -> None:
    with pytest.raises(BadPayload, match=r"belongs to run 6, not to the requested run 99"):
        gitlab.parse_jobs(SRC, "foo/bar", "99", raw("api/pipeline-jobs-list.json"))


def test_job_runner_is_its_description_else_its_name() -> None:
    data = loaded("api/pipeline-jobs-list.json")
    data[0]["runner"] = {"id": 8, "description": "docker-1", "name": None}
    data[1]["runner"] = {"id": 9, "description": "", "name": "gitlab-runner"}
    first, second = gitlab.parse_jobs(SRC, "foo/bar", "6", json.dumps(data))
    assert first.runner == "docker-1"
    assert second.runner == "gitlab-runner"


def test_pipeline_hook() -> None:
    run, jobs = gitlab.parse_pipeline_hook(SRC, raw("webhooks/pipeline-hook.json"))

    assert run.source == SRC
    assert run.provider == "gitlab"
    assert run.project == "gitlab-org/gitlab-test"
    assert run.run_id == "31"
    assert run.number == 3
    assert run.workflow == "Pipeline for branch: master"
    assert run.ref == "master"
    assert run.sha == "bcbb5ec396a2c0f828686f14fac9b80b780504f2"
    assert run.event == "merge_request_event"
    assert run.status is Status.SUCCESS
    assert run.provider_status == "success"
    assert run.created_at == utc(2016, 8, 12, 15, 23, 28)
    assert run.started_at is None
    assert run.finished_at == utc(2016, 8, 12, 15, 26, 29)
    assert run.updated_at == utc(2016, 8, 12, 15, 26, 29)
    assert run.duration_seconds == 63.0
    assert run.queued_seconds is None
    assert run.url == "http://example.com/gitlab-org/gitlab-test/-/pipelines/31"
    assert run.author == "root"
    assert run.attempt == 1

    by_id = {job.job_id: job for job in jobs}
    assert list(by_id) == ["380", "377", "378", "376", "379"]
    assert {job.run_id for job in jobs} == {"31"}
    assert {job.project for job in jobs} == {"gitlab-org/gitlab-test"}

    production = by_id["380"]
    assert (production.name, production.stage) == ("production", "deploy")
    assert production.status is Status.SKIPPED
    assert production.provider_status == "skipped"
    assert production.created_at == utc(2016, 8, 12, 15, 23, 28)
    assert production.started_at is None
    assert production.finished_at is None
    assert production.updated_at == utc(2016, 8, 12, 15, 23, 28)
    assert production.duration_seconds is None
    assert production.queued_seconds is None
    assert production.runner is None
    assert production.allow_failure is False
    assert production.url == "http://192.168.64.1:3005/gitlab-org/gitlab-test/-/jobs/380"

    test_image = by_id["377"]
    assert (test_image.name, test_image.stage) == ("test-image", "test")
    assert test_image.status is Status.SUCCESS
    assert test_image.started_at == utc(2016, 8, 12, 15, 26, 12)
    assert test_image.finished_at == utc(2016, 8, 12, 15, 26, 29)
    assert test_image.updated_at == utc(2016, 8, 12, 15, 26, 29)
    assert test_image.duration_seconds == 17.0
    assert test_image.queued_seconds == 196.0
    assert test_image.runner == "shared-runners-manager-6.gitlab.com"

    test_build = by_id["378"]
    assert (test_build.name, test_build.stage) == ("test-build", "test")
    assert test_build.status is Status.FAILED
    assert test_build.provider_status == "failed"
    assert test_build.runner == "shared-runners-manager-6.gitlab.com"

    build_image = by_id["376"]
    assert (build_image.name, build_image.stage) == ("build-image", "build")
    assert build_image.status is Status.SUCCESS
    assert build_image.started_at == utc(2016, 8, 12, 15, 24, 56)
    assert build_image.finished_at == utc(2016, 8, 12, 15, 25, 26)
    assert build_image.updated_at == utc(2016, 8, 12, 15, 25, 26)

    staging = by_id["379"]
    assert (staging.name, staging.stage) == ("staging", "deploy")
    assert staging.status is Status.QUEUED
    assert staging.provider_status == "created"
    assert staging.updated_at == utc(2016, 8, 12, 15, 23, 28)


def test_running_pipeline_hook_is_dated_by_its_latest_time() -> None:
    data = loaded("webhooks/pipeline-hook.json")
    data["object_attributes"].update(status="running", finished_at=None, source=None)
    run, _ = gitlab.parse_pipeline_hook(SRC, json.dumps(data))
    assert run.status is Status.RUNNING
    assert run.finished_at is None
    # The latest build time in the payload (test-image / test-build finished).
    assert run.updated_at == utc(2016, 8, 12, 15, 26, 29)
    # No `source`, but a merge request: the event GitLab would have named.
    assert run.event == "merge_request_event"


def test_job_hook() -> None:
    job = gitlab.parse_job_hook(SRC, raw("webhooks/job-hook.json"))

    assert job.source == SRC
    assert job.project == "gitlab-org/gitlab-test"
    assert job.run_id == "2366"  # pipeline_id; commit.id is the same number, not a SHA
    assert job.job_id == "1977"
    assert job.name == "test"
    assert job.stage == "test"
    assert job.status is Status.QUEUED
    assert job.provider_status == "created"
    assert job.created_at == utc(2021, 2, 23, 2, 41, 37, 886000)
    assert job.started_at is None
    assert job.finished_at is None
    assert job.updated_at == utc(2021, 2, 23, 2, 41, 37, 886000)
    assert job.duration_seconds is None
    assert job.queued_seconds == 1095.588715
    assert job.runner == "shared-runners-manager-6.gitlab.com"
    assert job.allow_failure is False
    assert job.url == "http://192.168.64.1:3005/gitlab-org/gitlab-test/-/jobs/1977"
    assert job.attempt == 1


def test_job_hook_with_the_older_utc_time_format() -> None:
    data = loaded("webhooks/job-hook.json")
    data.update(
        build_status="success",
        build_started_at="2021-02-23 02:41:40 UTC",
        build_finished_at="2021-02-23 02:42:10 UTC",
        build_duration=30.5,
    )
    job = gitlab.parse_job_hook(SRC, json.dumps(data))
    assert job.status is Status.SUCCESS
    assert job.started_at == utc(2021, 2, 23, 2, 41, 40)
    assert job.finished_at == utc(2021, 2, 23, 2, 42, 10)
    assert job.updated_at == utc(2021, 2, 23, 2, 42, 10)
    assert job.duration_seconds == 30.5


def test_job_hook_without_a_project_object_is_named_by_its_homepage() -> None:
    # gitlab.com, 2023 (go-gitlab's capture): `project_name` is the display name, not the path.
    job = gitlab.parse_job_hook(SRC, raw("webhooks/go-gitlab/job.json"))
    assert job.project == "jsmithy2/release-tools-fake"
    assert job.run_id == "743121198"
    assert job.job_id == "3580121225"
    assert job.status is Status.SUCCESS
    assert job.stage == "coordinated:tag"
    assert job.started_at == utc(2023, 1, 10, 13, 50, 5)
    assert job.finished_at == utc(2023, 1, 10, 13, 50, 54)
    assert job.url == "https://gitlab.com/jsmithy2/release-tools-fake/-/jobs/3580121225"

    created = gitlab.parse_job_hook(SRC, raw("webhooks/go-gitlab/build.json"))
    assert created.project == "gitlab-org/gitlab-test"
    assert created.status is Status.QUEUED
    assert created.url == "http://192.168.64.1:3005/gitlab-org/gitlab-test/-/jobs/1977"


def test_job_hook_homepage_below_a_relative_url_root() -> None:
    data = loaded("webhooks/go-gitlab/job.json")
    data["repository"]["homepage"] = "https://git.example.com/gitlab/team/sub/app"
    job = gitlab.parse_job_hook(SRC, json.dumps(data), "https://git.example.com/gitlab/")
    assert job.project == "team/sub/app"
    assert job.url == "https://git.example.com/gitlab/team/sub/app/-/jobs/3580121225"
    # Without the instance root the whole path is the project.
    assert gitlab.parse_job_hook(SRC, json.dumps(data)).project == "gitlab/team/sub/app"


def test_job_hook_without_project_or_homepage_is_refused() -> None:
    data = loaded("webhooks/go-gitlab/job.json")
    del data["repository"]
    with pytest.raises(BadPayload, match=r"no `project` object and no `repository.homepage`"):
        gitlab.parse_job_hook(SRC, json.dumps(data))


def test_pipeline_hook_captured_by_go_gitlab() -> None:
    run, jobs = gitlab.parse_pipeline_hook(SRC, raw("webhooks/go-gitlab/pipeline.json"))
    assert run.project == "gitlab-org/gitlab-test"
    assert run.status is Status.SUCCESS
    assert run.event == "merge_request_event"
    assert [j.status for j in jobs] == [
        Status.SKIPPED,
        Status.SUCCESS,
        Status.SUCCESS,
        Status.SUCCESS,
        Status.QUEUED,
    ]


def test_hooks_refuse_the_other_hook_kind() -> None:
    data = loaded("webhooks/job-hook.json")
    data["object_attributes"] = loaded("webhooks/pipeline-hook.json")["object_attributes"]
    with pytest.raises(BadPayload, match=r"object_kind is 'build', not 'pipeline'"):
        gitlab.parse_pipeline_hook(SRC, json.dumps(data))
    with pytest.raises(BadPayload, match=r"Object missing required field `build_id`"):
        gitlab.parse_job_hook(SRC, raw("webhooks/pipeline-hook.json"))


def test_projects() -> None:
    hook_project = loaded("webhooks/pipeline-hook.json")["project"]
    job_project = loaded("webhooks/job-hook.json")["project"]
    first, second = gitlab.parse_projects(json.dumps([hook_project, job_project]))
    assert (first.id, first.path_with_namespace) == (1, "gitlab-org/gitlab-test")
    assert first.default_branch == "master"
    assert first.web_url == "http://192.168.64.1:3005/gitlab-org/gitlab-test"
    assert (second.id, second.path_with_namespace) == (380, "gitlab-org/gitlab-test")


# -- unknown statuses ---------------------------------------------------------------------------


def test_unknown_status_is_kept_mapped_safe_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = loaded("api/pipeline.json")
    data["status"] = "teleporting"
    body = json.dumps(data)
    with caplog.at_level(logging.WARNING, logger="ciwatch.providers"):
        first = gitlab.parse_pipeline(SRC, "g/p", body)
        second = gitlab.parse_pipeline(SRC, "g/p", body)
    for run in (first, second):
        assert run.status is Status.RUNNING
        assert run.provider_status == "teleporting"
    records = [r for r in caplog.records if r.name == "ciwatch.providers"]
    assert len(records) == 1
    assert "gitlab" in records[0].getMessage()
    assert "'teleporting'" in records[0].getMessage()


def test_unknown_job_status_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    data = loaded("api/pipeline-jobs-list.json")
    data[0]["status"] = "dreaming"
    data[1]["status"] = "dreaming"
    with caplog.at_level(logging.WARNING, logger="ciwatch.providers"):
        jobs = gitlab.parse_jobs(SRC, "g/p", "6", json.dumps(data))
    assert [(j.status, j.provider_status) for j in jobs] == [(Status.RUNNING, "dreaming")] * 2
    assert len(caplog.records) == 1


# -- malformed bodies ---------------------------------------------------------------------------

# Each parser with a fixture it accepts (truncated below to test a cut connection).
PARSERS: dict[str, tuple[Callable[[bytes], object], str]] = {
    "pipelines": (lambda b: gitlab.parse_pipelines(SRC, "g/p", b), "api/pipelines-list.json"),
    "pipeline": (lambda b: gitlab.parse_pipeline(SRC, "g/p", b), "api/pipeline.json"),
    "jobs": (lambda b: gitlab.parse_jobs(SRC, "g/p", None, b), "api/jobs-list.json"),
    "pipeline_hook": (lambda b: gitlab.parse_pipeline_hook(SRC, b), "webhooks/pipeline-hook.json"),
    "job_hook": (lambda b: gitlab.parse_job_hook(SRC, b), "webhooks/job-hook.json"),
    "projects": (gitlab.parse_projects, "api/pipelines-list.json"),
}


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", r"the body is empty$"),
        (b"  \n", r"the body is empty \(3 bytes of whitespace\)"),
        (
            b"<!DOCTYPE html><html><title>Sign in</title>",
            r"looks like HTML .*starts with '<'.*Sign in",
        ),
        (b"undefined", r"not valid JSON: JSON is malformed: invalid character \(byte 0\)"),
    ],
)
def test_unusable_bodies_raise_bad_payload(parser: str, body: bytes, message: str) -> None:
    parse, _ = PARSERS[parser]
    with pytest.raises(BadPayload, match=message):
        parse(body)


@pytest.mark.parametrize("parser", PARSERS)
def test_truncated_bodies_raise_bad_payload(parser: str) -> None:
    parse, fixture = PARSERS[parser]
    body = raw(fixture)[:150]
    with pytest.raises(
        BadPayload, match=r"the JSON is truncated after 150 bytes.*retrying may help"
    ):
        parse(body)


def test_truncated_fixture_names_the_payload() -> None:
    body = raw("api/pipeline.json")[:200]
    with pytest.raises(
        BadPayload, match=r"^GitLab pipeline: the JSON is truncated after 200 bytes"
    ):
        gitlab.parse_pipeline(SRC, "g/p", body)


def test_wrong_type_names_the_path() -> None:
    data = loaded("api/pipelines-list.json")
    data[1]["status"] = 3
    with pytest.raises(BadPayload, match=r"Expected `str`, got `int` - at `\$\[1\]\.status`"):
        gitlab.parse_pipelines(SRC, "g/p", json.dumps(data).encode())


def test_object_where_a_list_is_expected() -> None:
    with pytest.raises(
        BadPayload, match=r"GitLab pipelines list: .*Expected `array`, got `object`"
    ):
        gitlab.parse_pipelines(SRC, "g/p", raw("api/pipeline.json"))


def test_missing_required_field_is_named() -> None:
    data = loaded("webhooks/pipeline-hook.json")
    del data["project"]["path_with_namespace"]
    with pytest.raises(
        BadPayload, match=r"missing required field `path_with_namespace` - at `\$\.project`"
    ):
        gitlab.parse_pipeline_hook(SRC, json.dumps(data))


def test_bad_timestamp_names_the_field() -> None:
    data = loaded("api/pipeline.json")
    data["created_at"] = "yesterday"
    with pytest.raises(BadPayload, match=r"`created_at` is not a timestamp: 'yesterday'"):
        gitlab.parse_pipeline(SRC, "g/p", json.dumps(data))


def test_utf8_bom_is_accepted() -> None:
    run = gitlab.parse_pipeline(SRC, "g/p", b"\xef\xbb\xbf" + raw("api/pipeline.json"))
    assert run.run_id == "287"

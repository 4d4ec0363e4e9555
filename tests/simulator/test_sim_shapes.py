"""Every endpoint serves JSON shaped like the vendors' published payloads (tests/fixtures):
the same keys, JSON types and time formats. Deliberate differences are listed with reasons."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from .harness import Harness, fixture
from .shape import shape_diff

Fetch = Callable[[Harness], Awaitable[Any]]
CLASS = "Jenkins 2 adds `_class` to every object (the fixture predates it)"


async def first_pipeline(h: Harness, index: int) -> int:
    reply = await h.gitlab("projects/101/pipelines", sort="asc")
    return int(reply.json()[index]["id"])


async def gitlab_list(h: Harness) -> Any:
    return (await h.gitlab("projects/101/pipelines")).json()


async def gitlab_pipeline(h: Harness) -> Any:
    return (await h.gitlab(f"projects/101/pipelines/{await first_pipeline(h, 0)}")).json()


async def gitlab_jobs(h: Harness) -> Any:
    pid = await first_pipeline(h, 1)  # failed, then retried: success and failed jobs
    return (await h.gitlab(f"projects/101/pipelines/{pid}/jobs", include_retried="true")).json()


async def github_runs(h: Harness) -> Any:
    return (await h.github("repos/octo-org/web/actions/runs")).json()


async def rerun_id(h: Harness) -> int:
    runs = (await h.github("repos/octo-org/web/actions/runs", branch="main")).json()
    return next(r["id"] for r in runs["workflow_runs"] if r["run_attempt"] == 2)


async def github_run(h: Harness) -> Any:
    return (await h.github(f"repos/octo-org/web/actions/runs/{await rerun_id(h)}")).json()


async def github_jobs(h: Harness) -> Any:
    return (await h.github(f"repos/octo-org/web/actions/runs/{await rerun_id(h)}/jobs")).json()


async def failed_job_id(h: Harness) -> int:
    """A failed job of the re-run's attempt 1 (its check run has the job's id)."""
    path = f"repos/octo-org/web/actions/runs/{await rerun_id(h)}/jobs"
    jobs = (await h.github(path, filter="all")).json()["jobs"]
    return next(j["id"] for j in jobs if j["conclusion"] == "failure")


async def github_check_run(h: Harness) -> Any:
    return (await h.github(f"repos/octo-org/web/check-runs/{await failed_job_id(h)}")).json()


async def github_check_runs(h: Harness) -> Any:
    sha = (await github_run(h))["head_sha"]
    return (await h.github(f"repos/octo-org/web/commits/{sha}/check-runs")).json()


async def github_annotations(h: Harness) -> Any:
    path = f"repos/octo-org/web/check-runs/{await failed_job_id(h)}/annotations"
    return (await h.github(path)).json()


async def github_repos(h: Harness) -> Any:
    return (await h.github("orgs/octo-org/repos")).json()[0]


async def jenkins_root(h: Harness) -> Any:
    return (await h.jenkins("api/json", tree="jobs[name,url,color]")).json()


async def jenkins_job(h: Harness) -> Any:
    return (await h.jenkins("job/team/job/tools/job/nightly/api/json")).json()


async def jenkins_build(h: Harness) -> Any:
    return (await h.jenkins("job/team/job/tools/job/nightly/2/api/json")).json()


async def jenkins_queue_item(h: Harness) -> Any:
    items = (await h.jenkins("queue/api/json")).json()["items"]
    return next(item for item in items if item["blocked"])


async def wfapi_describe(h: Harness) -> Any:
    return (await h.jenkins("job/team/job/app/4/wfapi/describe")).json()


async def wfapi_runs(h: Harness) -> Any:
    return (await h.jenkins("job/team/job/app/wfapi/runs")).json()


async def wfapi_job(h: Harness) -> Any:
    return (await h.jenkins("job/team/job/app/wfapi/describe")).json()


def repository_fixture() -> Any:
    return fixture("github/api/workflow-run.json")["repository"]


def queue_item_fixture() -> Any:
    return fixture("jenkins/api/job.json")["queueItem"]


CASES: list[tuple[str, Callable[[], Any], Fetch, dict[str, str]]] = [
    ("gitlab pipelines", lambda: fixture("gitlab/api/pipelines-list.json"), gitlab_list, {}),
    ("gitlab pipeline", lambda: fixture("gitlab/api/pipeline.json"), gitlab_pipeline, {}),
    (
        "gitlab jobs",
        lambda: fixture("gitlab/api/pipeline-jobs-list.json"),
        gitlab_jobs,
        {
            "$[].failure_reason: missing": "GitLab sends failure_reason only for failed jobs",
            **dict.fromkeys(
                [
                    "$[].started_at: null, fixture has iso-ms-Z",
                    "$[].finished_at: null, fixture has iso-ms-Z",
                    "$[].duration: null, fixture has float",
                    "$[].queued_duration: null, fixture has float",
                    "$[].artifacts_expire_at: null, fixture has iso-ms-Z",
                ],
                "null for a job that never ran (skipped after the failed stage)",
            ),
        },
    ),
    (
        "github runs",
        lambda: fixture("github/api/workflow-runs-list.json"),
        github_runs,
        {
            "$.workflow_runs[].previous_attempt_url: extra": "the real list has it too (null "
            "for attempt 1); the OpenAPI example leaves it out; it shows re-runs"
        },
    ),
    ("github run", lambda: fixture("github/api/workflow-run.json"), github_run, {}),
    (
        "github jobs",
        lambda: fixture("github/api/workflow-run-jobs-list.json"),
        github_jobs,
        {
            "$.jobs[].run_attempt: extra": "in the real API; tells the attempts apart",
            "$.jobs[].created_at: extra": "in the real API; when the job was queued",
        },
    ),
    (
        "github check run",
        lambda: fixture("github/api/check-run.json"),
        github_check_run,
        {"$.output.text: null, fixture has string": "a job's check run has no text"},
    ),
    (
        "github check runs",
        lambda: fixture("github/api/check-runs-list.json"),
        github_check_runs,
        {
            "$.check_runs[].output.text: null, fixture has string": "a job's check run has no text",
            "$.check_runs[].output.title: null, fixture has string": "nullable: a green job's "
            "check run has no output title",
            "$.check_runs[].output.summary: null, fixture has string": "nullable: nor summary",
        },
    ),
    (
        "github annotations",
        lambda: fixture("github/api/check-run-annotations.json"),
        github_annotations,
        dict.fromkeys(
            [
                "$[].start_column: null, fixture has integer",
                "$[].end_column: null, fixture has integer",
            ],
            "nullable in the `check-annotation` schema: test annotations name a line, no column",
        )
        | {
            "$[].raw_details: null, fixture has string": "nullable; null in annotations made "
            "from an error with no file, as the API gives them (SOURCES.md)"
        },
    ),
    (
        "github repos",
        repository_fixture,
        github_repos,
        {
            f"$.{key}: extra": "list-of-repos fields ciwatch reads (the fixture is a run's "
            "minimal repository)"
            for key in (
                "default_branch",
                "archived",
                "disabled",
                "visibility",
                "created_at",
                "updated_at",
                "pushed_at",
            )
        },
    ),
    ("jenkins root", lambda: fixture("jenkins/api/jobs-tree.json"), jenkins_root, {}),
    (
        "jenkins job",
        lambda: fixture("jenkins/api/job.json"),
        jenkins_job,
        {
            **dict.fromkeys(
                [
                    "$._class: extra",
                    "$.builds[]._class: extra",
                    "$.firstBuild._class: extra",
                    "$.lastBuild._class: extra",
                    "$.lastCompletedBuild._class: extra",
                    "$.lastStableBuild._class: extra",
                    "$.lastSuccessfulBuild._class: extra",
                    "$.queueItem._class: extra",
                    "$.queueItem.task._class: extra",
                    "$.scm._class: extra",
                ],
                CLASS,
            ),
            "$.fullName: extra": "modern Jenkins; ciwatch names jobs by full name",
            "$.fullDisplayName: extra": "modern Jenkins",
            "$.actions[]: fixture ['parameterDefinitions'] is not served": "simulated jobs take "
            "no parameters",
            "$.actions[]: served org.jenkinsci.plugins.displayurlapi.actions.JobDisplayAction "
            "is not in the fixture": "an action every modern job has",
            "$.queueItem.actions: extra": "queue items carry their causes (CauseAction)",
            "$.queueItem.task.color: extra": "modern Jenkins shows the task's colour",
        },
    ),
    (
        "jenkins build",
        lambda: fixture("jenkins/api/build.json"),
        jenkins_build,
        {
            **dict.fromkeys(
                [
                    "$._class: extra",
                    "$.actions[]._class: extra",
                    "$.actions[].causes[]._class: extra",
                    "$.changeSet._class: extra",
                ],
                CLASS,
            ),
            "$.actions[].causes[].userId: missing": "a timer cause names no user",
            "$.actions[].causes[].userName: missing": "a timer cause names no user",
            "$.actions[]: fixture ['parameters'] is not served": "no build parameters",
            "$.actions[]: served hudson.plugins.git.util.BuildData is not in the fixture": (
                "the git plugin's revision and branch (lastBuiltRevision), which ciwatch reads"
            ),
            "$.actions[]: served jenkins.metrics.impl.TimeInQueueAction is not in the fixture": (
                "the Metrics plugin's queuingDurationMillis, which ciwatch reads"
            ),
        },
    ),
    (
        "jenkins queue item",
        queue_item_fixture,
        jenkins_queue_item,
        {
            "$._class: extra": CLASS,
            "$.task._class: extra": CLASS,
            "$.actions: extra": "queue items carry their causes (CauseAction)",
            "$.task.color: extra": "modern Jenkins shows the task's colour",
        },
    ),
    ("wfapi describe", lambda: fixture("jenkins/api/wfapi-run-describe.json"), wfapi_describe, {}),
    ("wfapi runs", lambda: fixture("jenkins/api/wfapi-runs.json"), wfapi_runs, {}),
    ("wfapi job", lambda: fixture("jenkins/api/wfapi-job-describe.json"), wfapi_job, {}),
]


@pytest.mark.parametrize(("name", "expected", "fetch", "allowed"), CASES, ids=[c[0] for c in CASES])
async def test_served_json_is_shaped_like_the_fixture(
    basic: Harness,
    name: str,
    expected: Callable[[], Any],
    fetch: Fetch,
    allowed: dict[str, str],
) -> None:
    served = await fetch(basic)
    differences = shape_diff(expected(), served)
    assert differences - allowed.keys() == set(), name
    # Every listed difference is real: the list does not hide more than it needs to.
    assert set(allowed) - differences == set(), name


def test_shape_diff_finds_missing_extra_type_and_time_format() -> None:
    fixture_value = {"a": 1, "b": "2020-01-22T19:33:08Z", "c": [{"x": 1}], "d": None}
    served = {"a": "1", "b": "2020-01-22T19:33:08.000Z", "c": [{"x": 1, "y": 2}], "e": 0}
    assert shape_diff(fixture_value, served) == {
        "$.a: string, fixture has integer",
        "$.b: iso-ms-Z, fixture has iso-Z",
        "$.c[].y: extra",
        "$.d: missing",
        "$.e: extra",
    }


def test_shape_diff_accepts_the_fixture_itself() -> None:
    for name in (
        "gitlab/api/pipeline.json",
        "github/api/workflow-run.json",
        "jenkins/api/job.json",
    ):
        assert shape_diff(fixture(name), fixture(name)) == set()

"""Jenkins payload parsing over the published examples (tests/fixtures/jenkins), field by field,
plus unknown statuses and malformed bodies."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ciwatch.domain import Run, Status
from ciwatch.errors import BadPayload
from ciwatch.providers import jenkins
from ciwatch.providers.common import forget_unknown_statuses

FIXTURES = Path(__file__).parent.parent / "fixtures" / "jenkins"
SRC = "ci"
RECEIVED = datetime(2024, 5, 1, 10, 0, 42, 123456, tzinfo=UTC)

# Which parser reads each fixture; every file must be listed here or in SKIPPED, so a new
# fixture fails `test_every_fixture_is_covered_or_skipped` until someone decides.
COVERED = {
    "api/job.json": "parse_job (+ its queueItem, build_to_run on its builds)",
    "api/build.json": "parse_build",
    "api/wfapi-run-describe.json": "parse_stages",
    "webhooks/notification-plugin.completed.json": "parse_notification_dated",
    "api/build-git-commit.json": "parse_commit (test_commits_tests_parse.py)",
    "api/test-report.json": "parse_test_report (test_commits_tests_parse.py)",
}
SKIPPED = {
    "api/jobs-tree.json": "not parsed: discovery reads each folder with parse_job",
    "api/wfapi-runs.json": "not parsed: stages come from each build's wfapi/describe",
    "api/wfapi-job-describe.json": "job summary (name, runCount): nothing to normalise",
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


# -- builds -------------------------------------------------------------------------------------


def test_completed_build() -> None:
    run = jenkins.parse_build(SRC, "fish", raw("api/build.json"))

    assert run.source == SRC
    assert run.provider == "jenkins"
    assert run.project == "fish"
    assert run.run_id == "10"
    assert run.number == 10
    assert run.workflow is None
    assert run.ref is None
    assert run.sha is None
    assert run.event is None
    assert run.status is Status.SUCCESS
    assert run.provider_status == "SUCCESS"
    # timestamp 1461091892486 ms, duration 60750 ms
    assert run.created_at == utc(2016, 4, 19, 18, 51, 32, 486000)
    assert run.started_at == utc(2016, 4, 19, 18, 51, 32, 486000)
    assert run.finished_at == utc(2016, 4, 19, 18, 52, 33, 236000)
    assert run.updated_at == utc(2016, 4, 19, 18, 51, 32, 486000)
    assert run.duration_seconds == 60.75
    assert run.queued_seconds is None
    assert run.url == "http://localhost:32769/job/fish/10/"
    assert run.author == "anonymous"  # userId is null: userName
    assert run.attempt == 1


def test_running_build_with_git_data_and_queue_time() -> None:
    data = loaded("api/build.json")
    data.update(building=True, result=None, duration=0)
    data["actions"][1]["causes"] = [
        {"shortDescription": "Started by an SCM change"},
        {"shortDescription": "Started by user Jane", "userId": "jane", "userName": "Jane"},
    ]
    data["actions"] += [
        {},
        {
            "_class": "hudson.plugins.git.util.BuildData",
            "lastBuiltRevision": {
                "SHA1": "c6d86dc654b12425e706bcf951adfe5a8627a517",
                "branch": [
                    {
                        "SHA1": "c6d86dc654b12425e706bcf951adfe5a8627a517",
                        "name": "refs/remotes/origin/release/1.x",
                    }
                ],
            },
        },
        {"_class": "jenkins.metrics.impl.TimeInQueueAction", "queuingDurationMillis": 4250},
    ]
    run = jenkins.parse_build(SRC, "team/fish", json.dumps(data).encode())

    assert run.status is Status.RUNNING
    assert run.provider_status == "building"
    assert run.started_at == utc(2016, 4, 19, 18, 51, 32, 486000)
    assert run.finished_at is None
    assert run.duration_seconds is None
    assert run.queued_seconds == 4.25
    assert run.sha == "c6d86dc654b12425e706bcf951adfe5a8627a517"
    assert run.ref == "release/1.x"
    assert run.author == "jane"
    assert run.updated_at == utc(2016, 4, 19, 18, 51, 32, 486000)


def test_updated_at_is_constant_so_rank_orders_a_build() -> None:
    data = loaded("api/build.json")
    data.update(building=True, result=None)
    running = jenkins.parse_build(SRC, "fish", json.dumps(data))
    done = jenkins.parse_build(SRC, "fish", raw("api/build.json"))
    assert running.updated_at == done.updated_at
    assert running.status.rank < done.status.rank


def test_unstable_build_is_failed() -> None:
    data = loaded("api/build.json")
    data["result"] = "UNSTABLE"
    run = jenkins.parse_build(SRC, "fish", json.dumps(data))
    assert run.status is Status.FAILED
    assert run.provider_status == "UNSTABLE"


def test_first_cause_description_when_no_user() -> None:
    data = loaded("api/build.json")
    data["actions"][1]["causes"] = [{"shortDescription": "Started by timer"}]
    assert jenkins.parse_build(SRC, "fish", json.dumps(data)).author == "Started by timer"


def test_parse_build_accepts_a_decoded_build() -> None:
    build = jenkins.parse_job(SRC, raw("api/job.json")).builds[0]
    decoded = jenkins.JenkinsBuild(number=7, url=build.url, result="FAILURE", timestamp=0)
    run = jenkins.parse_build(SRC, "fish", decoded)
    assert (run.run_id, run.status, run.created_at) == ("7", Status.FAILED, utc(1970, 1, 1))


def test_embedded_builds_without_timestamp_are_refused() -> None:
    job = jenkins.parse_job(SRC, raw("api/job.json"))
    with pytest.raises(BadPayload, match=r"build #7 of fish: no `timestamp`.*`tree=` query"):
        jenkins.build_to_run(SRC, "fish", job.builds[0])


# -- jobs, folders, queue -----------------------------------------------------------------------


def test_job() -> None:
    job = jenkins.parse_job(SRC, raw("api/job.json"))

    assert job.name == "fish"
    assert job.full_name is None
    assert job.url == "http://localhost:32769/job/fish/"
    assert job.class_ is None
    assert job.color == "blue_anime"
    assert job.in_queue is True
    assert job.is_folder is False
    assert job.jobs == []
    assert [b.number for b in job.builds] == [7, 6, 5, 4, 3, 2, 1]
    assert job.builds[0].url == "http://localhost:32769/job/fish/7/"
    assert job.last_build is not None
    assert job.last_build.number == 7
    assert job.last_build.url == "http://localhost:32769/job/fish/7/"

    item = job.queue_item
    assert item is not None
    assert item.id == 71
    assert item.blocked is True
    assert item.buildable is False
    assert item.stuck is False
    assert item.why == "Build #7 is already in progress (ETA:52 sec)"
    assert item.task is not None
    assert (item.task.name, item.task.url) == ("fish", "http://localhost:32769/job/fish/")
    assert item.project == "fish"
    assert item.queued_since == utc(2016, 4, 18, 0, 54, 11, 267000)


def test_queue_item_of_a_folder_job() -> None:
    body = {
        "name": "main",
        "queueItem": {"id": 3, "task": {"name": "main", "url": "http://j/job/team/job/app%20x/"}},
    }
    item = jenkins.parse_job(SRC, json.dumps(body)).queue_item
    assert item is not None
    assert item.project == "team/app x"
    assert item.queued_since is None


# -- Pipeline stages (wfapi) --------------------------------------------------------------------


def test_stages_of_a_run_paused_for_input() -> None:
    build, test, deploy = jenkins.parse_stages(
        SRC, "Test Workflow", "16", raw("api/wfapi-run-describe.json")
    )

    assert build.source == SRC
    assert build.project == "Test Workflow"
    assert build.run_id == "16"
    assert build.job_id == "5"
    assert build.name == "Build"
    assert build.stage is None
    assert build.status is Status.SUCCESS
    assert build.provider_status == "SUCCESS"
    assert build.created_at is None
    assert build.started_at == utc(2014, 10, 16, 12, 7, 55, 770000)
    assert build.finished_at == utc(2014, 10, 16, 12, 8, 0, 998000)
    assert build.updated_at == utc(2014, 10, 16, 12, 8, 0, 998000)
    assert build.duration_seconds == 5.228
    assert build.queued_seconds is None
    assert build.runner is None
    assert build.url is None

    assert (test.job_id, test.name, test.status) == ("8", "Test", Status.SUCCESS)
    assert test.started_at == utc(2014, 10, 16, 12, 8, 0, 998000)
    assert test.finished_at == utc(2014, 10, 16, 12, 8, 5, 992000)
    assert test.duration_seconds == 4.994

    assert (deploy.job_id, deploy.name) == ("10", "Deploy")
    assert deploy.status is Status.MANUAL
    assert deploy.provider_status == "PAUSED_PENDING_INPUT"
    assert deploy.started_at == utc(2014, 10, 16, 12, 8, 5, 992000)
    assert deploy.finished_at is None
    assert deploy.duration_seconds is None
    assert deploy.updated_at == utc(2014, 10, 16, 12, 8, 5, 999000)


@pytest.mark.parametrize(
    ("word", "status", "finished"),
    [
        ("FAILED", Status.FAILED, True),
        ("UNSTABLE", Status.FAILED, True),
        ("ABORTED", Status.CANCELED, True),
        ("NOT_EXECUTED", Status.SKIPPED, False),
        ("SKIPPED", Status.SKIPPED, False),
        ("IN_PROGRESS", Status.RUNNING, False),
    ],
)
def test_wfapi_status_table(word: str, status: Status, finished: bool) -> None:
    data = loaded("api/wfapi-run-describe.json")
    data["stages"][2]["status"] = word
    deploy = jenkins.parse_stages(SRC, "w", "16", json.dumps(data))[2]
    assert (deploy.status, deploy.provider_status) == (status, word)
    assert (deploy.finished_at is not None) is finished


def test_stage_that_never_ran_is_dated_by_its_run() -> None:
    data = loaded("api/wfapi-run-describe.json")
    data["stages"][2].update(
        status="NOT_EXECUTED", startTimeMillis=0, durationMillis=0, execNode=""
    )
    deploy = jenkins.parse_stages(SRC, "w", "16", json.dumps(data))[2]
    assert deploy.started_at is None
    assert deploy.updated_at == utc(2014, 10, 16, 12, 7, 55, 770000)
    assert deploy.runner is None


def test_stage_runner_is_its_exec_node() -> None:
    data = loaded("api/wfapi-run-describe.json")
    data["stages"][0]["execNode"] = "agent-7"
    assert jenkins.parse_stages(SRC, "w", "16", json.dumps(data))[0].runner == "agent-7"


# -- Notification plugin ------------------------------------------------------------------------


def notification(source: str, body: bytes | str, received_at: datetime) -> Run:
    """The run a Notification plugin POST reports (without whether it carried its own time)."""
    return jenkins.parse_notification_dated(source, body, received_at)[0]


def test_notification_completed_without_timestamp() -> None:
    run = notification(SRC, raw("webhooks/notification-plugin.completed.json"), RECEIVED)

    assert run.source == SRC
    assert run.provider == "jenkins"
    assert run.project == "asgard"
    assert run.run_id == "18"
    assert run.number == 18
    assert run.ref == "master"
    assert run.sha == "c6d86dc654b12425e706bcf951adfe5a8627a517"
    assert run.event is None
    assert run.status is Status.SUCCESS
    assert run.provider_status == "SUCCESS"
    # No timestamp nor duration in the payload: the receive time stands in (documented limit).
    assert run.created_at == RECEIVED
    assert run.started_at == RECEIVED
    assert run.finished_at == RECEIVED
    assert run.updated_at == RECEIVED
    assert run.duration_seconds is None
    assert run.queued_seconds is None
    assert run.url == "http://localhost:8080/job/asgard/18/"
    assert run.author is None
    assert run.attempt == 1


def test_notification_with_timestamp_and_duration_matches_the_api_build() -> None:
    data = loaded("webhooks/notification-plugin.completed.json")
    data["url"] = "job/team/job/asgard/"
    # COMPLETED: timestamp = build start + duration (notification-plugin JobListener).
    data["build"].update(timestamp="2016-04-19T18:52:33.236+00:00", duration=60750)
    run = notification(SRC, json.dumps(data), RECEIVED)
    assert run.project == "team/asgard"
    assert run.started_at == utc(2016, 4, 19, 18, 51, 32, 486000)
    assert run.created_at == utc(2016, 4, 19, 18, 51, 32, 486000)
    assert run.finished_at == utc(2016, 4, 19, 18, 52, 33, 236000)
    assert run.duration_seconds == 60.75
    # Floored to the second: never later than the polled build's constant `timestamp`.
    assert run.updated_at == utc(2016, 4, 19, 18, 51, 32)
    polled = jenkins.parse_build(SRC, "team/asgard", raw("api/build.json"))
    assert run.updated_at <= polled.updated_at


def test_notification_started_with_epoch_timestamp() -> None:
    data = loaded("webhooks/notification-plugin.completed.json")
    data["build"].update(phase="STARTED", status=None, timestamp=1461091892486)
    run = notification(SRC, json.dumps(data), RECEIVED)
    assert run.status is Status.RUNNING
    assert run.provider_status == "STARTED"
    assert run.started_at == utc(2016, 4, 19, 18, 51, 32, 486000)
    assert run.finished_at is None
    assert run.updated_at == utc(2016, 4, 19, 18, 51, 32)


def test_notification_queued() -> None:
    data = loaded("webhooks/notification-plugin.completed.json")
    data["build"].update(phase="QUEUED", status=None)
    run = notification(SRC, json.dumps(data), RECEIVED)
    assert run.status is Status.QUEUED
    assert run.provider_status == "QUEUED"
    assert run.started_at is None
    assert run.created_at == RECEIVED
    assert run.updated_at == RECEIVED


def test_notification_finalized_failure() -> None:
    data = loaded("webhooks/notification-plugin.completed.json")
    data["build"].update(phase="FINALIZED", status="FAILURE")
    del data["build"]["full_url"]
    run = notification(SRC, json.dumps(data), RECEIVED)
    assert run.status is Status.FAILED
    assert run.provider_status == "FAILURE"
    assert run.url == "job/asgard/18/"


def test_notification_finalized_carries_no_time_of_the_build() -> None:
    # JobListener.onFinalized sends System.currentTimeMillis(): "now", not the build's end.
    data = loaded("webhooks/notification-plugin.completed.json")
    data["build"].update(phase="FINALIZED", timestamp=1461093692486, duration=60750)
    run, dated = jenkins.parse_notification_dated(SRC, json.dumps(data), RECEIVED)
    assert dated is False
    assert run.status is Status.SUCCESS
    assert (run.started_at, run.finished_at) == (None, None)
    assert run.duration_seconds == 60.75
    assert run.updated_at == run.created_at == RECEIVED
    assert jenkins.untimed_end(run)
    completed = data | {"build": data["build"] | {"phase": "COMPLETED"}}
    assert not jenkins.untimed_end(notification(SRC, json.dumps(completed), RECEIVED))


def test_notification_received_at_is_moved_to_utc() -> None:
    local = datetime(2024, 5, 1, 12, 0, 42, tzinfo=UTC).astimezone()
    run = notification(SRC, raw("webhooks/notification-plugin.completed.json"), local)
    assert run.updated_at == utc(2024, 5, 1, 12, 0, 42)
    assert run.updated_at.utcoffset() is not None


# -- unknown statuses ---------------------------------------------------------------------------


def test_unknown_result_is_failed_kept_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    data = loaded("api/build.json")
    data["result"] = "CATASTROPHIC"
    body = json.dumps(data)
    with caplog.at_level(logging.WARNING, logger="ciwatch.providers"):
        runs = [jenkins.parse_build(SRC, "fish", body) for _ in range(2)]
    assert [(r.status, r.provider_status) for r in runs] == [(Status.FAILED, "CATASTROPHIC")] * 2
    records = [r for r in caplog.records if r.name == "ciwatch.providers"]
    assert len(records) == 1
    assert "jenkins" in records[0].getMessage()
    assert "'CATASTROPHIC'" in records[0].getMessage()


def test_unknown_stage_status_is_failed_kept_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = loaded("api/wfapi-run-describe.json")
    for stage in data["stages"]:
        stage["status"] = "HALTED"
    with caplog.at_level(logging.WARNING, logger="ciwatch.providers"):
        jobs = jenkins.parse_stages(SRC, "w", "16", json.dumps(data))
        jobs += jenkins.parse_stages(SRC, "w", "16", json.dumps(data))
    assert {(j.status, j.provider_status) for j in jobs} == {(Status.FAILED, "HALTED")}
    assert len(caplog.records) == 1


def test_unknown_notification_phase_is_running_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = loaded("webhooks/notification-plugin.completed.json")
    data["build"]["phase"] = "DELETED"
    with caplog.at_level(logging.WARNING, logger="ciwatch.providers"):
        runs = [notification(SRC, json.dumps(data), RECEIVED) for _ in range(2)]
    assert [(r.status, r.provider_status) for r in runs] == [(Status.RUNNING, "DELETED")] * 2
    assert len(caplog.records) == 1
    assert "phase DELETED" in caplog.records[0].getMessage()


# -- malformed bodies ---------------------------------------------------------------------------

PARSERS: dict[str, tuple[Callable[[bytes], object], str]] = {
    "job": (lambda b: jenkins.parse_job(SRC, b), "api/job.json"),
    "build": (lambda b: jenkins.parse_build(SRC, "fish", b), "api/build.json"),
    "stages": (lambda b: jenkins.parse_stages(SRC, "w", "16", b), "api/wfapi-run-describe.json"),
    "notification": (
        lambda b: notification(SRC, b, RECEIVED),
        "webhooks/notification-plugin.completed.json",
    ),
}


@pytest.mark.parametrize("parser", PARSERS)
@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", r"the body is empty$"),
        (
            b"<html><head><title>Authentication required</title>",
            r"looks like HTML.*Authentication required",
        ),
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
    with pytest.raises(BadPayload, match=r"the JSON is truncated after 120 bytes"):
        parse(raw(fixture)[:120])


def test_wrong_type_names_the_path() -> None:
    data = loaded("api/build.json")
    data["timestamp"] = "yesterday"
    with pytest.raises(BadPayload, match=r"Expected `int \| null`, got `str` - at `\$\.timestamp`"):
        jenkins.parse_build(SRC, "fish", json.dumps(data))


def test_missing_required_field_is_named() -> None:
    data = loaded("webhooks/notification-plugin.completed.json")
    del data["build"]["phase"]
    with pytest.raises(
        BadPayload, match=r"Jenkins notification: .*missing required field `phase` - at `\$\.build`"
    ):
        notification(SRC, json.dumps(data), RECEIVED)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("job/asgard/", "asgard"),
        ("http://j:8080/jenkins/job/team/job/app/job/feature%252Fx/", "team/app/feature%2Fx"),
        ("http://j/job/fish/10/", "fish"),
        ("http://j/", None),
        (None, None),
    ],
)
def test_job_full_name_from_url(url: str | None, name: str | None) -> None:
    assert jenkins.job_full_name_from_url(url) == name

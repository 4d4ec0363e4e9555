"""Azure Pipelines parsing over the fixtures (tests/fixtures/azure, see SOURCES.md), field by
field; every documented status word; the source model; the webhook decisions."""

from __future__ import annotations

import base64
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ciwatch.domain import Status
from ciwatch.errors import BadPayload
from ciwatch.providers import azure
from ciwatch.providers.common import forget_unknown_statuses
from ciwatch.providers.watch import unwatched

FIXTURES = Path(__file__).parent.parent / "fixtures" / "azure"
SRC = "az"
PROJECT_ID = "be9b3917-87e6-42a4-a549-2bc06a7a878f"


def raw(relative: str) -> bytes:
    return (FIXTURES / relative).read_bytes()


def loaded(relative: str) -> Any:
    return json.loads(raw(relative))


def test_every_fixture_is_read_by_a_test() -> None:
    files = {str(p.relative_to(FIXTURES)) for p in FIXTURES.rglob("*.json")}
    assert files == {
        "api/builds-list.json",
        "api/build-changes.json",
        "api/changes-between.json",
        "api/definitions-list.json",
        "api/timeline.json",
        "api/test-runs-list.json",
        "api/test-results-failed.json",
        "webhooks/build.complete.json",
        "webhooks/run-state-changed.json",
        "webhooks/stage-state-changed.json",
        "webhooks/job-state-changed.json",
    }


# -- status words -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "result", "expected"),
    [
        ("none", None, Status.QUEUED),
        ("notStarted", None, Status.QUEUED),
        ("postponed", None, Status.QUEUED),
        ("inProgress", None, Status.RUNNING),
        ("cancelling", None, Status.RUNNING),
        ("completed", "succeeded", Status.SUCCESS),
        ("completed", "partiallySucceeded", Status.FAILED),
        ("completed", "failed", Status.FAILED),
        ("completed", "canceled", Status.CANCELED),
    ],
)
def test_every_documented_build_word(status: str, result: str | None, expected: Status) -> None:
    assert azure.map_status(status, result) == (expected, None)


def test_unknown_build_words_are_never_green() -> None:
    done, unknown = azure.map_status("completed", "none")
    assert done is Status.FAILED
    assert unknown is not None and unknown.word == "completed/none"
    other, unknown = azure.map_status("all", None)  # a filter word, never a status
    assert other is Status.RUNNING and unknown is not None and unknown.provider == "azure"


@pytest.mark.parametrize(
    ("state", "result", "expected"),
    [
        ("pending", None, Status.QUEUED),
        ("inProgress", None, Status.RUNNING),
        ("completed", "succeeded", Status.SUCCESS),
        ("completed", "succeededWithIssues", Status.FAILED),
        ("completed", "failed", Status.FAILED),
        ("completed", "canceled", Status.CANCELED),
        ("completed", "abandoned", Status.CANCELED),
        ("completed", "skipped", Status.SKIPPED),
    ],
)
def test_every_documented_record_word(state: str, result: str | None, expected: Status) -> None:
    assert azure.map_record(state, result) == (expected, None)


def test_an_unknown_record_word_is_reported() -> None:
    status, unknown = azure.map_record("completed", "rejected")
    assert status is Status.FAILED and unknown is not None


def test_an_unknown_word_is_logged_once_and_kept_verbatim(
    caplog: pytest.LogCaptureFixture,
) -> None:
    forget_unknown_statuses()
    build = loaded("api/builds-list.json")["value"][1]
    build["result"] = "brandNew"
    body = json.dumps({"value": [build, build]}).encode()
    with caplog.at_level(logging.WARNING, logger="ciwatch.providers"):
        runs = [azure.build_to_run(SRC, "p/x", b) for b in azure.parse_builds(body)]
    assert [r.status for r in runs] == [Status.FAILED, Status.FAILED]
    assert runs[0].provider_status == "brandNew"
    assert len([r for r in caplog.records if "unknown_status" in r.getMessage()]) == 1


# -- REST API ---------------------------------------------------------------------------------


def test_builds_list_field_by_field() -> None:
    running, done = azure.parse_builds(raw("api/builds-list.json"))
    assert azure.build_target(done, None) == "Fabrikam-Fiber-Git/apps/web-ci"
    run = azure.build_to_run(SRC, "Fabrikam-Fiber-Git/apps/web-ci", done)
    assert (run.provider, run.run_id, run.number) == ("azure", "2727068", 2727068)
    assert (run.status, run.provider_status) == (Status.SUCCESS, "succeeded")
    assert run.ref == "main"
    assert run.sha == "0c9e1e1b2d4e3c5b6a7f8e9d0c1b2a3f4e5d6c7b"
    assert run.event == "individualCI"
    assert run.author == "Jamal Hartnett"
    assert run.url == (
        "https://dev.azure.com/FabrikamFiber/16dcfeeb-d8fd-495c-917b-fec46cb44fbb"
        "/_build/results?buildId=2727068"
    )
    assert run.created_at == datetime(2022, 12, 2, 12, 18, 45, 736797, tzinfo=UTC)
    assert run.started_at == datetime(2022, 12, 2, 12, 18, 53, 123456, tzinfo=UTC)
    assert run.finished_at == datetime(2022, 12, 2, 12, 21, 10, 987654, tzinfo=UTC)
    assert run.updated_at == datetime(2022, 12, 2, 12, 21, 11, 120000, tzinfo=UTC)
    assert run.duration_seconds == pytest.approx(137.864198)
    assert run.queued_seconds == pytest.approx(7.386659)
    pending = azure.build_to_run(SRC, "Fabrikam-Fiber-Git/apps/web-ci", running)
    assert (pending.status, pending.provider_status) == (Status.RUNNING, "inProgress")
    assert pending.ref == "refs/pull/31/merge"  # only refs/heads/ is stripped
    assert pending.finished_at is None and pending.duration_seconds is None


def test_definitions_list_names_targets_by_folder() -> None:
    definitions = azure.parse_definitions(raw("api/definitions-list.json"))
    names = [azure.target_name("Fabrikam-Fiber-Git", d.name, d.path) for d in definitions]
    assert names == ["Fabrikam-Fiber-Git/apps/web-ci", "Fabrikam-Fiber-Git/nightly"]
    assert [d.id for d in definitions] == [5, 7]


def test_timeline_jobs_with_their_stages() -> None:
    jobs = azure.parse_timeline(SRC, "P/web-ci", "2727068", raw("api/timeline.json"))
    by_name = {job.name: job for job in jobs}
    assert list(by_name) == ["Compile", "Unit tests", "Lint"]  # `Integration` has no time yet
    compile_ = by_name["Compile"]
    assert (compile_.stage, compile_.status, compile_.runner) == (
        "Build",
        Status.SUCCESS,
        "Hosted Agent",
    )
    assert compile_.job_id == "c3dac6c6-3b5e-5062-9ca1-4fa1bd4d8d03"
    assert compile_.duration_seconds == pytest.approx(67.0)
    unit = by_name["Unit tests"]
    assert (unit.stage, unit.status, unit.allow_failure, unit.attempt) == (
        "Test",
        Status.FAILED,
        True,
        2,
    )
    assert unit.provider_status == "succeededWithIssues"
    lint = by_name["Lint"]
    assert lint.status is Status.SKIPPED
    assert lint.updated_at == datetime(2022, 12, 2, 12, 20, 2, 500000, tzinfo=UTC)
    assert all(job.run_id == "2727068" and job.project == "P/web-ci" for job in jobs)


def test_a_record_without_a_stage_is_a_job_of_no_stage() -> None:
    body = json.dumps(
        {
            "records": [
                {
                    "id": "j",
                    "type": "Job",
                    "name": "Job",
                    "state": "inProgress",
                    "startTime": "2024-01-01T00:00:00Z",
                }
            ]
        }
    )
    (job,) = azure.parse_timeline(SRC, "P/x", "1", body)
    assert job.stage is None and job.status is Status.RUNNING


def test_test_runs_are_summed_over_the_build() -> None:
    counts, failing = azure.parse_test_runs(raw("api/test-runs-list.json"))
    assert counts == {
        "tests_total": 158,
        "tests_failed": 5,  # unanalyzedTests
        "tests_skipped": 5,  # notApplicableTests
        "tests_errored": None,
    }
    assert failing == [1001, 1003]  # the runs with failed tests, whose results are read
    assert azure.build_uri("2727068") == "vstfs:///Build/Build/2727068"


def test_a_build_without_test_runs_has_no_report() -> None:
    counts, failing = azure.parse_test_runs(b'{"count": 0, "value": []}')
    assert counts == dict.fromkeys(azure.TEST_FIELDS) and failing == []


def test_failing_results_by_automated_name_else_title() -> None:
    body = raw("api/test-results-failed.json")
    assert azure.parse_failing_results(body, 20) == (
        "Fabrikam.Web.Tests.ParserTests.ParsesEmptyBody",
        "Fabrikam.Web.Tests.AuthTests.RejectsBadToken",
        "Manual smoke check of the login page",  # no automatedTestName: the title
    )  # the Passed result is not a failure
    assert azure.parse_failing_results(body, 1) == (
        "Fabrikam.Web.Tests.ParserTests.ParsesEmptyBody",
    )


def test_malformed_bodies_are_bad_payloads() -> None:
    with pytest.raises(BadPayload, match="builds list"):
        azure.parse_builds(b"<html>sign in</html>")
    with pytest.raises(BadPayload, match="no time at all"):
        azure.build_to_run(SRC, "p/x", azure.parse_build(b'{"id": 3, "status": "none"}'))
    with pytest.raises(BadPayload, match="Test runs list"):
        azure.parse_test_runs(b'{"value": [{"totalTests": 3}]}')  # no id


# -- Service Hooks ----------------------------------------------------------------------------


def test_event_types_of_the_samples() -> None:
    assert azure.event_type(raw("webhooks/build.complete.json")) == (
        "build.complete",
        "4a5d99d6-1c75-4e53-91b9-ee80057d4ce3",
    )
    kind, _ = azure.event_type(raw("webhooks/job-state-changed.json"))
    assert kind == "ms.vss-pipelines.job-state-changed-event" and kind not in azure.EVENTS


def test_old_build_complete_names_the_build_to_read() -> None:
    # resourceVersion 1.0: `status` is a result word, no `project`: the build is read instead.
    run, ref = azure.parse_build_complete(SRC, raw("webhooks/build.complete.json"), "Fabrikam")
    assert run is None
    assert ref == azure.BuildRef(2, PROJECT_ID, with_jobs=True)


def test_build_complete_with_a_full_build_is_a_run() -> None:
    build = loaded("api/builds-list.json")["value"][1]
    body = json.dumps({"id": "e1", "eventType": "build.complete", "resource": build})
    run, ref = azure.parse_build_complete(SRC, body)
    assert ref is None and run is not None
    assert (run.project, run.run_id, run.status) == (
        "Fabrikam-Fiber-Git/apps/web-ci",
        "2727068",
        Status.SUCCESS,
    )


def test_pipeline_events_name_their_build() -> None:
    assert azure.parse_pipeline_event(raw("webhooks/run-state-changed.json")) == azure.BuildRef(
        11, PROJECT_ID, with_jobs=False
    )
    assert azure.parse_pipeline_event(raw("webhooks/stage-state-changed.json")) == azure.BuildRef(
        2, PROJECT_ID, with_jobs=True
    )
    with pytest.raises(BadPayload, match="resourceContainers"):
        azure.parse_pipeline_event(raw("webhooks/job-state-changed.json"))


def test_basic_password() -> None:
    def basic(pair: str) -> str:
        return "Basic " + base64.b64encode(pair.encode()).decode()

    assert azure.basic_password(basic("ciwatch:s3cret")) == "s3cret"
    assert azure.basic_password(basic(":s3cret")) == "s3cret"
    assert azure.basic_password(basic("no-colon")) is None
    assert azure.basic_password("Basic !!!") is None
    assert azure.basic_password("Bearer s3cret") is None
    assert azure.basic_password(None) is None


# -- the source model -------------------------------------------------------------------------


def source(**extra: Any) -> azure.AzureSource:
    return azure.AzureSource(name="az", organization="fabrikam", projects=["Fabrikam"], **extra)


def test_source_defaults() -> None:
    settings = source()
    assert (str(settings.url), settings.api_version, settings.pipelines) == (
        "https://dev.azure.com",
        "7.1",
        [],
    )
    assert str(source(url="https://tfs.example.com/tfs/").url) == "https://tfs.example.com/tfs"


@pytest.mark.parametrize(
    "extra",
    [
        {"organization": "has space"},
        {"projects": ["a/b"]},
        {"projects": []},
        {"pipeline": ["x"]},
        {"api_version": "latest"},
    ],
)
def test_source_refuses(extra: dict[str, Any]) -> None:
    data: dict[str, Any] = {"name": "az", "organization": "fabrikam", "projects": ["Fabrikam"]}
    data.update(extra)
    with pytest.raises(ValidationError):
        azure.AzureSource(**data)


def test_what_a_source_watches() -> None:
    settings = source(pipelines=["apps/*"], exclude_projects=["*/apps/legacy"], refs=["main"])
    assert unwatched(settings, "fabrikam/apps/web", "main") is None  # project: any case
    assert "not watched" in (unwatched(settings, "Fabrikam/nightly", "main") or "")
    assert "not watched" in (unwatched(settings, "Other/apps/web", "main") or "")
    assert "exclude_projects" in (unwatched(settings, "Fabrikam/apps/legacy", "main") or "")
    assert "ref" in (unwatched(settings, "Fabrikam/apps/web", "dev") or "")
    everything = source(pipelines=["apps/*"], webhooks_accept_unwatched=True)
    assert unwatched(everything, "Other/x", None) is None


def _changes(*changes: dict[str, object]) -> bytes:
    return json.dumps({"count": len(changes), "value": list(changes)}).encode()


def test_build_changes_fixture_gives_the_built_commit() -> None:
    # Every field of the spec's `Change` (build.json 7.1, see SOURCES.md); the built commit
    # (`sourceVersion` of the example build) is listed second, after an older one.
    sha = loaded("api/builds-list.json")["value"][1]["sourceVersion"]
    assert azure.parse_build_changes(raw("api/build-changes.json"), sha) == {
        "commit_title": "Fix the build script",
        "commit_author": "Jamal Hartnett",
        "commit_email": "fabrikamfiber4@hotmail.com",
    }
    # Another SHA: the first listed, whose unique name (a Windows account) is no e-mail address.
    assert azure.parse_build_changes(raw("api/build-changes.json"), "f" * 40) == {
        "commit_title": "Update the README",
        "commit_author": "Normal Paulk",
        "commit_email": None,
    }


def test_build_changes_give_the_built_commit() -> None:
    # The `Change` fields of "Builds - Get Build Changes" (build.json, 7.1): id, message, author.
    built = {
        "id": "5d2bba5",
        "message": "Fix the parser\n\nlong text",
        "author": {"displayName": "Ada Lovelace", "uniqueName": "ada@example.com"},
    }
    older = {"id": "0aa0aa0", "message": "Older", "author": {"displayName": "Bob"}}
    assert azure.parse_build_changes(_changes(older, built), "5D2BBA5") == {
        "commit_title": "Fix the parser",
        "commit_author": "Ada Lovelace",
        "commit_email": "ada@example.com",
    }
    # Not found by SHA: the first listed; a unique name that is no e-mail address is not one.
    assert azure.parse_build_changes(_changes(older), "5d2bba5") == {
        "commit_title": "Older",
        "commit_author": "Bob",
        "commit_email": None,
    }
    windows = {**built, "author": {"displayName": "Ada", "uniqueName": "CONTOSO\\ada"}}
    assert azure.parse_build_changes(_changes(windows), None)["commit_email"] is None
    assert set(azure.parse_build_changes(_changes(), "5d2bba5").values()) == {None}

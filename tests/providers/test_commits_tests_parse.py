"""The commit and test-report fields of runs, parsed from the vendors' own examples
(tests/fixtures/<vendor>/, see SOURCES.md): GitHub `head_commit`, GitLab Pipeline Hook `commit`
and the commits and test-report APIs, Jenkins `changeSets`/`culprits` and `testReport`."""

from __future__ import annotations

import json
from pathlib import Path

from ciwatch.domain import MAX_FAILING_TESTS, MAX_TEST_NAME, Run, Status
from ciwatch.providers import github, gitlab, jenkins

FIXTURES = Path(__file__).parent.parent / "fixtures"


def raw(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_github_rest_run_has_its_head_commit() -> None:
    run = github.parse_run("gh", "octo-org/hello-world", raw("github/api/workflow-run.json"))
    assert run.commit_title == "Create linter.yaml"
    assert (run.commit_author, run.commit_email) == ("Octo Cat", "octocat@github.com")


def test_github_workflow_run_event_has_its_head_commit() -> None:
    run = github.parse_workflow_run_event("gh", raw("github/webhooks/workflow_run.completed.json"))
    assert run.commit_title == "build(test): check workflow run event payload"
    assert run.commit_author == "Matthias Fax"
    assert run.commit_email == "matfax@users.noreply.github.com"


def test_gitlab_pipeline_hook_has_its_commit() -> None:
    run, _jobs = gitlab.parse_pipeline_hook("gl", raw("gitlab/webhooks/pipeline-hook.json"))
    assert run.commit_title == "test"  # "test\n": the first line
    assert (run.commit_author, run.commit_email) == ("User", "user@gitlab.com")
    assert run.author == "root"


def test_gitlab_hook_commit_of_another_sha_is_not_taken() -> None:
    body = json.loads(raw("gitlab/webhooks/pipeline-hook.json"))
    body["commit"]["id"] = "0" * 40
    run, _jobs = gitlab.parse_pipeline_hook("gl", json.dumps(body).encode())
    assert run.commit_title is None and run.commit_author is None


def test_gitlab_commit_api() -> None:
    assert gitlab.parse_commit(raw("gitlab/api/commit.json")) == {
        "commit_title": "Sanitize for network graph",
        "commit_author": "randx",
        "commit_email": "dmitriy.zaporozhets@gmail.com",
    }


def test_gitlab_test_report_summary() -> None:
    assert gitlab.parse_test_summary(raw("gitlab/api/test-report-summary.json")) == {
        "tests_total": 3363,
        "tests_failed": 0,
        "tests_skipped": 12,
        "tests_errored": 0,
    }


def test_gitlab_test_report_failing_cases() -> None:
    assert gitlab.parse_failing_tests(raw("gitlab/api/test-report.json"), 20) == ()
    body = json.loads(raw("gitlab/api/test-report.json"))
    case = body["test_suites"][0]["test_cases"][0]
    body["test_suites"][0]["test_cases"] = [
        {**case, "status": "failed"},
        {**case, "status": "error", "classname": None, "name": "boot"},
        {**case, "status": "skipped", "name": "later"},
    ]
    names = gitlab.parse_failing_tests(json.dumps(body).encode(), 20)
    assert names == ("vulnerability_management_spec::" + case["name"], "boot")
    assert len(gitlab.parse_failing_tests(json.dumps(body).encode(), 1)) == 1


def test_jenkins_change_sets_and_culprits() -> None:
    body = raw("jenkins/api/build-git-commit.json")
    assert jenkins.parse_commit(body, "d27afa0805201322d846d7defc29b82c88d9b5ce") == {
        "commit_title": "Commit comment",
        "commit_author": "username",
        "commit_email": "username@localhost",
    }
    without = json.loads(body)
    without["changeSets"] = []
    assert jenkins.parse_commit(json.dumps(without).encode(), None) == {"commit_author": "username"}


def test_jenkins_test_report() -> None:
    found = jenkins.parse_test_report(raw("jenkins/api/test-report.json"), 20)
    assert found == {
        "tests_total": 8,
        "tests_failed": 2,
        "tests_skipped": 1,
        "tests_errored": None,
        "tests_failing": ("parser.ParserTest::empty_input", "parser.ParserTest::unicode"),
    }


def test_run_bounds_its_commit_and_test_fields() -> None:
    run = Run(
        source="s",
        provider="push",
        project="p",
        run_id="1",
        status=Status.FAILED,
        updated_at=json_time(),
        commit_title="x\x00y\n" + "z" * 500,
        tests_failing=tuple(f"t{i}" + "n" * 400 for i in range(50)),
    )
    assert run.commit_title is not None and "\x00" not in run.commit_title
    assert len(run.commit_title) == 200
    assert len(run.tests_failing) == MAX_FAILING_TESTS
    assert all(len(name) <= MAX_TEST_NAME for name in run.tests_failing)
    # Stored one a line, read back as a tuple.
    again = Run(**{**_fields(run), "tests_failing": "\n".join(run.tests_failing)})
    assert again.tests_failing == run.tests_failing


def json_time():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime(2026, 1, 1, tzinfo=UTC)


def _fields(run: Run) -> dict[str, object]:
    from dataclasses import fields

    return {f.name: getattr(run, f.name) for f in fields(run)}

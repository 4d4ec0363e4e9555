"""Failing tests from GitHub check-run annotations (`tests: true`), parsed from GitHub's own
examples (tests/fixtures/github/api/check-run*.json, see SOURCES.md) and variants of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ciwatch.errors import BadPayload
from ciwatch.providers import github

FIXTURES = Path(__file__).parent.parent / "fixtures" / "github" / "api"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_bytes())


def page(*runs: dict[str, Any]) -> bytes:
    return json.dumps({"total_count": len(runs), "check_runs": list(runs)}).encode()


def check_run(id_: int, conclusion: str | None, annotations: int) -> dict[str, Any]:
    run = load("check-run.json")
    run["id"], run["conclusion"] = id_, conclusion
    run["output"]["annotations_count"] = annotations
    return run


def test_the_documented_check_run_list_has_no_failing_run() -> None:
    # GitHub's `check-run-paginated` example: one `conclusion: neutral` check run with two
    # annotations: nothing to read.
    body = (FIXTURES / "check-runs-list.json").read_bytes()
    assert github.parse_failing_check_runs(body, [], 3) == []
    listed = load("check-runs-list.json")
    assert listed["check_runs"] == [load("check-run.json")]  # the list holds the example run
    listed["check_runs"][0]["conclusion"] = "failure"
    assert github.parse_failing_check_runs(json.dumps(listed).encode(), [], 3) == [4]


def test_failing_check_runs_with_annotations_own_jobs_first_and_bounded() -> None:
    body = page(
        check_run(1, "failure", 4),  # a test reporter's check run
        check_run(2, "success", 3),  # green: not read
        check_run(3, "failure", 0),  # failed without annotations: not read
        check_run(4, "timed_out", 1),  # one of the run's jobs
        check_run(5, "failure", 2),
        check_run(6, None, 2),  # still running
    )
    assert github.parse_failing_check_runs(body, [4], 10) == [4, 1, 5]
    assert github.parse_failing_check_runs(body, [4], 2) == [4, 1]


def test_the_documented_warning_annotation_names_no_test() -> None:
    assert (
        github.parse_failing_annotations((FIXTURES / "check-run-annotations.json").read_bytes())
        == []
    )


def test_failure_annotations_name_tests_title_else_place_runner_exit_skipped() -> None:
    documented = load("check-run-annotations.json")[0]
    notes = [
        {**documented, "annotation_level": "failure", "title": "parser::empty_input"},
        {**documented, "annotation_level": "failure", "title": "parser::empty_input"},  # again
        {**documented, "annotation_level": "failure", "title": "", "path": "src/lib.rs"},
        {
            **documented,
            "annotation_level": "failure",
            "title": None,
            "path": None,
            "message": "boom\nstack",
        },
        {**documented, "annotation_level": "notice", "title": "a notice"},
        {
            **documented,
            "annotation_level": "failure",
            "title": "",
            "path": ".github",
            "start_line": 1,
            "message": "Process completed with exit code 1.",
        },
    ]
    names = github.parse_failing_annotations(json.dumps(notes).encode())
    assert names == ["parser::empty_input", "src/lib.rs:2", "boom"]


def _no_file(level: str, message: str) -> dict[str, object]:
    """An annotation made from an error with no file, as the API gives it (SOURCES.md)."""
    return {
        **load("check-run-annotations.json")[0],
        "path": ".github",
        "start_line": 1,
        "end_line": 1,
        "start_column": None,
        "end_column": None,
        "annotation_level": level,
        "title": ".github#L1",
        "message": message,
        "raw_details": None,
    }


def test_github_default_title_and_no_file_path_name_nothing() -> None:
    documented = load("check-run-annotations.json")[0]
    notes = [
        _no_file("failure", "Process completed with exit code 2."),  # the runner's own
        _no_file("warning", "Node.js 16 actions are deprecated."),
        _no_file("failure", "Error: 3 snapshots are obsolete\nmore"),  # a bare `::error::`
        {  # a file-located error without a title: GitHub's title is the location
            **documented,
            "annotation_level": "failure",
            "path": "tests/test_parser.py",
            "start_line": 570,
            "title": "tests/test_parser.py#L570",
            "message": "test_empty_input\n\nAssertionError",
        },
        {  # a multi-line location is no name either
            **documented,
            "annotation_level": "failure",
            "path": "src/lib.rs",
            "start_line": 7,
            "title": "src/lib.rs#L7-L9",
            "message": "unused",
        },
        {  # a real title that happens to hold a `#L`
            **documented,
            "annotation_level": "failure",
            "path": "src/lib.rs",
            "title": "lib::anchors#L1 parse",
        },
    ]
    names = github.parse_failing_annotations(json.dumps(notes).encode())
    assert names == [
        "Error: 3 snapshots are obsolete",
        "tests/test_parser.py:570",
        "src/lib.rs:7",
        "lib::anchors#L1 parse",
    ]


def test_a_wrong_annotations_body_is_a_bad_payload() -> None:
    with pytest.raises(BadPayload):
        github.parse_failing_annotations(b'{"message": "Not Found"}')
    with pytest.raises(BadPayload):
        github.parse_failing_check_runs(b"[]", [], 3)

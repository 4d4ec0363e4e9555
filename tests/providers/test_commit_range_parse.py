"""The commits since green (issue 13): the vendors' compare answers parsed into a bounded
`CommitRange` (newest first), its JSON shape read back forgivingly, and the people it names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ciwatch.alerting.people import People
from ciwatch.config.models import PersonSettings
from ciwatch.domain import MAX_RANGE_COMMITS, CommitRange, RangeCommit
from ciwatch.providers import azure, github, gitlab, jenkins
from ciwatch.serialize import commit_range_from_dict, commit_range_to_dict
from factories import make_run

FIXTURES = Path(__file__).parent.parent / "fixtures"


def _commit(n: int) -> dict[str, Any]:
    return {
        "id": f"{n:040x}",
        "title": f"Change {n}",
        "author_name": f"Dev {n}",
        "author_email": f"dev{n}@example.com",
    }


def test_gitlab_compare_fixture() -> None:
    found = gitlab.parse_compare((FIXTURES / "gitlab/api/compare.json").read_bytes(), 20)
    assert found == CommitRange(
        (
            RangeCommit(
                "12d65c8dd2b2676fa3ac47d955accc085a37a9c1",
                title="JS fix",
                author="Example User",
                email="user@example.com",
            ),
        ),
        total=1,
    )
    assert not found.cut


def test_gitlab_lists_oldest_first_and_the_range_keeps_the_newest() -> None:
    body = json.dumps({"commits": [_commit(n) for n in range(1, 31)]})
    found = gitlab.parse_compare(body, MAX_RANGE_COMMITS)
    assert [c.title for c in found.commits[:2]] == ["Change 30", "Change 29"]
    assert len(found.commits) == MAX_RANGE_COMMITS
    assert (found.total, found.cut) == (30, True)


def test_github_compare_fixture_newest_first_with_logins() -> None:
    page = github.parse_comparison((FIXTURES / "github/api/compare.json").read_bytes())
    found = github.comparison_range([page], 20)
    assert found.total == 2 and not found.cut
    newest, oldest = found.commits
    # `author: null`: a git identity without a GitHub account; the title is the first line.
    assert newest == RangeCommit(
        "0328041d1152db8ae77652d1618a02e57f745f17",
        title="Update the topic",
        author="Mona Lisa",
        email="mona@example.com",
    )
    assert (oldest.login, oldest.author, oldest.title) == (
        "octocat",
        "Monalisa Octocat",
        "Fix all the bugs",
    )


def test_github_long_range_is_read_from_its_last_page() -> None:
    def page(numbers: range) -> github.GithubComparison:
        commits = [
            {"sha": f"{n:040x}", "commit": {"message": f"Change {n}"}, "author": None}
            for n in numbers
        ]
        return github.parse_comparison(json.dumps({"total_commits": 230, "commits": commits}))

    found = github.comparison_range([page(range(1, 101)), page(range(201, 231))], 20)
    assert [c.title for c in found.commits[:2]] == ["Change 230", "Change 229"]
    assert (len(found.commits), found.total, found.cut) == (20, 230, True)


def test_strings_are_bounded_and_cleaned() -> None:
    commit = RangeCommit("a" * 100, title="x\x00y\n" + "z" * 500, author=" ", login="l" * 300)
    assert len(commit.sha) == 64 and commit.title is not None and len(commit.title) == 200
    assert "\x00" not in commit.title and commit.author is None
    assert commit.login is not None and len(commit.login) == 100


def test_json_round_trip_and_bad_values() -> None:
    found = CommitRange(
        (RangeCommit("b" * 40, "Fix", "Ada", "ada@example.com", "ada"), RangeCommit("c" * 40)),
        total=5,
    )
    assert found.cut  # 5 counted, 2 kept
    assert commit_range_from_dict(json.loads(json.dumps(commit_range_to_dict(found)))) == found
    for bad in (None, "x", [], {"commits": "no"}, {"total": 3}):
        assert commit_range_from_dict(bad) is None
    odd = commit_range_from_dict(
        {"total": "many", "cut": "yes", "commits": [{"sha": 7}, {"sha": "d" * 40, "title": 3}, 1]}
    )
    assert odd == CommitRange((RangeCommit("d" * 40),), total=1)


def test_people_of_the_range_follow_the_breaking_commits() -> None:
    people = People(
        [
            PersonSettings(names=["ada@example.com"], slack="UADA"),
            PersonSettings(names=["bob"], slack="UBOB"),
            PersonSettings(names=["Carol C"], slack="UCAROL"),
        ]
    )
    run = make_run(author="ci-bot", commit_email="ADA@example.com")
    found = CommitRange(
        (
            RangeCommit("1" * 40, author="Ada", email="ada@example.com"),
            RangeCommit("2" * 40, author="Carol C"),
            RangeCommit("3" * 40, login="bob", author="Bob B"),
            RangeCommit("4" * 40, author="nobody"),
        ),
        total=4,
    )
    assert [p.name for p in people.of(run, found)] == ["ada@example.com", "Carol C", "bob"]
    assert [p.name for p in people.of(run)] == ["ada@example.com"]


def test_jenkins_builds_after_green_up_to_the_failing_one() -> None:
    # The vendor's build (#10, one git change) inside a job's `builds`, with older builds whose
    # change sets repeat a commit and one before the green build (#7) that must not count.
    build = json.loads((FIXTURES / "jenkins/api/build-git-commit.json").read_bytes())

    def older(number: int, *shas: str) -> dict[str, Any]:
        items = [{"commitId": sha, "msg": f"Change {sha}", "authorEmail": "x@y.z"} for sha in shas]
        return {"number": number, "changeSets": [{"items": items}]}

    job = {"builds": [build, older(9, "b" * 40, "c" * 40), older(8, "c" * 40), older(7, "0" * 40)]}
    found = jenkins.parse_build_range(json.dumps(job), 7, 10, asked=50, limit=20)
    assert [c.sha for c in found.commits] == [
        "d27afa0805201322d846d7defc29b82c88d9b5ce",
        "c" * 40,
        "b" * 40,
    ]
    newest = found.commits[0]
    assert (newest.title, newest.author, newest.email) == (
        "Commit comment",
        "username",
        "username@localhost",
    )
    assert (found.total, found.cut) == (3, False)
    # A green build further back than the builds read: the range is cut.
    far = jenkins.parse_build_range(json.dumps(job), 2, 10, asked=4, limit=20)
    assert far.cut and far.total == 4


def test_azure_changes_between_builds() -> None:
    body = (FIXTURES / "azure/api/changes-between.json").read_bytes()
    found = azure.parse_changes(body, green=None, limit=20)
    newest, other = found.commits
    assert newest == RangeCommit(
        "7c3e9f1d2b4a6c8e0f1a3b5c7d9e1f2a4b6c8d0e",
        title="Break the parser",
        author="Carol Chen",
        email="carol@fabrikam.com",
    )
    # A `uniqueName` that is no e-mail address is not taken for one.
    assert (other.author, other.email) == ("Build Service", None)
    assert (found.total, found.cut) == (2, False)
    # Should Azure list the green build's own commit, it is not part of the range.
    without = azure.parse_changes(body, green=other.sha, limit=1)
    assert [c.sha for c in without.commits] == [newest.sha] and without.total == 1

"""A Jenkins notification of a failed build carries no commit title or author (the
Notification plugin's `build.scm` has only `url`, `branch` and `commit`): after the 202 the
build is read from the Jenkins API (its time, its cause) and then, because it failed, its
`changeSets` and `culprits`, so the stored run names the breaking commit as a polled one does.
Against a real loopback Jenkins answering the vendor's sample, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from ciwatch.domain import Status

from .payloads import fixture, jenkins_notification
from .test_jenkins_ingest import JenkinsApi, Server, jenkins_api, notify, polled, stored

__all__ = ["jenkins_api", "polled"]  # the fixtures this module uses


def failed_build() -> dict[str, Any]:
    """Build 18 as the API answers it: failed, with the git plugin's change set and culprits of
    the vendor's sample (`tests/fixtures/jenkins/api/build-git-commit.json`)."""
    sample = json.loads(fixture("jenkins/api/build-git-commit.json"))
    return {
        "number": 18,
        "url": "http://localhost:8080/job/asgard/18/",
        "building": False,
        "result": "FAILURE",
        "timestamp": 1769944800123,
        "duration": 90_000,
        "actions": [{"causes": [{"userId": "alice"}]}],
        "changeSets": sample["changeSets"],
        "culprits": sample["culprits"],
    }


async def test_a_failed_build_notified_by_webhook_gets_its_commit_from_the_api(
    polled: Server, jenkins_api: tuple[str, JenkinsApi]
) -> None:
    _, api = jenkins_api
    build = failed_build()
    api.builds["18"] = build
    item = build["changeSets"][0]["items"][0]
    body = jenkins_notification(18, phase="FINALIZED", status="FAILURE")
    await notify(polled, body, "f1")
    before = await stored(polled)
    assert before.status is Status.FAILED
    assert before.commit_title is None  # the notification itself names no commit
    api.release.set()
    await polled.settle()
    after = await stored(polled)
    assert after.status is Status.FAILED
    assert after.commit_title == item["msg"].splitlines()[0]
    assert after.commit_author == item["author"]["fullName"]
    assert after.commit_email == item["authorEmail"]
    # The build read (its cause), then the commit read: two requests for build 18, no more.
    assert api.asked == ["18", "18"]

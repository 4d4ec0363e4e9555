"""The simulated GitHub API: runs, jobs, attempts, ETags and 304s, quotas, auth, repos."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ciwatch.clock import FakeClock

from .harness import GITHUB_TOKEN, Harness, serve, small_scenario

RUNS = "repos/octo-org/web/actions/runs"


def next_link(header: str | None) -> str | None:
    found = re.search(r'<([^>]+)>; rel="next"', header or "")
    return found.group(1) if found else None


async def test_runs_list_pages_through_link_headers(basic: Harness) -> None:
    basic.clock.advance(3600)  # octo-org/api gets a run every 2 minutes
    path = "repos/octo-org/api/actions/runs"
    reply = await basic.github(path, per_page=7)
    total = reply.json()["total_count"]
    ids: list[int] = []
    while True:
        assert reply.status == 200
        ids += [run["id"] for run in reply.json()["workflow_runs"]]
        url = next_link(reply.headers.get("Link"))
        if url is None:
            break
        reply = await basic.get(url, {"Authorization": f"Bearer {GITHUB_TOKEN}"})
    assert len(ids) == len(set(ids)) == total > 30
    assert ids == sorted(ids, reverse=True)
    numbers = (await basic.github(path, per_page=100)).json()["workflow_runs"]
    assert [r["run_number"] for r in numbers] == sorted(
        (r["run_number"] for r in numbers), reverse=True
    )


async def test_per_page_default_and_cap(basic: Harness) -> None:
    basic.clock.advance(4 * 3600)
    default = (await basic.github("repos/octo-org/api/actions/runs")).json()
    assert len(default["workflow_runs"]) == 30
    capped = (await basic.github("repos/octo-org/api/actions/runs", per_page=1000)).json()
    assert len(capped["workflow_runs"]) == min(100, capped["total_count"])


async def test_etag_gives_304_without_body_and_without_cost(basic: Harness) -> None:
    first = await basic.github(RUNS)
    etag = first.headers["ETag"]
    assert re.fullmatch(r'"[0-9a-f]+"', etag)
    remaining = int(first.headers["x-ratelimit-remaining"])
    again = await basic.github(RUNS, etag=etag)
    assert (again.status, again.body) == (304, b"")
    assert again.headers["ETag"] == etag
    assert int(again.headers["x-ratelimit-remaining"]) == remaining
    weak = await basic.github(RUNS, etag=f'"other", W/{etag}')
    assert weak.status == 304
    assert basic.sim.stats.not_modified == 2
    assert basic.sim.stats.not_modified_by_provider["github"] == 2
    after = await basic.github(RUNS)  # a full answer costs one
    assert int(after.headers["x-ratelimit-remaining"]) == remaining - 1
    assert after.headers["ETag"] == etag  # nothing changed: same body, same ETag


async def test_etag_changes_exactly_when_a_run_changes(basic: Harness) -> None:
    etag = (await basic.github(RUNS)).headers["ETag"]
    basic.clock.advance(20)  # nothing happens in octo-org/web before 30 s
    assert (await basic.github(RUNS, etag=etag)).status == 304
    basic.clock.advance(15)  # a run was created at 30 s
    changed = await basic.github(RUNS, etag=etag)
    assert changed.status == 200
    newest = changed.json()["workflow_runs"][0]
    assert (newest["status"], newest["created_at"]) == ("queued", "2026-01-01T00:00:30Z")
    assert newest["display_title"] == "Fix login" and newest["actor"]["login"] == "alice"
    etag = changed.headers["ETag"]
    basic.clock.advance(10)  # it started at 40 s
    started = await basic.github(RUNS, etag=etag)
    assert started.status == 200
    run = started.json()["workflow_runs"][0]
    assert (run["status"], run["updated_at"]) == ("in_progress", "2026-01-01T00:00:40Z")
    basic.clock.advance(120)
    done = (await basic.github(RUNS)).json()["workflow_runs"][0]
    assert (done["status"], done["conclusion"]) == ("completed", "success")
    assert done["updated_at"] == "2026-01-01T00:02:40Z"


async def test_rate_limit_headers(basic: Harness) -> None:
    one = await basic.github(RUNS)
    two = await basic.github("repos/octo-org/web")
    assert one.headers["x-ratelimit-limit"] == "100"
    assert one.headers["x-ratelimit-resource"] == "core"
    assert (one.headers["x-ratelimit-remaining"], one.headers["x-ratelimit-used"]) == ("99", "1")
    assert (two.headers["x-ratelimit-remaining"], two.headers["x-ratelimit-used"]) == ("98", "2")
    reset = int(one.headers["x-ratelimit-reset"])
    assert reset == int(basic.clock.now().timestamp()) + 3600  # windows start on the hour
    quota = (await basic.github("rate_limit")).json()
    assert quota["resources"]["core"]["remaining"] == 98  # /rate_limit is free


@pytest.fixture
async def tiny(clock: FakeClock) -> AsyncIterator[Harness]:
    run = {"at": 0, "queue": 10, "duration": 50, "result": "failed",
           "rerun": {"after": 60, "queue": 5, "duration": 30, "result": "success"}}  # fmt: skip
    scenario = small_scenario([{"provider": "github", "path": "o/r", "runs": [run]}])
    async for harness in serve(scenario, clock):
        yield harness


async def test_a_used_up_quota_is_403_with_remaining_0(clock: FakeClock) -> None:
    scenario = small_scenario(
        [{"provider": "github", "path": "o/r"}],
        rate_limits={"github": {"limit": 3, "window": "1h"}},
    )
    async for tiny in serve(scenario, clock):
        assert [(await tiny.github("repos/o/r")).status for _ in range(3)] == [200] * 3
        refused = await tiny.github("repos/o/r")
        assert refused.status == 403
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert "rate limit exceeded" in refused.json()["message"]
        reset = int(refused.headers["x-ratelimit-reset"])
        tiny.clock.advance(reset - tiny.clock.now().timestamp())
        assert (await tiny.github("repos/o/r")).status == 200


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}]
)
async def test_bad_credentials_are_401(basic: Harness, headers: dict[str, str]) -> None:
    reply = await basic.get(f"{basic.running.github_url}/{RUNS}", headers)
    assert reply.status == 401
    assert reply.json()["message"] == "Bad credentials"


async def test_token_scheme_is_accepted(basic: Harness) -> None:
    reply = await basic.get(
        f"{basic.running.github_url}/{RUNS}", {"Authorization": "token ghp_basic_example"}
    )
    assert reply.status == 200


async def test_a_rerun_is_attempt_2_of_the_same_run(tiny: Harness) -> None:
    async def run() -> Any:
        return (await tiny.github("repos/o/r/actions/runs")).json()["workflow_runs"][0]

    tiny.clock.advance(70)
    failed = await run()
    assert (failed["status"], failed["conclusion"], failed["run_attempt"]) == (
        "completed",
        "failure",
        1,
    )
    assert failed["previous_attempt_url"] is None
    tiny.clock.advance(50)  # attempt 2 queued at 120 s, started at 125 s, done at 155 s
    queued = await run()
    assert (queued["id"], queued["run_attempt"], queued["status"]) == (failed["id"], 2, "queued")
    assert queued["conclusion"] is None
    assert queued["updated_at"] > failed["updated_at"]
    assert queued["run_started_at"] == "2026-01-01T00:02:00Z"
    assert queued["previous_attempt_url"].endswith(f"/actions/runs/{failed['id']}/attempts/1")
    tiny.clock.advance(10)
    assert (await run())["status"] == "in_progress"
    tiny.clock.advance(30)
    done = await run()
    assert (done["status"], done["conclusion"], done["run_attempt"]) == ("completed", "success", 2)
    first = (await tiny.github(f"repos/o/r/actions/runs/{failed['id']}/attempts/1")).json()
    assert (first["run_attempt"], first["conclusion"]) == (1, "failure")
    assert first["updated_at"] == failed["updated_at"]
    assert (await tiny.github(f"repos/o/r/actions/runs/{failed['id']}/attempts/3")).status == 404


async def test_jobs_of_the_latest_attempt_or_all(basic: Harness) -> None:
    runs = (await basic.github(RUNS, status="completed")).json()["workflow_runs"]
    rerun = next(r for r in runs if r["run_attempt"] == 2)
    latest = (await basic.github(f"{RUNS}/{rerun['id']}/jobs")).json()
    assert latest["total_count"] == 2
    assert {(j["name"], j["conclusion"], j["run_attempt"]) for j in latest["jobs"]} == {
        ("build", "success", 2),
        ("test", "success", 2),
    }
    every = (await basic.github(f"{RUNS}/{rerun['id']}/jobs", filter="all")).json()
    assert every["total_count"] == 4
    first = (await basic.github(f"{RUNS}/{rerun['id']}/attempts/1/jobs")).json()
    assert [j["conclusion"] for j in first["jobs"]] == ["success", "failure"]
    steps = first["jobs"][1]["steps"]
    assert [s["name"] for s in steps] == ["Set up job", "Run test", "Complete job"]
    assert [s["conclusion"] for s in steps] == ["success", "failure", "success"]


async def test_a_long_queued_run_and_its_jobs(basic: Harness) -> None:
    runs = (await basic.github(RUNS, status="queued")).json()["workflow_runs"]
    assert [r["created_at"] for r in runs] == ["2025-12-31T23:40:00Z"]
    jobs = (await basic.github(f"{RUNS}/{runs[0]['id']}/jobs")).json()["jobs"]
    assert {(j["status"], j["runner_id"], j["completed_at"]) for j in jobs} == {
        ("queued", None, None)
    }
    assert all(j["steps"] == [] for j in jobs)


async def test_filters(basic: Harness) -> None:
    failures = (await basic.github(RUNS, status="success")).json()
    assert failures["total_count"] == 2  # the re-run ended well, and the first run
    assert (await basic.github(RUNS, branch="nope")).json() == {
        "total_count": 0,
        "workflow_runs": [],
    }
    assert (await basic.github(RUNS, event="push")).json()["total_count"] == 3
    assert (await basic.github(RUNS, status="bogus")).status == 422


async def test_unknown_repo_and_run_are_404(basic: Harness) -> None:
    assert (await basic.github("repos/octo-org/nothing/actions/runs")).status == 404
    missing = await basic.github(f"{RUNS}/12345")
    assert (missing.status, missing.json()["message"]) == (404, "Not Found")


async def test_org_and_user_repos_are_paginated(basic: Harness) -> None:
    first = await basic.github("orgs/octo-org/repos", per_page=1)
    names = [r["full_name"] for r in first.json()]
    second = await basic.get(
        next_link(first.headers.get("Link")) or "", {"Authorization": f"Bearer {GITHUB_TOKEN}"}
    )
    names += [r["full_name"] for r in second.json()]
    assert names == ["octo-org/web", "octo-org/api"]
    assert next_link(second.headers.get("Link")) is None
    assert (await basic.github("users/octo-org/repos")).json()[0]["default_branch"] == "main"
    assert (await basic.github("orgs/nobody/repos")).status == 404

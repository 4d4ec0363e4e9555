"""The simulated GitLab API: lookups, pagination, incremental lists, auth, quotas, timelines."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ciwatch.clock import FakeClock
from ciwatch.timeutil import parse_time

from .harness import Harness, serve, small_scenario


def links(header: str) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', header)}


async def test_project_by_id_and_by_encoded_path(basic: Harness) -> None:
    by_id = await basic.gitlab("projects/101")
    by_path = await basic.gitlab("projects/platform%2Fbackend%2Fapi")
    assert by_id.status == by_path.status == 200
    assert by_id.json() == by_path.json()
    project = by_id.json()
    assert project["path_with_namespace"] == "platform/backend/api"
    assert project["default_branch"] == "main"
    assert project["namespace"]["full_path"] == "platform/backend"


async def test_unknown_things_are_404_with_gitlab_messages(basic: Harness) -> None:
    missing = await basic.gitlab("projects/nobody%2Fnothing")
    assert (missing.status, missing.json()) == (404, {"message": "404 Project Not Found"})
    assert (await basic.gitlab("projects/9999/pipelines")).status == 404
    other = (await basic.gitlab("projects/platform%2Ffrontend%2Fweb/pipelines")).json()[0]["id"]
    wrong = await basic.gitlab(f"projects/101/pipelines/{other}")
    assert (wrong.status, wrong.json()) == (404, {"message": "404 Not found"})
    group = await basic.gitlab("groups/nothing/projects")
    assert (group.status, group.json()) == (404, {"message": "404 Group Not Found"})


@pytest.mark.parametrize(
    "headers",
    [{}, {"PRIVATE-TOKEN": "wrong"}, {"Authorization": "Bearer wrong"}, {"Authorization": "x"}],
)
async def test_requests_without_a_valid_token_are_401(
    basic: Harness, headers: dict[str, str]
) -> None:
    reply = await basic.get(f"{basic.running.gitlab_url}/api/v4/projects/101", headers)
    assert (reply.status, reply.json()) == (401, {"message": "401 Unauthorized"})


async def test_bearer_token_works_too(basic: Harness) -> None:
    headers = {"Authorization": "Bearer glpat-basic-example"}
    reply = await basic.get(f"{basic.running.gitlab_url}/api/v4/projects/101", headers)
    assert reply.status == 200


async def test_rate_limit_headers_count_down(basic: Harness) -> None:
    first = await basic.gitlab("projects/101")
    second = await basic.gitlab("projects/101/pipelines")
    assert first.headers["RateLimit-Limit"] == "600"
    assert int(first.headers["RateLimit-Remaining"]) - 1 == int(
        second.headers["RateLimit-Remaining"]
    )
    assert int(second.headers["RateLimit-Observed"]) == 2
    assert int(first.headers["RateLimit-Reset"]) > basic.clock.now().timestamp()
    assert first.headers["RateLimit-ResetTime"].endswith("GMT")


@pytest.fixture
async def tiny(clock: FakeClock) -> AsyncIterator[Harness]:
    run = {
        "at": 0,
        "queue": 0,
        "duration": 60,
        "result": "failed",
        "rerun": {"after": 60, "duration": 60, "result": "success"},
    }
    scenario = small_scenario(
        [{"provider": "gitlab", "path": "g/p", "runs": [run]}],
        rate_limits={"gitlab": {"limit": 20, "window": "1m"}},
    )
    async for harness in serve(scenario, clock):
        yield harness


async def test_a_used_up_quota_answers_429_until_the_window_ends(tiny: Harness) -> None:
    assert {(await tiny.gitlab("projects/1")).status for _ in range(20)} == {200}
    refused = await tiny.gitlab("projects/1")
    assert refused.status == 429
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert int(refused.headers["Retry-After"]) > 0
    tiny.clock.advance(int(refused.headers["Retry-After"]))
    assert (await tiny.gitlab("projects/1")).status == 200


async def walk(h: Harness, path: str, **params: Any) -> tuple[list[int], list[Any]]:
    """Follow X-Next-Page; return the ids and every page's headers."""
    ids: list[int] = []
    pages: list[Any] = []
    page: str | None = "1"
    while page:
        reply = await h.gitlab(path, page=page, **params)
        assert reply.status == 200
        ids += [item["id"] for item in reply.json()]
        pages.append(reply.headers)
        page = reply.headers["X-Next-Page"]
    return ids, pages


async def test_pagination_walk_has_no_gaps_or_duplicates(basic: Harness) -> None:
    basic.clock.advance(3 * 3600)  # the generator adds a run every 10 minutes
    ids, pages = await walk(basic, "projects/101/pipelines", per_page=4)
    total = int(pages[0]["X-Total"])
    assert len(ids) == len(set(ids)) == total > 20
    assert ids == sorted(ids, reverse=True)
    assert int(pages[0]["X-Total-Pages"]) == len(pages) == -(-total // 4)
    assert [p["X-Page"] for p in pages] == [str(n) for n in range(1, len(pages) + 1)]
    assert pages[0]["X-Prev-Page"] == "" and pages[-1]["X-Next-Page"] == ""
    assert {p["X-Per-Page"] for p in pages} == {"4"}
    ascending, _ = await walk(basic, "projects/101/pipelines", per_page=7, sort="asc")
    assert ascending == ids[::-1]


async def test_link_header_leads_through_every_page(basic: Harness) -> None:
    basic.clock.advance(2 * 3600)
    seen: list[int] = []
    reply = await basic.gitlab("projects/101/pipelines", per_page=3)
    first = links(reply.headers["Link"])
    assert set(first) == {"next", "first", "last"}
    while True:
        seen += [item["id"] for item in reply.json()]
        rels = links(reply.headers["Link"])
        if "next" not in rels:
            assert rels["last"] == rels.get("self", rels["last"])
            break
        reply = await basic.get(rels["next"], {"PRIVATE-TOKEN": "glpat-basic-example"})
        assert "prev" in links(reply.headers["Link"])
    assert len(seen) == len(set(seen)) == int(reply.headers["X-Total"])


async def test_per_page_defaults_to_20_and_stops_at_100(basic: Harness) -> None:
    basic.clock.advance(30 * 3600)
    default = await basic.gitlab("projects/101/pipelines")
    assert default.headers["X-Per-Page"] == "20" and len(default.json()) == 20
    most = await basic.gitlab("projects/101/pipelines", per_page=500)
    assert most.headers["X-Per-Page"] == "100"
    assert len(most.json()) == min(100, int(most.headers["X-Total"]))
    assert int(most.headers["X-Total"]) == 50  # the scenario keeps 50 runs
    assert (await basic.gitlab("projects/101/pipelines", per_page="x")).status == 400


async def test_updated_after_returns_exactly_what_changed(basic: Harness) -> None:
    listing = (await basic.gitlab("projects/101/pipelines", order_by="updated_at")).json()
    cursor = listing[0]["updated_at"]
    assert cursor == max(p["updated_at"] for p in listing)
    unchanged = await basic.gitlab(
        "projects/101/pipelines", order_by="updated_at", updated_after=cursor
    )
    assert unchanged.json() == [] and unchanged.headers["X-Total"] == "0"
    basic.clock.advance(90)  # #5 is created at 60 s, starts at 80 s
    changed = (
        await basic.gitlab("projects/101/pipelines", order_by="updated_at", updated_after=cursor)
    ).json()
    everything = (await basic.gitlab("projects/101/pipelines", per_page=100)).json()
    expected = sorted(
        (p for p in everything if parse_time(p["updated_at"]) > parse_time(cursor)),  # type: ignore[operator]
        key=lambda p: p["updated_at"],
        reverse=True,
    )
    assert changed == expected
    assert [p["iid"] for p in changed] == [5]
    assert changed[0]["status"] == "running"


async def test_updated_before_and_filters(basic: Harness) -> None:
    everything = (await basic.gitlab("projects/101/pipelines")).json()
    limit = everything[2]["updated_at"]
    before = (await basic.gitlab("projects/101/pipelines", updated_before=limit)).json()
    assert before and all(p["updated_at"] < limit for p in before)
    develop = (await basic.gitlab("projects/101/pipelines", ref="develop")).json()
    assert {p["ref"] for p in develop} == {"develop"}
    failed = (await basic.gitlab("projects/101/pipelines", status="failed")).json()
    assert failed and {p["status"] for p in failed} == {"failed"}
    finished = (await basic.gitlab("projects/101/pipelines", scope="finished")).json()
    assert {p["status"] for p in finished} <= {"success", "failed", "canceled", "skipped"}
    assert (await basic.gitlab("projects/101/pipelines", updated_after="soon")).status == 400
    assert (await basic.gitlab("projects/101/pipelines", order_by="name")).status == 400


async def test_a_pipeline_goes_pending_running_finished(basic: Harness) -> None:
    async def newest() -> Any:
        listing = (await basic.gitlab("projects/101/pipelines")).json()
        return (await basic.gitlab(f"projects/101/pipelines/{listing[0]['id']}")).json()

    assert (await newest())["iid"] == 4  # #5 does not exist yet
    basic.clock.advance(65)
    pending = await newest()
    assert (pending["iid"], pending["status"], pending["started_at"]) == (5, "pending", None)
    assert pending["updated_at"] == pending["created_at"] == "2026-01-01T00:01:00.000Z"
    basic.clock.advance(20)
    running = await newest()
    assert (running["status"], running["started_at"]) == ("running", "2026-01-01T00:01:20.000Z")
    assert running["updated_at"] == running["started_at"] and running["queued_duration"] == 20
    basic.clock.advance(60)
    assert (await newest())["updated_at"] == running["updated_at"]  # nothing changed
    basic.clock.advance(120)
    done = await newest()
    assert (done["status"], done["duration"]) == ("failed", 120)
    assert done["updated_at"] == done["finished_at"] == "2026-01-01T00:03:20.000Z"


async def test_a_retry_reruns_the_same_pipeline_with_new_jobs(tiny: Harness) -> None:
    async def pipeline() -> Any:
        return (await tiny.gitlab("projects/1/pipelines")).json()[0]

    tiny.clock.advance(90)
    failed = await pipeline()
    assert failed["status"] == "failed"
    pid = failed["id"]
    old_jobs = (await tiny.gitlab(f"projects/1/pipelines/{pid}/jobs")).json()
    assert [j["status"] for j in old_jobs] == ["success", "failed", "skipped"]
    tiny.clock.advance(40)  # the retry starts at 120 s
    again = await pipeline()
    assert (again["id"], again["status"]) == (pid, "running")
    assert again["updated_at"] > failed["updated_at"]
    detail = (await tiny.gitlab(f"projects/1/pipelines/{pid}")).json()
    assert detail["finished_at"] is None
    tiny.clock.advance(70)
    assert (await pipeline())["status"] == "success"
    jobs = (await tiny.gitlab(f"projects/1/pipelines/{pid}/jobs")).json()
    assert [j["status"] for j in jobs] == ["success", "success", "success"]
    assert jobs[0]["id"] == old_jobs[0]["id"]  # kept, not retried
    assert {j["id"] for j in jobs[1:]}.isdisjoint(j["id"] for j in old_jobs)
    everything = (
        await tiny.gitlab(f"projects/1/pipelines/{pid}/jobs", include_retried="true")
    ).json()
    assert len(everything) == 5
    failed_only = (
        await tiny.gitlab(f"projects/1/pipelines/{pid}/jobs", **{"scope[]": "failed"})
    ).json()
    assert failed_only == []


async def test_group_projects_with_and_without_subgroups(basic: Harness) -> None:
    direct = await basic.gitlab("groups/platform/projects")
    assert direct.json() == []
    nested = await basic.gitlab("groups/platform/projects", include_subgroups="true")
    names = [p["path_with_namespace"] for p in nested.json()]
    assert names == ["platform/backend/api", "platform/frontend/web"]
    group_id = nested.json()[0]["namespace"]["parent_id"]
    by_id = await basic.gitlab(f"groups/{group_id}/projects", include_subgroups="true")
    assert by_id.json() == nested.json()
    paged = await basic.gitlab(
        "groups/platform/projects", include_subgroups="true", per_page=1, page=2
    )
    assert [p["path_with_namespace"] for p in paged.json()] == ["platform/frontend/web"]
    assert (paged.headers["X-Total"], paged.headers["X-Prev-Page"]) == ("2", "1")
    sub = await basic.gitlab("groups/platform%2Fbackend/projects")
    assert [p["id"] for p in sub.json()] == [101]

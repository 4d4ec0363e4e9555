"""The JSON API (docs/architecture.md#http-and-dashboard): shapes, keyset pagination, filters, one
run with its jobs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from ciwatch.domain import DISCOVERY, PAUSED_UNTIL, Job, Run, Status, TargetState
from ciwatch.serialize import job_to_dict, ref_state_to_dict, run_to_dict
from ciwatch.store import SqlStore
from ciwatch.timeutil import iso_z
from ciwatch.web.app import create_app
from ciwatch.web.schemas import (
    AlertsAnswer,
    JobModel,
    ProjectsAnswer,
    RunDetail,
    RunModel,
    RunsPage,
    TargetsAnswer,
)
from factories import T0, at, make_run

from .harness import fill, history, make_runtime


async def walk(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    """Every run through /api/v1/runs, following `next` until null."""
    seen: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        query = dict(params, **({"cursor": cursor} if cursor else {}))
        reply = await client.get("/api/v1/runs", params=query)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        RunsPage.model_validate(body)
        seen.extend(body["runs"])
        cursor = body["next"]
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


def test_run_and_job_models_have_the_domain_fields() -> None:
    assert list(RunModel.model_fields) == [f.name for f in dataclasses.fields(Run)]
    assert list(JobModel.model_fields) == [f.name for f in dataclasses.fields(Job)]


async def test_runs_answer_the_serialized_runs_newest_first(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    world = await fill(store)
    reply = await client.get("/api/v1/runs")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert set(body) == {"runs", "next"}
    assert body["next"] is None
    RunsPage.model_validate(body)
    by_id = {(r.source, r.project, r.run_id): r for r in world["runs"]}
    stored = [await store.get_run(key) for key in by_id]
    expected = sorted(
        (run_to_dict(run) for run in stored if run is not None),
        key=lambda r: (r["created_at"], r["run_id"]),
        reverse=True,
    )
    assert body["runs"] == expected
    first = body["runs"][0]
    assert first["run_id"] == "4"
    assert first["created_at"] == "2026-01-05T09:50:00Z"
    assert first["finished_at"] is None


@pytest.mark.parametrize("limit", [1, 3, 7, 500])
async def test_pagination_walk_has_no_gaps_and_no_duplicates(
    client: httpx.AsyncClient, store: SqlStore, limit: int
) -> None:
    runs = history(23)
    # Ties on the creation time (same time, other project / run id) must not lose runs.
    runs += [make_run(project="group/twin", run_id=str(i), created_at=at(100 * i)) for i in (5, 6)]
    runs += [make_run(run_id=f"{i}b", created_at=at(100 * i)) for i in (7, 8)]
    await store.upsert_runs(runs)
    seen = await walk(client, limit=limit)
    keys = [(r["project"], r["run_id"]) for r in seen]
    assert len(keys) == len(set(keys)) == len(runs)
    times = [(r["created_at"], r["run_id"]) for r in seen]
    assert times == sorted(times, reverse=True)


async def test_a_walk_is_not_disturbed_by_new_runs(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await store.upsert_runs(history(10))
    first = (await client.get("/api/v1/runs", params={"limit": 4})).json()
    await store.upsert_runs([make_run(run_id="new", created_at=at(5000))])
    rest: list[dict[str, Any]] = []
    cursor = first["next"]
    while cursor:
        page = (await client.get("/api/v1/runs", params={"limit": 4, "cursor": cursor})).json()
        rest.extend(page["runs"])
        cursor = page["next"]
    ids = [r["run_id"] for r in first["runs"] + rest]
    assert ids == [str(i) for i in range(10, 0, -1)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"source": "gh"}, {"20", "21"}),
        ({"project": "group/app"}, {"1", "2", "3", "4", "10"}),
        ({"project": "group/app", "ref": "main"}, {"1", "2", "3", "4"}),
        ({"ref": "feature/x"}, {"10"}),
        ({"ref": ""}, {"30"}),
        ({"status": "failed"}, {"3", "20"}),
        ({"status": "running"}, {"4"}),
        ({"since": "2026-01-05T09:33:20Z"}, {"3", "4", "21"}),
        ({"since": "2026-01-05T10:33:20+01:00"}, {"3", "4", "21"}),
        ({"since": "2026-01-05T09:33:20"}, {"3", "4", "21"}),
        (
            {"source": "gitlab-main", "status": "success", "since": "2026-01-05T09:10:00Z"},
            {"2", "10", "30"},
        ),
        ({"source": "nope"}, set()),
    ],
)
async def test_runs_filters(
    client: httpx.AsyncClient, store: SqlStore, params: dict[str, str], expected: set[str]
) -> None:
    await fill(store)
    seen = await walk(client, limit=2, **params)
    assert {r["run_id"] for r in seen} == expected


async def test_one_run_with_its_jobs(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    reply = await client.get("/api/v1/runs/gitlab-main/group/app/4")
    assert reply.status_code == 200
    body = reply.json()
    RunDetail.model_validate(body)
    run = await store.get_run(make_run(run_id="4").key)
    assert run is not None
    assert body["run"] == run_to_dict(run)
    jobs = await store.jobs_for(run.key)
    assert body["jobs"] == [job_to_dict(job) for job in jobs]
    assert [j["name"] for j in body["jobs"]] == ["build", "test"]


async def test_one_run_of_a_deeply_nested_project(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await store.upsert_run(make_run(project="a/b/c/d", run_id="77"))
    body = (await client.get("/api/v1/runs/gitlab-main/a/b/c/d/77")).json()
    assert body["run"]["project"] == "a/b/c/d"
    assert body["jobs"] == []


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/runs/gitlab-main/group/app/999",
        "/api/v1/runs/other/group/app/4",
        "/api/v1/runs/gitlab-main/group/4",
    ],
)
async def test_unknown_run_is_404(client: httpx.AsyncClient, store: SqlStore, path: str) -> None:
    await fill(store)
    reply = await client.get(path)
    assert reply.status_code == 404
    body = reply.json()
    assert body["error"] == "run not found"
    assert set(body["detail"]) == {"source", "project", "run_id"}


async def test_projects(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    reply = await client.get("/api/v1/projects")
    body = reply.json()
    ProjectsAnswer.model_validate(body)
    recovery = [p.pop("recovery") for p in body["projects"]]
    assert body == {"projects": [ref_state_to_dict(s) for s in await store.ref_states()]}
    assert all(r is not None and r["window_seconds"] == 14 * 86400 for r in recovery)
    entry = next(p for p in body["projects"] if p["ref"] == "main" and p["source"] == "gitlab-main")
    assert set(entry) | {"recovery"} == {
        "recovery",
        "source",
        "provider",
        "project",
        "ref",
        "status",
        "failing",
        "since",
        "last_run",
    }
    # The colour is the newest decisive run (failed), while the newest run is running: still red.
    assert (entry["status"], entry["failing"]) == ("failed", True)
    assert entry["last_run"]["status"] == "running"
    # Failed then canceled: canceled does not change the colour. A success is not failing.
    colours = {(p["source"], p["project"], p["ref"]): p["failing"] for p in body["projects"]}
    assert colours == {
        ("gh", "octo/repo", "main"): True,
        ("gitlab-main", "group/app", "feature/x"): False,
        ("gitlab-main", "group/app", "main"): True,
        ("gitlab-main", "group/other", ""): False,
    }


async def test_projects_are_encoded_once_per_snapshot(store: SqlStore) -> None:
    """`GET /api/v1/projects` (all refs) comes from the metrics snapshot: requests between two
    refreshes encode once and read nothing; the answer is the one read from the store (the
    paged form); a run written through this process shows in the next request, which reads
    the time to recovery of its ref only."""
    await fill(store)
    runtime = make_runtime(store)
    app = create_app(runtime, metrics_max_age=3600.0)
    bodies = app.state.projects_bodies
    cache = app.state.metrics_cache
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ciwatch.test") as client:
            # Before the first snapshot: read from the store, and the first refresh starts.
            first = (await client.get("/api/v1/projects")).content
            assert bodies.encodes == 0
            await cache.refresh()
            replies = [(await client.get("/api/v1/projects")).content for _ in range(5)]
            assert set(replies) == {first} and bodies.encodes == 1
            assert cache.full_reads == 2 and cache.recovery_reads == {"full": 1}
            paged = (await client.get("/api/v1/projects", params={"limit": 5000})).json()
            assert paged.pop("next") is None
            assert json.loads(replies[0]) == paged
            # Filters are applied to the snapshot, each answer encoded once.
            for _ in range(3):
                failed = await client.get("/api/v1/projects", params={"status": "failed"})
            assert bodies.encodes == 2
            assert failed.json()["projects"] == [
                p for p in paged["projects"] if p["status"] == "failed"
            ]
            # This process's write is in the next answer: one ref read again, not every ref.
            late = make_run(run_id="99", ref="late", created_at=at(5000), finished_at=at(5100))
            await store.upsert_run(late)
            after = (await client.get("/api/v1/projects")).json()["projects"]
            assert [p["last_run"]["run_id"] for p in after if p["ref"] == "late"] == ["99"]
            assert bodies.encodes == 3 and cache.full_reads == 2
            assert cache.recovery_reads == {"full": 1, "partial": 1}
            paged = (await client.get("/api/v1/projects", params={"limit": 5000})).json()
            assert after == paged["projects"]
            # Another window: its own read, kept as well.
            for _ in range(2):
                week = (await client.get("/api/v1/projects", params={"window": "7d"})).json()
            assert cache.recovery_reads == {"full": 2, "partial": 1} and bodies.encodes == 4
            assert {p["recovery"]["window_seconds"] for p in week["projects"]} == {7 * 86400.0}
            # The time to recovery is due again: the kept body is answered while it is read in
            # the background, and the next request encodes once with the new numbers.
            cache.slow_max_age = 0.0
            encoded = bodies.encodes
            assert (await client.get("/api/v1/projects")).json()["projects"] == after
            assert bodies.encodes == encoded
            for _ in range(200):
                if cache.recovery_reads["full"] == 3:
                    break
                await asyncio.sleep(0.01)
            assert (await client.get("/api/v1/projects")).json()["projects"] == after
            assert bodies.encodes == encoded + 1
    finally:
        await cache.aclose()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, 4),
        ({"source": "gh"}, 1),
        ({"project": "group/app"}, 2),
        ({"status": "failed"}, 2),
        ({"status": "success"}, 2),
        ({"ref": "main"}, 2),
        ({"ref": ""}, 1),
        ({"source": "gitlab-main", "status": "success"}, 2),
    ],
)
async def test_projects_filters(
    client: httpx.AsyncClient, store: SqlStore, params: dict[str, str], expected: int
) -> None:
    await fill(store)
    body = (await client.get("/api/v1/projects", params=params)).json()
    assert len(body["projects"]) == expected
    for entry in body["projects"]:
        for name, value in params.items():
            assert entry[name] == value


async def test_targets(client: httpx.AsyncClient, store: SqlStore) -> None:
    await store.save_target_state(
        TargetState("gh", "octo/repo", healthy=False, reason="401: bad token", last_error_at=at(9))
    )
    await store.save_target_state(TargetState("gitlab-main", "group/app", last_success_at=at(5)))
    body = (await client.get("/api/v1/targets")).json()
    TargetsAnswer.model_validate(body)
    assert body["targets"] == [
        {
            "source": "gh",
            "provider": None,
            "project": "octo/repo",
            "kind": "target",
            "healthy": False,
            "reason": "401: bad token",
            "last_polled_at": None,
            "last_success_at": None,
            "last_error_at": "2026-01-05T09:00:09Z",
            "paused_until": None,
        },
        {
            "source": "gitlab-main",
            "provider": None,
            "project": "group/app",
            "kind": "target",
            "healthy": True,
            "reason": None,
            "last_polled_at": None,
            "last_success_at": "2026-01-05T09:00:05Z",
            "last_error_at": None,
            "paused_until": None,
        },
    ]
    unhealthy = (await client.get("/api/v1/targets", params={"healthy": "false"})).json()
    assert [t["project"] for t in unhealthy["targets"]] == ["octo/repo"]
    by_source = (await client.get("/api/v1/targets", params={"source": "gitlab-main"})).json()
    assert [t["project"] for t in by_source["targets"]] == ["group/app"]


async def test_targets_show_a_source_paused_by_a_rate_limit(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    """A pause recorded with the source's discovery (scheduler `_pause`) shows on every row of
    the source while it lasts (the app's clock is T0 + 1 day); an ended one shows as null."""
    now = T0 + timedelta(days=1)
    until = iso_z(now + timedelta(seconds=90))
    ended = iso_z(now - timedelta(seconds=1))
    await store.save_target_state(TargetState("gh", DISCOVERY, extra={PAUSED_UNTIL: until or ""}))
    await store.save_target_state(TargetState("gh", "octo/repo", healthy=False, reason="429"))
    await store.save_target_state(TargetState("gl", DISCOVERY, extra={PAUSED_UNTIL: ended or ""}))
    await store.save_target_state(TargetState("gl", "group/app"))
    body = (await client.get("/api/v1/targets")).json()
    TargetsAnswer.model_validate(body)
    paused = {(t["source"], t["project"]): t["paused_until"] for t in body["targets"]}
    assert paused == {
        ("gh", ""): until,
        ("gh", "octo/repo"): until,
        ("gl", ""): None,
        ("gl", "group/app"): None,
    }


async def test_alerts_are_empty_without_alerts(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/v1/alerts")).json()
    AlertsAnswer.model_validate(body)
    assert body == {"alerts": []}


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz"):
        reply = await client.get(path)
        assert (reply.status_code, reply.json()) == (200, {"status": "ok"})


async def test_openapi_documents_the_shapes(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/openapi.json")).json()
    paths = doc["paths"]
    for path in (
        "/api/v1/runs",
        "/api/v1/runs/{source}/{project}/{run_id}",
        "/api/v1/projects",
        "/api/v1/targets",
        "/api/v1/alerts",
        "/healthz",
        "/readyz",
        "/metrics",
        "/cc.xml",
    ):
        assert path in paths, path
    schemas = doc["components"]["schemas"]
    run = schemas["RunModel"]
    assert set(run["properties"]) == {f.name for f in dataclasses.fields(Run)}
    assert set(run["required"]) == {
        "source",
        "provider",
        "project",
        "run_id",
        "status",
        "updated_at",
    }
    assert run["properties"]["created_at"]["anyOf"][0]["format"] == "date-time"
    status = schemas["Status"]
    assert set(status["enum"]) == {s.value for s in Status}
    runs_ok = paths["/api/v1/runs"]["get"]["responses"]["200"]["content"]["application/json"]
    assert runs_ok["schema"]["$ref"].endswith("/RunsPage")
    for code in ("400", "401", "422", "503"):
        answer = paths["/api/v1/runs"]["get"]["responses"][code]["content"]["application/json"]
        assert answer["schema"]["$ref"].endswith("/ErrorModel")
    alerts_ok = paths["/api/v1/alerts"]["get"]["responses"]["200"]["content"]["application/json"]
    assert alerts_ok["schema"]["$ref"].endswith("/AlertsAnswer")
    assert "ChannelOutcome" in schemas and "SilenceModel" in schemas
    assert doc["components"]["securitySchemes"]["basic"] == {
        "type": "http",
        "scheme": "basic",
        "description": "HTTP basic auth, when server.username and server.password are set.",
    }
    params = {p["name"] for p in paths["/api/v1/runs"]["get"]["parameters"]}
    assert params == {"source", "project", "ref", "status", "since", "limit", "cursor"}


async def test_projects_pages_return_every_ref_exactly_once(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    """`limit`/`cursor` walk the same refs as the one-shot answer, in the same order, each once,
    with odd names (sorting byte-wise on both engines) and refs added to earlier pages meanwhile
    not repeated."""
    names = ["a/b", "a/b-c", "A/z", "a/ü", "z/y", "a/b/c"]
    refs = ["main", "", "release/1.0", "dev", "Main", "é"]
    for n, project in enumerate(names):
        for m, ref in enumerate(refs[: 1 + (n % 4)]):
            await store.upsert_run(make_run(run_id=f"{n}-{m}", project=project, ref=ref))
    everything = (await client.get("/api/v1/projects")).json()
    assert "next" not in everything
    expected = everything["projects"]
    for limit in (1, 2, 3, 7, len(expected), 5000):
        seen: list[dict[str, Any]] = []
        cursor: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor is not None:
                params["cursor"] = cursor
            reply = await client.get("/api/v1/projects", params=params)
            assert reply.status_code == 200
            body = reply.json()
            ProjectsAnswer.model_validate(body)
            assert len(body["projects"]) <= limit
            seen += body["projects"]
            pages += 1
            if pages == 1 and limit == 2:
                # A new ref sorting before the cursor is not served again on later pages.
                await store.upsert_run(make_run(run_id="late", project="A/a", ref="main"))
            cursor = body["next"]
            if cursor is None:
                break
        assert seen == expected, limit
        expected = (await client.get("/api/v1/projects")).json()["projects"]


async def test_projects_page_filters_and_bad_input(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await fill(store)
    body = (await client.get("/api/v1/projects", params={"limit": 1, "source": "gh"})).json()
    assert [p["source"] for p in body["projects"]] == ["gh"] and body["next"] is None
    for params in ({"limit": 0}, {"limit": 5001}, {"limit": "x"}, {"cursor": "!!not a cursor"}):
        reply = await client.get("/api/v1/projects", params=params)
        assert reply.status_code in (400, 422), params
        assert "error" in reply.json()
    # A cursor alone gets the default page size.
    first = (await client.get("/api/v1/projects", params={"limit": 1})).json()
    rest = (await client.get("/api/v1/projects", params={"cursor": first["next"]})).json()
    whole = (await client.get("/api/v1/projects")).json()["projects"]
    assert first["projects"] + rest["projects"] == whole and rest["next"] is None

"""Glob filters with several values through the real app, on both engines: the board `/`, the
wall `/?tv=1`, a project page, `/api/v1/runs`, `/api/v1/projects`, `/api/v1/targets` and
`/cc.xml` all read `source`, `project`, `ref` and `status` by the one rule of
`ciwatch.filters` (fnmatchcase globs; repeated parameters and/or commas)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from ciwatch.domain import Status, TargetState
from ciwatch.filters import MAX_PATTERNS
from ciwatch.store import SqlStore
from factories import at, make_run

# (source, project, ref, status) of each run; one run per ref.
WORLD = [
    ("gl", "platform/api", "main", Status.SUCCESS),
    ("gl", "platform/api", "release/1.0", Status.FAILED),
    ("gl", "platform/web", "release/2.0", Status.SUCCESS),
    ("gl", "platform/web", "feature/x", Status.RUNNING),
    ("gl", "tools/cli", "main", Status.FAILED),
    ("gl", "tools/cli", "", Status.SUCCESS),
    ("gh", "octo/repo", "main", Status.SUCCESS),
    ("gh", "octo/Platform", "main", Status.SUCCESS),  # case-sensitive: not platform/*
    ("gh", "odd,name", "x,y", Status.SUCCESS),
]


async def _fill(store: SqlStore) -> None:
    runs = [
        make_run(
            source=source,
            provider="github" if source == "gh" else "gitlab",
            project=project,
            ref=ref or None,
            status=status,
            run_id=str(n),
            number=n,
            created_at=at(100 * n),
            started_at=at(100 * n + 5),
            finished_at=None if status is Status.RUNNING else at(100 * n + 60),
            updated_at=at(100 * n + 60),
            duration_seconds=None if status is Status.RUNNING else 55.0,
        )
        for n, (source, project, ref, status) in enumerate(WORLD, start=1)
    ]
    await store.upsert_runs(runs)


def _expected(predicate: Any) -> set[tuple[str, str, str]]:
    return {(s, p, r) for s, p, r, status in WORLD if predicate(s, p, r, status)}


async def _runs(client: httpx.AsyncClient, params: Any) -> set[tuple[str, str, str]]:
    reply = await client.get("/api/v1/runs", params=params)
    assert reply.status_code == 200, reply.text
    return {(r["source"], r["project"], r["ref"] or "") for r in reply.json()["runs"]}


async def _projects(client: httpx.AsyncClient, params: Any) -> set[tuple[str, str, str]]:
    reply = await client.get("/api/v1/projects", params=params)
    assert reply.status_code == 200, reply.text
    return {(p["source"], p["project"], p["ref"]) for p in reply.json()["projects"]}


async def _cctray(client: httpx.AsyncClient, params: Any) -> set[str]:
    reply = await client.get("/cc.xml", params=params)
    assert reply.status_code == 200, reply.text
    root = ET.fromstring(reply.content)  # noqa: S314 (our own answer)
    return {project.attrib["name"] for project in root}


def _cc_name(source: str, project: str, ref: str) -> str:
    return f"{source}/{project}:{ref}" if ref else f"{source}/{project}"


CASES: list[tuple[Any, Any]] = [
    ({"project": "platform/*"}, lambda s, p, r, st: p.startswith("platform/")),
    ([("project", "platform/*"), ("project", "tools/*")], lambda s, p, r, st: p[0] in "pt"),
    ({"project": "platform/*,tools/*"}, lambda s, p, r, st: p[0] in "pt"),
    ({"ref": "release/*"}, lambda s, p, r, st: r.startswith("release/")),
    ({"ref": "release/?.0", "project": "platform/web"}, lambda s, p, r, st: r == "release/2.0"),
    ({"ref": "[!mr]*"}, lambda s, p, r, st: r[:1] not in ("m", "r", "")),
    ({"source": "g[h]"}, lambda s, p, r, st: s == "gh"),
    ({"source": "g*", "ref": "main"}, lambda s, p, r, st: r == "main"),
    ({"project": "*[Pp]latform*"}, lambda s, p, r, st: "latform" in p),
    ({"project": "odd[,]name"}, lambda s, p, r, st: p == "odd,name"),
    ({"ref": "x[,]y"}, lambda s, p, r, st: r == "x,y"),
    ({"project": "platform/api"}, lambda s, p, r, st: p == "platform/api"),
    ({"status": "failed,running"}, lambda s, p, r, st: st in (Status.FAILED, Status.RUNNING)),
    (
        [("status", "failed"), ("project", "tools/*")],
        lambda s, p, r, st: st is Status.FAILED and p == "tools/cli",
    ),
    ({"project": "nothing/*"}, lambda s, p, r, st: False),
]


@pytest.mark.parametrize(("params", "predicate"), CASES)
async def test_api_runs_projects_and_cctray_filter_alike(
    client: httpx.AsyncClient, store: SqlStore, params: Any, predicate: Any
) -> None:
    await _fill(store)
    expected = _expected(predicate)
    assert await _runs(client, params) == expected
    assert await _projects(client, params) == expected
    assert await _cctray(client, params) == {_cc_name(*key) for key in expected}


async def test_api_empty_ref_is_runs_without_a_ref(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await _fill(store)
    assert await _runs(client, {"ref": ""}) == {("gl", "tools/cli", "")}
    both = await _runs(client, [("ref", ""), ("ref", "release/1.*")])
    assert both == {("gl", "tools/cli", ""), ("gl", "platform/api", "release/1.0")}


async def test_a_glob_filtered_walk_pages_through_every_match(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await _fill(store)
    seen: list[str] = []
    cursor = None
    for _ in range(20):
        params: dict[str, Any] = {"project": "platform/*,tools/*", "limit": 1}
        if cursor is not None:
            params["cursor"] = cursor
        body = (await client.get("/api/v1/runs", params=params)).json()
        seen += [run["run_id"] for run in body["runs"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == ["6", "5", "4", "3", "2", "1"]


@pytest.mark.parametrize("path", ["/api/v1/runs", "/api/v1/projects", "/cc.xml"])
@pytest.mark.parametrize(
    "params",
    [
        {"project": "a\nb"},
        {"ref": "main\x00"},
        {"source": "x" * 1001},
        [("project", f"p{n}") for n in range(MAX_PATTERNS + 1)],
        {"project": ",".join(f"p{n}" for n in range(MAX_PATTERNS + 1))},
        {"status": "broken"},
    ],
)
async def test_bad_filters_are_refused(
    client: httpx.AsyncClient, store: SqlStore, path: str, params: Any
) -> None:
    await _fill(store)
    reply = await client.get(path, params=params)
    assert reply.status_code in (400, 422), reply.text
    assert "error" in reply.json()


async def test_targets_filter_by_source_glob(client: httpx.AsyncClient, store: SqlStore) -> None:
    for source in ("gl-a", "gl-b", "gh"):
        await store.save_target_state(TargetState(source=source, project="p", healthy=True))
    reply = await client.get("/api/v1/targets", params={"source": "gl-*"})
    assert reply.status_code == 200
    assert [t["source"] for t in reply.json()["targets"]] == ["gl-a", "gl-b"]


@pytest.mark.parametrize("tv", [False, True])
async def test_board_and_wall_take_globs(
    client: httpx.AsyncClient, store: SqlStore, tv: bool
) -> None:
    await _fill(store)
    params: list[tuple[str, str]] = [("project", "platform/*"), ("ref", "release/*,main")]
    if tv:
        params.append(("tv", "1"))
    reply = await client.get("/", params=params)
    assert reply.status_code == 200
    html = reply.text
    board = html if tv else html.split('id="refs-title"', 1)[1].split("</table>", 1)[0]
    shown = {p for _s, p, _r, _st in WORLD if p in board}
    assert shown == {"platform/api", "platform/web"}
    if not tv:
        # The form and links keep every pattern, as one comma-separated value.
        assert 'name="project" value="platform/*"' in html
        assert 'name="ref" value="main,release/*"' in html
        assert "platform/* · main, release/*" in html  # the charts' scope


async def test_board_counts_and_several_statuses(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await _fill(store)
    reply = await client.get("/", params={"status": "failed,running", "source": "gl"})
    assert reply.status_code == 200
    assert "1–3 of 3" in reply.text
    board = reply.text.split('id="refs-title"', 1)[1].split("</table>", 1)[0]
    assert "platform/web" in board and "octo/repo" not in board


async def test_board_refuses_a_bad_filter_with_a_page(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    reply = await client.get("/", params={"ref": "a\x1bb"})
    assert reply.status_code == 400
    assert "text/html" in reply.headers["content-type"]
    assert "control character" in reply.text


async def test_project_page_narrows_to_a_ref_glob(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await _fill(store)
    reply = await client.get("/projects/gl/platform/web", params={"ref": "release/*"})
    assert reply.status_code == 200
    assert "ref release/*" in reply.text
    history = reply.text.split('id="history-title"', 1)[1].split("</form>", 1)[1]
    assert "release/2.0" in history and "feature/x" not in history
    # Time to green is that of the newest ref the glob matches.
    status_of = reply.text.split("Status of", 1)[1][:200]
    assert "release/2.0" in status_of

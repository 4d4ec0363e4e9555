"""`/cc.xml`: a CCTray feed that parses, escapes hostile names, and says the right things."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import httpx
import pytest

from ciwatch.domain import Status
from ciwatch.store import SqlStore
from ciwatch.web.app import create_app
from factories import at, make_run

from .harness import fill, make_runtime


async def projects(client: httpx.AsyncClient, **params: str) -> dict[str, dict[str, str]]:
    reply = await client.get("/cc.xml", params=params)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/xml"
    root = ET.fromstring(reply.content)  # noqa: S314 (our own answer)
    assert root.tag == "Projects"
    found = {}
    for node in root:
        assert node.tag == "Project"
        assert set(node.attrib) == {
            "name",
            "activity",
            "lastBuildStatus",
            "lastBuildLabel",
            "lastBuildTime",
            "webUrl",
        }
        found[node.attrib["name"]] = node.attrib
    return found


async def test_one_project_per_ref(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    found = await projects(client)
    assert list(found) == [
        "gh/octo/repo:main",
        "gitlab-main/group/app:feature/x",
        "gitlab-main/group/app:main",
        "gitlab-main/group/other",
    ]
    main = found["gitlab-main/group/app:main"]
    # Newest run running; the colour comes from run 3, which failed.
    assert main == {
        "name": "gitlab-main/group/app:main",
        "activity": "Building",
        "lastBuildStatus": "Failure",
        "lastBuildLabel": "3",
        "lastBuildTime": "2026-01-05T09:38:20Z",
        "webUrl": "http://ciwatch.test/projects/gitlab-main/group/app",
    }
    feature = found["gitlab-main/group/app:feature/x"]
    assert (feature["activity"], feature["lastBuildStatus"]) == ("Sleeping", "Success")
    # gh: failed then canceled; canceled does not change the colour.
    gh = found["gh/octo/repo:main"]
    assert (gh["activity"], gh["lastBuildStatus"], gh["lastBuildLabel"]) == (
        "Sleeping",
        "Failure",
        "20",
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (Status.QUEUED, ("Building", "Unknown")),
        (Status.RUNNING, ("Building", "Unknown")),
        (Status.MANUAL, ("Sleeping", "Unknown")),
        (Status.CANCELED, ("Sleeping", "Unknown")),
        (Status.SKIPPED, ("Sleeping", "Unknown")),
        (Status.SUCCESS, ("Sleeping", "Success")),
        (Status.FAILED, ("Sleeping", "Failure")),
    ],
)
async def test_a_ref_with_a_single_run(
    client: httpx.AsyncClient, store: SqlStore, status: Status, expected: tuple[str, str]
) -> None:
    await store.upsert_run(make_run(status=status, number=None, run_id="abc"))
    (attrs,) = (await projects(client)).values()
    assert (attrs["activity"], attrs["lastBuildStatus"]) == expected
    assert attrs["lastBuildLabel"] == "abc"  # no number: the run id


async def test_hostile_names_are_escaped(client: httpx.AsyncClient, store: SqlStore) -> None:
    ref = '"><Project name="evil"/><x a=\'&amp;\x01\x1f'
    project = "grp/<script>alert('x')</script>&co"
    await store.upsert_run(make_run(project=project, ref=ref, created_at=at(1)))
    reply = await client.get("/cc.xml")
    assert b"<script>" not in reply.content
    found = await projects(client)
    (name,) = found
    # Everything survives but the control characters XML 1.0 cannot carry.
    assert name == f"gitlab-main/{project}:" + ref.replace("\x01", "").replace("\x1f", "")
    assert found[name]["webUrl"].startswith("http://ciwatch.test/projects/gitlab-main/grp/%3C")


async def test_filters(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    assert list(await projects(client, source="gh")) == ["gh/octo/repo:main"]
    assert list(await projects(client, project="group/other")) == ["gitlab-main/group/other"]
    assert await projects(client, source="nope") == {}


async def test_base_url_from_the_settings(store: SqlStore) -> None:
    await store.upsert_run(make_run())
    app = create_app(make_runtime(store, base_url="https://ci.example.com/watch/"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://internal:8080") as client:
        (attrs,) = (await projects(client)).values()
    assert attrs["webUrl"] == "https://ci.example.com/watch/projects/gitlab-main/group/app"
    await app.state.metrics_cache.aclose()

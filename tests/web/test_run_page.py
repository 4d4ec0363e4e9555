"""The run page `/runs/{source}/{project}/{run_id}` over a real store (both engines): the run's
facts, its jobs grouped by stage with each stage's worst status, the stage bar, links to it
from the board and the project page, a 404 page for a run not stored, and escaping."""

from __future__ import annotations

from datetime import timedelta

import httpx

from ciwatch.domain import Job, Status
from ciwatch.store import SqlStore
from ciwatch.web import dashboard
from factories import at, make_job, make_run

from .test_dashboard import (
    ATTRIBUTE,
    JS_URL,
    NOW,
    SCRIPT,
    client,
    clock,
    elements,
    fill,
    hrefs,
    plain,
    texts,
)

__all__ = ["client", "clock"]  # fixtures


def job(n: int, name: str, stage: str | None, status: Status, **kw: object) -> Job:
    values: dict[str, object] = {
        "run_id": "60",
        "job_id": str(n),
        "name": name,
        "stage": stage,
        "status": status,
        "created_at": at(5 * 3600 + n),
        "started_at": at(5 * 3600 + 60 * n),
        "finished_at": at(5 * 3600 + 60 * n + 30),
        "duration_seconds": 30.0,
        "url": f"https://gitlab.example.com/group/app/-/jobs/{n}",
    }
    values.update(kw)
    return make_job(**values)


def stage_of(html: str, index: int) -> str:
    found = [
        t for tag, a, t in elements(html) if tag == "section" and a.get("id") == f"stage-{index}"
    ]
    assert len(found) == 1
    return found[0]


async def test_run_page(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    await store.upsert_run(
        make_run(
            run_id="60",
            number=60,
            ref="dev",
            status=Status.FAILED,
            provider_status="failed",
            sha="0123456789abcdef0123456789abcdef01234567",
            created_at=at(5 * 3600),
            started_at=at(5 * 3600),
            finished_at=at(5 * 3600 + 600),
            updated_at=at(5 * 3600 + 600),
            duration_seconds=600.0,
            url="https://gitlab.example.com/group/app/-/pipelines/60",
            author="dev60",
        )
    )
    await store.upsert_jobs(
        [
            job(1, "compile", "build", Status.SUCCESS),
            job(2, "unit-tests", "test", Status.FAILED),
            job(3, "lint", "test", Status.SUCCESS),
            job(4, "flaky-e2e", "e2e", Status.FAILED, allow_failure=True),
            job(5, "deploy", "deploy", Status.MANUAL, started_at=None, finished_at=None,
                duration_seconds=None),
            job(6, "cleanup", "post", Status.SKIPPED, started_at=None, finished_at=None,
                duration_seconds=None),
        ]
    )  # fmt: skip
    answer = await client.get("/runs/gitlab-main/group/app/60")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    html = answer.text
    text = plain(html)
    assert "<title>✘ #60 · group/app · ciwatch</title>" in html
    assert "Run #60 ✘ failed gitlab" in text
    assert "Status ✘ failed (failed) Ref dev Commit 0123456789ab Triggered by dev60 · push" in text
    assert "Duration 10m 00s Queued for 10s Run id 60" in text
    assert 'title="0123456789abcdef0123456789abcdef01234567"' in html
    assert '<time datetime="2026-01-05T14:00:00Z"' in html  # created
    assert '<time datetime="2026-01-05T14:10:00Z"' in html  # finished
    assert "https://gitlab.example.com/group/app/-/pipelines/60" in hrefs(html)
    assert "/projects/gitlab-main/group/app?ref=dev" in hrefs(html)
    # One segment per stage, in job order, coloured by the worst job (an allowed failure
    # marks the stage, it does not turn it red; skipped only when every job was skipped).
    segments = [
        a["class"]
        for tag, a, _ in elements(html)
        if tag == "li" and "stage-seg" in a.get("class", "")
    ]
    assert segments == [
        "stage-seg s-success",
        "stage-seg s-failed",
        "stage-seg s-success warned",
        "stage-seg s-manual",
        "stage-seg s-skipped",
    ]
    assert texts(html, "ol", "stage-bar") == ["✔ build ✘ test ✔ e2e ✋ deploy ↷ post"]
    assert [h for h in hrefs(html) if h.startswith("#stage-")] == [
        f"#stage-{n}" for n in range(1, 6)
    ]
    # Jobs grouped by stage, with status, duration and a link each.
    assert stage_of(html, 1).startswith("✔ success build 1 job · 30s")
    test_stage = stage_of(html, 2)
    assert test_stage.startswith("✘ failed test 2 jobs · 1m 30s")
    assert "✘ failed unit-tests 30s" in test_stage
    assert "✔ success lint 30s" in test_stage
    assert "flaky-e2e allowed to fail" in stage_of(html, 3)
    assert "a job allowed to fail failed" in stage_of(html, 3)
    assert "✋ manual deploy —" in stage_of(html, 4)
    assert texts(html, "td", "job-name") == [
        "compile", "unit-tests", "lint", "flaky-e2e allowed to fail", "deploy", "cleanup"
    ]  # fmt: skip
    assert "https://gitlab.example.com/group/app/-/jobs/2" in hrefs(html)
    assert "Jobs 6" in text


async def test_a_run_without_jobs_or_stages(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    html = (await client.get("/runs/gh/octo/web/8")).text
    assert "Run #8 ● running github" in plain(html)
    assert "No jobs stored for this run." in plain(html)
    assert "stage-bar" not in html
    # A running run shows the time so far.
    assert "Duration 18h 00m…" in plain(html)
    # Jobs without a stage (GitHub) form one unnamed stage.
    await store.upsert_jobs(
        [
            make_job(source="gh", project="octo/web", run_id="8", job_id="1", name="build",
                     stage=None, status=Status.RUNNING, finished_at=None, duration_seconds=None,
                     started_at=NOW - timedelta(minutes=3)),
        ]
    )  # fmt: skip
    html = (await client.get("/runs/gh/octo/web/8")).text
    assert texts(html, "ol", "stage-bar") == ["● jobs"]
    assert stage_of(html, 1).startswith("● running (no stage) 1 job")
    assert "● running build 3m 00s…" in stage_of(html, 1)


async def test_board_and_project_page_link_to_runs(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await fill(store)
    index = hrefs((await client.get("/")).text)
    assert "/runs/gitlab-main/group/app/6" in index  # board: last run; recent runs
    assert "/runs/gh/octo/web/8" in index
    project = (await client.get("/projects/gitlab-main/group/app")).text
    runs = [h for h in hrefs(project) if h.startswith("/runs/")]
    assert "/runs/gitlab-main/group/app/6" in runs  # the newest failed run, history
    assert "/runs/gitlab-main/group/app/1" in runs
    assert texts(project, "a", "run-link")[:1] == ["#6"]
    # Without auto-refresh, the link keeps it off.
    off = hrefs((await client.get("/?refresh=0")).text)
    assert "/runs/gitlab-main/group/app/6?refresh=0" in off
    for href in set(runs):
        assert (await client.get(href)).status_code == 200, href


async def test_unknown_run_is_a_404_page(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    for path in (
        "/runs/gitlab-main/group/app/999",
        "/runs/gitlab-main/group/nope/6",
        "/runs/nope/group/app/6",
    ):
        answer = await client.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"].startswith("text/html")
    text = plain((await client.get("/runs/gitlab-main/group/app/999")).text)
    assert "No run “999” of “group/app” in source “gitlab-main”" in text
    assert (await client.get("/runs/gitlab-main")).status_code == 404


async def test_a_project_path_with_many_parts(client: httpx.AsyncClient, store: SqlStore) -> None:
    await store.upsert_run(make_run(project="a/b/c/d", run_id="77", number=77))
    html = (await client.get("/")).text
    assert "/runs/gitlab-main/a/b/c/d/77" in hrefs(html)
    page = await client.get("/runs/gitlab-main/a/b/c/d/77")
    assert page.status_code == 200
    assert "Run #77" in plain(page.text)


async def test_hostile_values_on_the_run_page(client: httpx.AsyncClient, store: SqlStore) -> None:
    project = f"evil/{SCRIPT}"
    await store.upsert_run(
        make_run(
            source="src", project=project, ref=ATTRIBUTE, run_id="1", status=Status.FAILED,
            author=SCRIPT + ATTRIBUTE, workflow=SCRIPT, url=JS_URL, provider_status=SCRIPT,
            sha=SCRIPT, event=ATTRIBUTE,
        )
    )  # fmt: skip
    await store.upsert_jobs(
        [
            make_job(source="src", project=project, run_id="1", job_id="1",
                     name=SCRIPT + ATTRIBUTE, stage=ATTRIBUTE, status=Status.FAILED, url=JS_URL,
                     runner=SCRIPT),
        ]
    )  # fmt: skip
    links = [h for h in hrefs((await client.get("/")).text) if h.startswith("/runs/")]
    assert links and all("<" not in h and '"' not in h for h in links)
    page = await client.get(links[0])
    assert page.status_code == 200
    html = page.text
    assert SCRIPT not in html
    assert ATTRIBUTE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for _, attrs, _ in elements(html):
        for name in ("href", "src", "action"):
            assert not attrs.get(name, "").strip().lower().startswith("javascript:")
        assert not any(name.startswith("on") for name in attrs)
    assert JS_URL in plain(html)


def test_stage_order_is_worst_first() -> None:
    assert dashboard.STAGE_ORDER[0] is Status.FAILED
    assert set(dashboard.STAGE_ORDER) == set(Status)

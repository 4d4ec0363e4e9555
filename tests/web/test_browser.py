"""The dashboard in headless Chromium (Debian's /usr/bin/chromium) against a real uvicorn server:
tables, SVG charts with a size on screen, the project page, wall mode, auto-refresh, no
console errors (the Content-Security-Policy included); screenshots in the test's tmp_path."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.domain import Job, Run, Status, TargetState
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import open_store
from ciwatch.web import dashboard
from factories import T0, make_job, make_run

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
NOW = T0 + timedelta(hours=306)  # 2026-01-18 03:00 UTC: 14 charted days, each with runs
PROJECTS = ["group/app", "group/lib", "octo/web", "platform/api-gateway", "team/mobile"]
# Refs whose last two runs fail: red now.
BROKEN = {("group/lib", "main"), ("platform/api-gateway", "main"), ("team/mobile", "release/2.x")}


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def sample() -> tuple[list[Run], list[Job]]:
    """Two weeks of runs over five projects, two refs each (`BROKEN` red now, the others
    green, octo/web main running again), a ref with a single running run, and the jobs of the
    newest failed run of group/lib."""
    runs: list[Run] = []
    number = 0
    for index, project in enumerate(PROJECTS):
        for ref in ("main", "release/2.x"):
            for step in range(26):
                number += 1
                created = T0 + timedelta(hours=12 * step + index)
                failing = (step + index) % 6 == 0 or ((project, ref) in BROKEN and step >= 24)
                status = Status.FAILED if failing else Status.SUCCESS
                if (project, ref, step) == ("octo/web", "main", 25):
                    status = Status.RUNNING
                duration = 240.0 + 15 * step + 60 * index + (90 if ref == "main" else 0)
                runs.append(
                    make_run(
                        project=project,
                        ref=ref,
                        run_id=str(number),
                        number=number,
                        status=status,
                        created_at=created,
                        started_at=created + timedelta(seconds=20),
                        finished_at=None
                        if status is Status.RUNNING
                        else created + timedelta(seconds=20 + duration),
                        updated_at=created + timedelta(seconds=20 + duration),
                        duration_seconds=None if status is Status.RUNNING else duration,
                        author=("alice", "bob", "carol", "dmitri")[step % 4],
                        url=f"https://gitlab.example.com/{project}/-/pipelines/{number}",
                    )
                )
    started = NOW - timedelta(hours=1)
    runs.append(
        make_run(
            project="octo/web",
            ref="feature/new-ui",
            run_id="9000",
            number=9000,
            status=Status.RUNNING,
            created_at=started,
            started_at=started,
            finished_at=None,
            updated_at=started,
            duration_seconds=None,
            author="erin",
        )
    )
    newest_failed = max(
        (r for r in runs if r.project == "group/lib" and r.status is Status.FAILED),
        key=lambda r: r.created_at or T0,
    )
    jobs = [
        make_job(project="group/lib", run_id=newest_failed.run_id, job_id=str(n), name=name,
                 stage=stage, status=status)
        for n, (name, stage, status) in enumerate(
            [
                ("build", "build", Status.SUCCESS),
                ("unit-tests", "test", Status.FAILED),
                ("integration: postgres", "test", Status.FAILED),
            ]
        )
    ]  # fmt: skip
    return runs, jobs


def build_app(runtime: Runtime) -> FastAPI:
    try:
        from ciwatch.web.app import create_app
    except ImportError:  # pragma: no cover - before the web app module exists
        app = FastAPI()
        app.state.runtime = runtime
        app.include_router(dashboard.router)
        static = Path(dashboard.__file__).parent / "static"
        app.mount("/static", StaticFiles(directory=static), name="static")
        return app
    return create_app(runtime)


@dataclass
class Served:
    url: str
    shots: Path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """uvicorn on 127.0.0.1 (port 0) in a thread with its own event loop, over a SQLite store
    filled with `sample()`; the store is opened and closed on the server's loop."""
    require_chromium()
    database = f"sqlite:///{tmp_path / 'dashboard.db'}"
    runs, jobs = sample()

    async def fill() -> None:
        store = open_store(database)
        try:
            await store.upgrade()
            await store.upsert_runs(runs)
            await store.upsert_jobs(jobs)
            await store.save_target_state(
                TargetState(
                    source="gitlab-main",
                    project="group/archived",
                    healthy=False,
                    reason="404 Not Found: the project is gone or the token cannot see it",
                    last_error_at=NOW - timedelta(minutes=3),
                )
            )
        finally:
            await store.close()

    asyncio.run(fill())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    store = open_store(database)
    runtime = Runtime(Settings(database=database), store, FakeClock(NOW), CollectionMetrics())
    config = uvicorn.Config(
        build_app(runtime), log_level="warning", ws="none", lifespan="on", access_log=False
    )
    server = uvicorn.Server(config)

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            await store.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert server.started, "uvicorn did not start"
        shots = tmp_path / "screenshots"
        shots.mkdir()
        yield Served(f"http://127.0.0.1:{port}", shots)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def browser(served: Served) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def watch_console(page: Any) -> list[str]:
    """Console errors, uncaught exceptions and failed requests of `page` (CSP violations are
    console errors)."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on(
        "response",
        lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    return problems


def assert_visible_svg(page: Any, selector: str, shapes: str, minimum: int) -> None:
    chart = page.locator(selector)
    playwright_api.expect(chart).to_be_visible()
    box = chart.bounding_box()
    assert box is not None and box["width"] > 200 and box["height"] > 60, box
    drawn = chart.locator(shapes)
    assert drawn.count() >= minimum
    for index in range(drawn.count()):
        shape = drawn.nth(index).bounding_box()
        assert shape is not None and shape["width"] > 0 and shape["height"] > 0, (shapes, shape)


def test_dashboard_pages_in_chromium(served: Served, browser: Any) -> None:
    expect = playwright_api.expect
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    problems = watch_console(page)
    page.goto(f"{served.url}/")
    expect(page).to_have_title("✘ 3 failing · ciwatch")
    board = page.locator("table.board tbody tr")
    expect(board).to_have_count(11)
    expect(board.first).to_contain_text("✘ failed")
    expect(page.locator("table.runs tbody tr")).to_have_count(dashboard.RECENT_RUNS)
    expect(page.locator("table.runs tbody tr").first).to_contain_text("● running")
    expect(page.locator(".banner")).to_contain_text("group/archived")
    assert_visible_svg(page, "svg.chart-bars", "rect.bar-value", 14)
    assert_visible_svg(page, "svg.chart-line", "circle", 14)
    line = page.locator("svg.chart-line polyline.line")
    expect(line).to_have_count(1)
    assert (line.bounding_box() or {}).get("width", 0) > 200
    # Numbers are right-aligned in tabular figures.
    cell = page.locator("table.runs td.num").first
    assert cell.evaluate("e => getComputedStyle(e).textAlign") == "right"
    assert "tabular-nums" in cell.evaluate("e => getComputedStyle(e).fontVariantNumeric")
    page.screenshot(path=served.shots / "index.png", full_page=True)

    page.locator("table.board a", has_text="group/lib").first.click()
    page.wait_for_url("**/projects/gitlab-main/group/lib")
    expect(page.locator("h1")).to_have_text("group/lib")
    expect(page.locator(".stat.ttg")).to_contain_text("Red for")
    expect(page.locator("td.job-name")).to_have_text(["unit-tests", "integration: postgres"])
    expect(page.locator("table.runs tbody tr")).to_have_count(dashboard.HISTORY_PAGE)
    # group/lib ran last on 17 Jan: 13 of the 14 days have a bar.
    assert_visible_svg(page, "svg.chart-bars", "rect.bar-value", 13)
    page.screenshot(path=served.shots / "project.png", full_page=True)
    page.locator("a[rel=next]", has_text="Older").click()
    expect(page.locator("table.runs tbody tr")).to_have_count(dashboard.HISTORY_PAGE)
    expect(page.locator("a[rel=prev]", has_text="Newest")).to_be_visible()

    page.set_viewport_size({"width": 1920, "height": 1080})
    page.goto(f"{served.url}/?tv=1")
    tiles = page.locator("li.tile")
    expect(tiles).to_have_count(11)
    expect(page.locator("table")).to_have_count(0)
    for index in range(3):
        expect(tiles.nth(index)).to_have_class("tile s-failed failing")
    expect(tiles.nth(3)).to_have_class("tile s-running moving m-running")
    size = page.locator(".tile-project").first.evaluate("e => getComputedStyle(e).fontSize")
    assert float(size.removesuffix("px")) >= 24
    page.screenshot(path=served.shots / "wall.png", full_page=True)
    assert problems == []


def test_dark_and_narrow_screens(served: Served, browser: Any) -> None:
    page = browser.new_page(viewport={"width": 390, "height": 844}, color_scheme="dark")
    problems = watch_console(page)
    page.goto(f"{served.url}/?refresh=0")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(13, 17, 23)"
    # The page itself never scrolls sideways; wide tables scroll inside their card.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert_visible_svg(page, "svg.chart-bars", "rect.bar-value", 14)
    page.screenshot(path=served.shots / "index-dark-narrow.png", full_page=True)
    page.goto(f"{served.url}/projects/gitlab-main/group/app?refresh=0")
    page.screenshot(path=served.shots / "project-dark-narrow.png", full_page=True)
    assert problems == []


def test_auto_refresh_waits_for_an_idle_page(served: Served, browser: Any) -> None:
    page = browser.new_page()
    page.clock.install()
    page.goto(f"{served.url}/")
    page.evaluate("window.marker = 'first load'")
    # Someone is typing a filter: no reload, however long it takes.
    page.locator("input[name=project]").focus()
    page.clock.run_for(95_000)
    assert page.evaluate("window.marker") == "first load"
    page.locator("input[name=project]").blur()
    with page.expect_event("load"):
        page.clock.run_for(35_000)
    assert page.evaluate("window.marker") is None

    page.goto(f"{served.url}/?refresh=0")
    page.evaluate("window.marker = 'kept'")
    page.clock.run_for(120_000)
    assert page.evaluate("window.marker") == "kept"

"""Layout in headless Chromium (Debian's /usr/bin/chromium) against a real uvicorn server, at a
wall screen (1920×1080) and a phone (390×844): the board, wall, project, run and alerts pages
never scroll sideways; the wall's tiles all fit the screen with 61 and with 101 refs; a wall
filter matching nothing says so; phone tables keep status, project, ref and since. Screenshots
go to the test's tmp_path, and also to $CIWATCH_SCREENSHOTS when set."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.domain import AlertEventKind, Job, Run, Status, TargetState
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import SqlStore, open_store
from factories import make_job, make_run

from .test_browser import ARGS, CHROMIUM, NOW, build_app, require_chromium, sample, watch_console
from .test_dashboard_alerts import fire

playwright_api = pytest.importorskip("playwright.sync_api")

WALL = {"width": 1920, "height": 1080}
PHONE = {"width": 390, "height": 844}
# Read at import: the autouse fixture of tests/conftest.py hides CIWATCH_* from the tests.
SCREENSHOTS = os.environ.get("CIWATCH_SCREENSHOTS")
# sample() has 11 refs in gitlab-main; 50 more there make 61, 40 in another source make 101.
MORE_MAIN = 50
MORE_OTHER = 40
TEAMS = ("payments", "search", "identity", "platform", "data", "mobile", "web", "infra")


def extra_refs() -> list[Run]:
    """Many refs with one run each: a few red, a few running (one past its usual time), some
    with long names, the rest green."""
    runs: list[Run] = []
    for n in range(MORE_MAIN + MORE_OTHER):
        source = "gitlab-main" if n < MORE_MAIN else "gitlab-eu"
        team = TEAMS[n % len(TEAMS)]
        project = f"{team}/service-{n:02d}"
        if n % 17 == 3:
            project = f"{team}/a-rather-long-project-name-for-service-{n:02d}"
        ref = "main" if n % 5 else f"release/2026.{n % 12 + 1:02d}"
        created = NOW - timedelta(hours=2, minutes=n)
        status = Status.FAILED if n % 13 == 5 else Status.SUCCESS
        runs.append(
            make_run(
                source=source,
                project=project,
                ref=ref,
                run_id=str(20000 + 2 * n),
                number=700 + n,
                status=status,
                created_at=created,
                started_at=created,
                finished_at=created + timedelta(minutes=8),
                updated_at=created + timedelta(minutes=8),
                duration_seconds=480.0,
                author=("alice", "bob", "carol")[n % 3],
            )
        )
        if n % 11 == 2:
            # A new run on a green ref, 3 or 12 minutes in (typical 8 minutes).
            started = NOW - timedelta(minutes=3 if n % 2 else 12)
            runs.append(
                make_run(
                    source=source,
                    project=project,
                    ref=ref,
                    run_id=str(20000 + 2 * n + 1),
                    number=800 + n,
                    status=Status.RUNNING,
                    created_at=started,
                    started_at=started,
                    finished_at=None,
                    updated_at=started,
                    duration_seconds=None,
                )
            )
    return runs


def run_jobs(run: Run) -> list[Job]:
    """A pipeline of four stages for `run`: build green, test red (one allowed failure),
    deploy manual, cleanup skipped."""
    plan = [
        ("compile", "build", Status.SUCCESS, False),
        ("docker image", "build", Status.SUCCESS, False),
        ("unit-tests", "test", Status.FAILED, False),
        ("integration: postgres", "test", Status.SUCCESS, False),
        ("e2e (flaky)", "test", Status.FAILED, True),
        ("deploy staging", "deploy", Status.MANUAL, False),
        ("cleanup", "post", Status.SKIPPED, False),
    ]
    start = (run.started_at or NOW) + timedelta(seconds=5)
    jobs = []
    for n, (name, stage, status, allowed) in enumerate(plan):
        ran = status in (Status.SUCCESS, Status.FAILED)
        begin = start + timedelta(seconds=40 * n)
        jobs.append(
            make_job(
                source=run.source,
                project=run.project,
                run_id=run.run_id,
                job_id=str(90 + n),
                name=name,
                stage=stage,
                status=status,
                allow_failure=allowed,
                created_at=start + timedelta(seconds=n),
                started_at=begin if ran else None,
                finished_at=begin + timedelta(seconds=35) if ran else None,
                duration_seconds=35.0 if ran else None,
                url=f"https://gitlab.example.com/{run.project}/-/jobs/{90 + n}",
            )
        )
    return jobs


def retried(runs: list[Run]) -> Job:
    """`unit-tests` passing on group/lib's commit after the failed run's `unit-tests` failed
    (every sample run is on one SHA): a flaky job for the Flaky page, in an older green run of
    release/2.x so that no page showing a ref's newest run changes."""
    older = next(
        r
        for r in runs
        if r.project == "group/lib" and r.ref == "release/2.x" and r.status is Status.SUCCESS
    )
    return make_job(
        project="group/lib",
        run_id=older.run_id,
        job_id="190",
        name="unit-tests",
        stage="test",
        status=Status.SUCCESS,
        finished_at=NOW - timedelta(minutes=10),
        updated_at=NOW - timedelta(minutes=10),
        url="https://gitlab.example.com/group/lib/-/jobs/190",
    )


class Server:
    def __init__(self, url: str, shots: Path, failed_run: Run) -> None:
        self.url = url
        self.shots = shots
        self.failed_run = failed_run

    def run_path(self) -> str:
        run = self.failed_run
        return f"/runs/{run.source}/{run.project}/{run.run_id}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    require_chromium()
    database = f"sqlite:///{tmp_path / 'layout.db'}"
    runs, jobs = sample()
    runs += extra_refs()
    failed = max(
        (r for r in runs if r.project == "group/lib" and r.status is Status.FAILED),
        key=lambda r: r.created_at or NOW,
    )
    jobs = [j for j in jobs if j.run_id != failed.run_id] + run_jobs(failed) + [retried(runs)]

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
            assert isinstance(store, SqlStore)
            await fire(store, NOW - timedelta(hours=2), AlertEventKind.BROKEN, failed, ["slack"])
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
    uv = uvicorn.Server(config)

    async def serve() -> None:
        try:
            await uv.serve(sockets=[sock])
        finally:
            await store.close()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        for _ in range(500):
            if uv.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert uv.started, "uvicorn did not start"
        shots = tmp_path / "screenshots"
        shots.mkdir()
        yield Server(f"http://127.0.0.1:{port}", shots, failed)
    finally:
        uv.should_exit = True
        thread.join(10)
        sock.close()
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            for shot in (tmp_path / "screenshots").glob("*.png"):
                shutil.copy(shot, Path(SCREENSHOTS) / shot.name)


@pytest.fixture
def browser(server: Server) -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield launched
        finally:
            launched.close()


def no_sideways_scroll(page: Any) -> None:
    width, inner = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert width <= inner, (page.url, width, inner)


def tiles_inside(page: Any) -> list[dict[str, float]]:
    """Every tile's box, asserting each lies inside the viewport and the page does not scroll."""
    size = page.viewport_size
    boxes: list[dict[str, float]] = page.evaluate(
        "Array.from(document.querySelectorAll('li.tile')).map(e => {"
        " const r = e.getBoundingClientRect();"
        " return {x: r.left, y: r.top, right: r.right, bottom: r.bottom}; })"
    )
    for box in boxes:
        assert box["x"] >= 0 and box["y"] >= 0, box
        assert box["right"] <= size["width"] and box["bottom"] <= size["height"], box
    height, inner = page.evaluate("[document.scrollingElement.scrollHeight, window.innerHeight]")
    assert height <= inner, (height, inner)
    return boxes


def font_px(page: Any, selector: str) -> float:
    value = page.locator(selector).first.evaluate("e => getComputedStyle(e).fontSize")
    return float(value.removesuffix("px"))


def grid_figures(page: Any) -> str:
    """The wall's chosen grid and text sizes, for the record (pytest -s shows them)."""
    cols, rows, unit = page.eval_on_selector(
        "ul.tiles",
        "e => ['--cols', '--rows', '--u'].map(n => getComputedStyle(e).getPropertyValue(n))",
    )
    return f"{cols} columns × {rows} rows, unit {unit}, project {font_px(page, '.tile-project')}px"


PAGES = [
    ("board", "/?refresh=0"),
    ("wall", "/?tv=1&refresh=0"),
    ("project", "/projects/gitlab-main/group/lib?refresh=0"),
    ("run", None),
    ("alerts", "/alerts?refresh=0"),
    ("flaky", "/flaky?refresh=0"),
]


@pytest.mark.parametrize(("label", "viewport"), [("1920x1080", WALL), ("390x844", PHONE)])
def test_pages_fit_the_screen(server: Server, browser: Any, label: str, viewport: Any) -> None:
    page = browser.new_page(viewport=viewport)
    problems = watch_console(page)
    for name, path in PAGES:
        page.goto(server.url + (path or server.run_path() + "?refresh=0"))
        page.wait_for_load_state("load")
        no_sideways_scroll(page)
        page.screenshot(path=server.shots / f"{name}-{label}.png", full_page=True)
    assert problems == []


def test_wall_fits_61_and_101_refs_at_1920x1080(server: Server, browser: Any) -> None:
    expect = playwright_api.expect
    page = browser.new_page(viewport=WALL)
    problems = watch_console(page)
    page.goto(f"{server.url}/?tv=1&source=gitlab-main&refresh=0")
    expect(page.locator("ul.tiles.fitted")).to_have_count(1)
    expect(page.locator("li.tile")).to_have_count(61)
    expect(page.locator("header.topbar")).to_have_count(0)
    boxes = tiles_inside(page)
    assert len(boxes) == 61
    # Readable from a few metres: the project name stays large.
    assert font_px(page, ".tile-project") >= 20
    # Failing first, then refs with a run going, then the rest.
    classes = page.eval_on_selector_all("li.tile", "els => els.map(e => e.className)")
    ranks = [0 if "failing" in c else 1 if "moving" in c else 2 for c in classes]
    assert ranks == sorted(ranks) and ranks.count(0) >= 4 and ranks.count(1) >= 3
    expect(page.locator("progress.tile-progress").first).to_be_visible()
    page.screenshot(path=server.shots / "wall-61-1920x1080.png")
    print("61 refs at 1920x1080:", grid_figures(page))

    page.goto(f"{server.url}/?tv=1&refresh=0")
    expect(page.locator("li.tile")).to_have_count(101)
    assert len(tiles_inside(page)) == 101
    assert font_px(page, ".tile-project") >= 14
    page.screenshot(path=server.shots / "wall-101-1920x1080.png")
    print("101 refs at 1920x1080:", grid_figures(page))

    # The layout follows the window.
    page.set_viewport_size({"width": 1280, "height": 720})
    last = "document.querySelector('li.tile:last-child').getBoundingClientRect().bottom"
    for _ in range(100):  # wall.js lays out again on the next animation frame
        if page.evaluate(last) <= 720:
            break
        page.wait_for_timeout(50)
    assert len(tiles_inside(page)) == 101
    page.screenshot(path=server.shots / "wall-101-1280x720.png")
    assert problems == []

    dark = browser.new_page(viewport=WALL, color_scheme="dark")
    dark.goto(f"{server.url}/?tv=1&source=gitlab-main&refresh=0")
    expect(dark.locator("ul.tiles.fitted")).to_have_count(1)
    assert len(tiles_inside(dark)) == 61
    dark.screenshot(path=server.shots / "wall-61-dark-1920x1080.png")


def test_wall_says_when_its_filter_matches_nothing(server: Server, browser: Any) -> None:
    expect = playwright_api.expect
    for label, viewport in (("1920x1080", WALL), ("390x844", PHONE)):
        page = browser.new_page(viewport=viewport)
        problems = watch_console(page)
        page.goto(f"{server.url}/?tv=1&source=gitlab-mian&refresh=0")
        expect(page).to_have_title("Nothing matches · ciwatch wall")
        headline = page.locator(".wall-headline")
        expect(headline).to_have_text("∅ Nothing matches this filter")
        expect(page.locator(".wall-filter code")).to_have_text("source=gitlab-mian")
        expect(page.locator("li.tile")).to_have_count(0)
        # Grey, not green: the headline has the neutral colour, not the success one.
        colour = headline.evaluate("e => getComputedStyle(e).color")
        ok = page.evaluate(
            "(() => { const s = document.createElement('span'); s.className = 'tone-good';"
            " document.body.append(s); return getComputedStyle(s).color; })()"
        )
        assert colour != ok
        page.screenshot(path=server.shots / f"wall-nothing-{label}.png")
        no_sideways_scroll(page)
        assert problems == []
        page.close()


def test_phone_tables_keep_status_project_ref_and_since(server: Server, browser: Any) -> None:
    page = browser.new_page(viewport=PHONE)
    page.goto(f"{server.url}/?refresh=0")
    headers = page.eval_on_selector_all(
        "table.board th", "els => els.filter(e => e.offsetParent).map(e => e.textContent.trim())"
    )
    assert headers == ["Status", "Project", "Ref", "Since"]
    row = page.locator("table.board tbody tr").first
    for cell in range(4):
        box = row.locator("td").nth(cell).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    runs = page.eval_on_selector_all(
        "table.runs th", "els => els.filter(e => e.offsetParent).map(e => e.textContent.trim())"
    )
    assert runs == ["Status", "Project", "Ref", "Run", "Created"]
    no_sideways_scroll(page)
    page.goto(f"{server.url}/projects/gitlab-main/group/lib?refresh=0")
    headers = page.eval_on_selector_all(
        "table.board th", "els => els.filter(e => e.offsetParent).map(e => e.textContent.trim())"
    )
    assert headers[:3] == ["Status", "Ref", "Since"]
    no_sideways_scroll(page)


def test_run_page_in_chromium(server: Server, browser: Any) -> None:
    expect = playwright_api.expect
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    problems = watch_console(page)
    page.goto(f"{server.url}/projects/gitlab-main/group/lib?refresh=0")
    page.locator(".card-sub a.run-link").first.click()
    page.wait_for_url(f"**{server.run_path()}?refresh=0")
    segments = page.locator(".stage-bar li")
    expect(segments).to_have_count(4)
    expect(segments).to_have_class(
        [
            "stage-seg s-success",
            "stage-seg s-failed warned",
            "stage-seg s-manual",
            "stage-seg s-skipped",
        ]
    )
    for index in range(4):
        box = segments.nth(index).bounding_box()
        assert box is not None and box["width"] > 100 and box["height"] > 20
    expect(page.locator("section.stage")).to_have_count(4)
    expect(page.locator("td.job-name")).to_have_count(7)
    segments.nth(1).locator("a").click()
    assert page.url.endswith("#stage-2")
    page.goto(f"{server.url}/runs/gitlab-main/group/lib/no-such-run")
    expect(page.locator("h1")).to_contain_text("No run “no-such-run”")
    assert [p for p in problems if "404" not in p] == []


def test_flaky_page_in_chromium(server: Server, browser: Any) -> None:
    """The Flaky page lists group/lib's `unit-tests` (failed, then passed on the same SHA), its
    filter keeps or drops it, and its project link opens the project page."""
    expect = playwright_api.expect
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    problems = watch_console(page)
    page.goto(f"{server.url}/?refresh=0")
    page.locator("a", has_text="Flaky").first.click()
    page.wait_for_url("**/flaky*")
    expect(page).to_have_title("Flaky jobs · ciwatch")
    rows = page.locator("table.flaky tbody tr")
    expect(rows).to_have_count(1)
    cells = rows.first.locator("td")
    expect(cells.nth(0)).to_have_text("unit-tests (test)")
    expect(cells.nth(1)).to_contain_text("group/lib")
    expect(cells.nth(2)).to_have_text("main")  # the ref of the flaky commit's failed attempt
    expect(cells.nth(3)).to_have_text("1")  # flaky runs
    expect(cells.nth(5)).to_have_text("100%")  # 1 of 1 commits
    expect(cells.nth(7).locator("a")).to_have_attribute(
        "href", "https://gitlab.example.com/group/lib/-/jobs/92"
    )
    align = rows.first.locator("td.num").first.evaluate("e => getComputedStyle(e).textAlign")
    assert align == "right"
    page.screenshot(path=server.shots / "flaky.png", full_page=True)

    page.fill("input[name=project]", "group/app")
    page.locator("button", has_text="Apply").click()
    page.wait_for_url("**/flaky?*project=group%2Fapp*")
    expect(page.locator("table.flaky")).to_have_count(0)
    expect(page.locator("a.button", has_text="Reset")).to_be_visible()
    page.locator("a.button", has_text="Reset").click()
    expect(page.locator("table.flaky tbody tr")).to_have_count(1)

    page.locator("table.flaky td a", has_text="group/lib").click()
    page.wait_for_url("**/projects/gitlab-main/group/lib*")
    expect(page.locator("h1")).to_have_text("group/lib")
    assert problems == []

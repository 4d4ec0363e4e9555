"""The HTML dashboard over a real store (both engines): content, order, filters, paging, time to
green, failing jobs, empty states, 404, and escaping of hostile values from CI systems."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.domain import Job, Run, Status, TargetState
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import SqlStore
from ciwatch.web import dashboard
from factories import T0, at, make_job, make_run

NOW = T0 + timedelta(days=1)  # 2026-01-06 09:00 UTC
HOUR = 3600.0
STATIC = Path(dashboard.__file__).parent / "static"


def build_app(runtime: Runtime) -> FastAPI:
    """The service's app when `create_app` is there, else the dashboard router on its own."""
    try:
        from ciwatch.web.app import create_app
    except ImportError:  # pragma: no cover - before the web app module exists
        app = FastAPI()
        app.state.runtime = runtime
        app.include_router(dashboard.router)
        app.mount("/static", StaticFiles(directory=STATIC), name="static")
        return app
    return create_app(runtime)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def client(store: SqlStore, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    runtime = Runtime(Settings(database="sqlite:///unused.db"), store, clock, CollectionMetrics())
    app = build_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash.test") as c:
            yield c


class Elements(HTMLParser):
    """Every element of a page with its attributes and its text content."""

    VOID = frozenset({"meta", "link", "input", "br", "img", "hr", "source", "option"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str], list[str]]] = []
        self.open: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, {k: v or "" for k, v in attrs}, []))
        if tag not in self.VOID:
            self.open.append(len(self.found) - 1)

    def handle_endtag(self, tag: str) -> None:
        for position in range(len(self.open) - 1, -1, -1):
            if self.found[self.open[position]][0] == tag:
                del self.open[position:]
                return

    def handle_data(self, data: str) -> None:
        for index in self.open:
            self.found[index][2].append(data)


def elements(html: str) -> list[tuple[str, dict[str, str], str]]:
    parser = Elements()
    parser.feed(html)
    return [(tag, attrs, " ".join("".join(text).split())) for tag, attrs, text in parser.found]


def texts(html: str, tag: str, css: str) -> list[str]:
    """The text of every `tag` element having the CSS class `css`."""
    return [
        text
        for name, attrs, text in elements(html)
        if name == tag and css in attrs.get("class", "").split()
    ]


def hrefs(html: str) -> list[str]:
    return [attrs["href"] for tag, attrs, _ in elements(html) if tag == "a" and "href" in attrs]


def plain(html: str) -> str:
    """The page as text: tags removed, entities decoded, whitespace collapsed."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def runs_sample() -> list[Run]:
    """group/app main: green, broken, green again (time to green 2h); group/app dev: red;
    group/lib main: green; gh octo/web main: running without a decisive run."""

    def app_run(n: int, status: Status, hour: float, ref: str = "main", **kw: object) -> Run:
        created = at(hour * HOUR)
        return make_run(
            run_id=str(n),
            number=n,
            ref=ref,
            status=status,
            created_at=created,
            started_at=created,
            finished_at=created + timedelta(minutes=10) if status.terminal else None,
            updated_at=created + timedelta(minutes=10),
            duration_seconds=600.0 if status.terminal else None,
            url=f"https://gitlab.example.com/group/app/-/pipelines/{n}",
            author=f"dev{n}",
            **kw,
        )

    return [
        app_run(1, Status.SUCCESS, 0),
        app_run(2, Status.FAILED, 1),
        app_run(3, Status.FAILED, 2),
        app_run(4, Status.SUCCESS, 3),
        app_run(5, Status.SUCCESS, 4),
        app_run(6, Status.FAILED, 5, ref="dev"),
        app_run(7, Status.SUCCESS, 0.5, project="group/lib"),
        app_run(8, Status.RUNNING, 6, source="gh", provider="github", project="octo/web"),
    ]


def jobs_sample() -> list[Job]:
    return [
        make_job(run_id="6", job_id="61", name="compile", status=Status.SUCCESS),
        make_job(run_id="6", job_id="62", name="unit-tests", status=Status.FAILED),
        make_job(
            run_id="6", job_id="63", name="flaky-e2e", status=Status.FAILED, allow_failure=True
        ),
    ]


async def fill(store: SqlStore) -> None:
    await store.upsert_runs(runs_sample())
    await store.upsert_jobs(jobs_sample())


# -- the main page -----------------------------------------------------------------------------


async def test_index_lists_every_ref_failing_first(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await fill(store)
    answer = await client.get("/")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    rows = texts(answer.text, "tr", "ref-row")
    assert [row.split()[1] for row in rows] == ["failed", "running", "success", "success"]
    assert rows[0].startswith("✘ failed group/app gitlab-main dev")
    assert rows[1].startswith("● running octo/web gh main")
    assert "group/app gitlab-main main" in rows[2]
    assert "group/lib gitlab-main main" in rows[3]
    # Since when: relative text, the exact UTC time in the title, ISO in datetime.
    assert '<time datetime="2026-01-05T14:10:00Z" title="2026-01-05 14:10:00 UTC">' in answer.text
    assert "18h 50m ago" in rows[0]
    # The last duration and the last run with its author.
    assert rows[0].endswith("#6 by dev6 10m 00s")
    counts = texts(answer.text, "a", "count")
    assert counts == ["1 ✘ failed", "1 ● running", "2 ✔ success"]


async def test_index_recent_runs_table(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    html = (await client.get("/")).text
    rows = texts(html, "tr", "run-row")
    assert len(rows) == 8
    assert rows[0].startswith("● running octo/web gh main #8 dev8 · push")
    assert rows[1].startswith("✘ failed group/app gitlab-main dev #6 dev6 · push 10m 00s")
    assert "https://gitlab.example.com/group/app/-/pipelines/6" in hrefs(html)
    assert "/projects/gitlab-main/group/app" in hrefs(html)
    assert "/projects/gh/octo/web?ref=main" in hrefs(html)


async def test_index_charts(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    html = (await client.get("/")).text
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart') == 2
    # 14 day slots; one day (5 Jan) had decisive runs: 4 success, 3 failed.
    assert html.count('<g class="bar ') == 14
    assert html.count('class="bar-value"') == 1
    assert "Mon 05 Jan: 4 of 7 succeeded (57%)" in html
    assert "Mon 05 Jan: median 10m over 4 successful runs" in html
    assert "57%" in texts(html, "span", "figure")


async def test_index_filters(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    html = (await client.get("/", params={"status": "failed"})).text
    assert [row.split()[2] for row in texts(html, "tr", "ref-row")] == ["group/app"]
    assert '<option value="failed" selected>' in html
    assert all("failed" in row.split()[1] for row in texts(html, "tr", "run-row"))
    assert "newest 3 of the last 14 days" in plain(html)
    html = (await client.get("/", params={"source": "gh"})).text
    assert [row.split()[2] for row in texts(html, "tr", "ref-row")] == ["octo/web"]
    assert '<option value="gh" selected>gh</option>' in html
    html = (await client.get("/", params={"project": "group/app", "ref": "main"})).text
    assert len(texts(html, "tr", "ref-row")) == 1
    assert len(texts(html, "tr", "run-row")) == 5
    assert 'value="group/app"' in html
    # Empty form fields mean "any".
    html = (await client.get("/", params={"source": "", "project": "", "status": ""})).text
    assert len(texts(html, "tr", "ref-row")) == 4
    html = (await client.get("/", params={"project": "nope"})).text
    assert "No refs match these filters." in plain(html)
    html = (await client.get("/", params={"status": "bogus"})).text
    assert "Unknown status “bogus” ignored." in plain(html)
    assert len(texts(html, "tr", "ref-row")) == 4


async def test_index_pages_the_refs(client: httpx.AsyncClient, store: SqlStore) -> None:
    await store.upsert_runs(
        [make_run(project=f"p/{n:03d}", run_id=str(n), created_at=at(n)) for n in range(60)]
    )
    html = (await client.get("/")).text
    rows = texts(html, "tr", "ref-row")
    assert len(rows) == dashboard.BOARD_PAGE
    assert "1–50 of 60" in plain(html)
    assert "/?page=2" in hrefs(html)
    html = (await client.get("/?page=2")).text
    rows = texts(html, "tr", "ref-row")
    assert [row.split()[2] for row in rows] == [f"p/{n:03d}" for n in range(50, 60)]
    assert "/" in hrefs(html)  # back to page 1
    assert not any("page=3" in href for href in hrefs(html))


async def test_empty_state(client: httpx.AsyncClient) -> None:
    html = (await client.get("/")).text
    assert "No runs yet — check ciwatch status for target health." in plain(html)
    assert "<code>ciwatch status</code>" in html
    assert "<table" not in html
    wall = (await client.get("/?tv=1")).text
    assert "No runs yet — check ciwatch status for target health." in plain(wall)


async def test_unhealthy_targets_banner(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    await store.save_target_state(
        TargetState(
            source="gitlab-main",
            project="group/gone",
            healthy=False,
            reason="404 Not Found: the project was deleted or the token cannot see it",
            last_error_at=at(600),
        )
    )
    await store.save_target_state(TargetState(source="gitlab-main", project="group/app"))
    html = (await client.get("/")).text
    banner = texts(html, "section", "banner")
    assert len(banner) == 1
    assert banner[0].startswith("⚠ 1 unhealthy target gitlab-main · group/gone — 404 Not Found")
    assert "group/app" not in banner[0]


async def test_wall_mode(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    html = (await client.get("/?tv=1")).text
    assert "<table" not in html
    tiles = texts(html, "li", "tile")
    assert [tile.split()[1] for tile in tiles] == ["failed", "running", "success", "success"]
    assert tiles[0] == "✘ failed #6 group/app dev for 18h 50m · dev6"
    assert "✘ 1 failing" in plain(html)
    assert 'class="tile s-failed failing"' in html
    green = (await client.get("/?tv=1&project=group/lib")).text
    assert "All green" in plain(green)
    # A ref running its first run is not green (tests/web/test_wall.py has every headline).
    assert "All green" not in plain((await client.get("/?tv=1&source=gh")).text)


async def test_auto_refresh(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    html = (await client.get("/")).text
    assert '<html lang="en" data-refresh="30">' in html
    assert '<meta http-equiv="refresh" content="30">' in html
    assert '<script src="/static/refresh.js" defer></script>' in html
    assert "/?refresh=0" in hrefs(html)
    off = (await client.get("/?refresh=0&status=failed")).text
    assert '<html lang="en" data-refresh="0">' in off
    assert 'http-equiv="refresh"' not in off
    assert '<input type="hidden" name="refresh" value="0">' in off
    project_links = [h for h in hrefs(off) if h.startswith("/projects/")]
    assert project_links and all("refresh=0" in h for h in project_links)
    script = await client.get("/static/refresh.js")
    assert script.status_code == 200
    assert "data-refresh" in script.text
    css = await client.get("/static/dashboard.css")
    assert css.status_code == 200
    assert "prefers-color-scheme: dark" in css.text


async def test_security_headers(client: httpx.AsyncClient) -> None:
    answer = await client.get("/")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert answer.headers["x-content-type-options"] == "nosniff"


# -- the project page --------------------------------------------------------------------------


async def test_project_page(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    answer = await client.get("/projects/gitlab-main/group/app")
    assert answer.status_code == 200
    html = answer.text
    refs = texts(html, "tr", "ref-row")
    assert [row.split()[:3] for row in refs] == [["✘", "failed", "dev"], ["✔", "success", "main"]]
    assert "18h 50m" in refs[0]  # red for, until now
    # main: broken by #2 (red from 10:10), green again with #4 (at 12:10): 2 hours.
    assert "Time to green, last break 2h 00m" in plain(html)
    assert "green again with #4 (dev4)" in plain(html)
    # The failing jobs of the newest failed run (#6 on dev).
    assert texts(html, "td", "job-name") == ["unit-tests", "flaky-e2e allowed to fail"]
    assert "Newest failed run #6 on dev by dev6" in plain(html)
    assert "https://gitlab.example.com/group/app/-/jobs/5001" in hrefs(html)
    assert len(texts(html, "tr", "run-row")) == 6
    assert html.count('<svg xmlns="http://www.w3.org/2000/svg" class="chart') == 2
    assert "<title>group/app · gitlab-main · ciwatch</title>" in html


async def test_project_page_red_ref(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    html = (await client.get("/projects/gitlab-main/group/app?ref=dev")).text
    text = plain(html)
    assert "Red for 18h 50m" in text
    assert "broken 18h 50m ago by #6 (dev6); not green yet" in text
    assert [r.split()[1] for r in texts(html, "tr", "run-row")] == ["failed"]
    assert "ref-row state-failed failing selected" in html


async def test_project_page_names_the_breaking_commit_and_failing_tests(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await fill(store)
    broken = replace(
        runs_sample()[5],
        commit_title="Parse <empty> input",
        commit_author="Ada Lovelace",
        commit_email="ada@example.com",
        tests_total=120,
        tests_failed=2,
        tests_skipped=3,
        tests_failing=("parser::empty_input", "parser::<script>"),
    )
    await store.upsert_runs([broken])
    html = (await client.get("/projects/gitlab-main/group/app?ref=dev")).text
    text = plain(html)
    assert "breaking commit aaaaaaaaaaaa Parse <empty> input by Ada Lovelace <ada@example.com>" in (
        text
    )
    assert "Commit aaaaaaaaaaaa Parse <empty> input by Ada Lovelace <ada@example.com>" in text
    assert "Tests: 2 tests failed: parser::empty_input, parser::<script> (of 120; 3 skipped)" in (
        text
    )
    assert "<script>" not in html  # escaped, as every CI value


async def test_project_history_pages(
    client: httpx.AsyncClient, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashboard, "HISTORY_PAGE", 4)
    await fill(store)
    html = (await client.get("/projects/gitlab-main/group/app")).text
    assert [r.split()[3] for r in texts(html, "tr", "run-row")] == ["#6", "#5", "#4", "#3"]
    older = [h for h in hrefs(html) if "cursor=" in h]
    assert len(older) == 1
    html = (await client.get(unescape(older[0]))).text
    assert [r.split()[3] for r in texts(html, "tr", "run-row")] == ["#2", "#1"]
    assert not any("cursor=" in h for h in hrefs(html))
    assert "/projects/gitlab-main/group/app" in hrefs(html)  # back to the newest
    bad = await client.get("/projects/gitlab-main/group/app?cursor=not-a-cursor")
    assert bad.status_code == 400
    assert "Bad page link" in bad.text


async def test_project_without_failures(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    html = (await client.get("/projects/gitlab-main/group/lib")).text
    assert "No failed run stored." in plain(html)
    assert "no failed run stored for this ref" in plain(html)
    html = (await client.get("/projects/gh/octo/web")).text
    assert "Status of main ● running" in plain(html)


async def test_unknown_project_is_404(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    answer = await client.get("/projects/gitlab-main/group/nope")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "No project “group/nope” in source “gitlab-main”" in plain(answer.text)
    assert (await client.get("/projects/nope/group/app")).status_code == 404


# -- hostile values ----------------------------------------------------------------------------

SCRIPT = "<script>alert(1)</script>"
ATTRIBUTE = '" onerror="x'
JS_URL = "javascript:alert(1)"


async def test_hostile_values_are_escaped(client: httpx.AsyncClient, store: SqlStore) -> None:
    await store.upsert_runs(
        [
            make_run(
                source="src",
                project=f"evil/{SCRIPT}",
                ref=ATTRIBUTE,
                run_id="1",
                status=Status.FAILED,
                author=SCRIPT + ATTRIBUTE,
                workflow=SCRIPT,
                url=JS_URL,
                provider_status=SCRIPT,
                created_at=at(0),
            )
        ]
    )
    await store.upsert_jobs(
        [
            make_job(
                source="src",
                project=f"evil/{SCRIPT}",
                run_id="1",
                job_id="1",
                name=SCRIPT + ATTRIBUTE,
                stage=ATTRIBUTE,
                status=Status.FAILED,
                url=JS_URL,
            )
        ]
    )
    await store.save_target_state(
        TargetState(source="src", project=SCRIPT, healthy=False, reason=SCRIPT + ATTRIBUTE)
    )
    index = await client.get("/")
    wall = await client.get("/?tv=1")
    links = [h for h in hrefs(index.text) if h.startswith("/projects/")]
    assert links and all("<" not in h and '"' not in h for h in links)
    project = await client.get(links[0])
    assert project.status_code == 200
    filtered = await client.get("/", params={"project": f"evil/{SCRIPT}", "ref": ATTRIBUTE})
    for page in (index, wall, project, filtered):
        html = page.text
        assert SCRIPT not in html
        assert ATTRIBUTE not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "&#34; onerror=&#34;x" in html
        # The javascript: URL may be shown as text, never linked.
        for _, attrs, _ in elements(html):
            for name in ("href", "src", "action"):
                assert not attrs.get(name, "").strip().lower().startswith("javascript:")
            assert not any(name.startswith("on") for name in attrs)
    assert f"evil/{SCRIPT}" in plain(project.text)
    assert SCRIPT + ATTRIBUTE in texts(project.text, "td", "job-name")
    assert JS_URL in plain(index.text)


@pytest.mark.parametrize(
    ("url", "linked"),
    [
        ("https://ci.example.com/run/1", True),
        ("http://ci.example.com/run/1", True),
        ("HTTPS://ci.example.com/run/1", True),
        ("javascript:alert(1)", False),
        (" JavaScript:alert(1)", False),
        ("data:text/html,hi", False),
        ("/relative/path", False),
        ("//evil.example.com/x", False),
        ("https:///nohost", False),
        ("", False),
        (None, False),
    ],
)
def test_only_http_urls_are_links(url: str | None, linked: bool) -> None:
    assert (dashboard.safe_href(url) is not None) is linked


def test_status_icons_match_the_cli() -> None:
    from ciwatch.cli.common import STATUS_STYLE

    assert {status: icon for status, (icon, _) in STATUS_STYLE.items()} == dashboard.STATUS_ICON

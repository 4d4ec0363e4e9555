"""Silences added and expired from the `/alerts` page's forms, through the real app over a real
store (both engines): post/redirect/get, the "Silence…" shortcut of a firing alert, the CSRF
defences (same-origin check and the signed double-submit token), bad input redisplayed with a
4xx and nothing stored, basic auth."""

from __future__ import annotations

import os
import re
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest

from ciwatch.alerting.silences import list_silences, matches
from ciwatch.clock import FakeClock
from ciwatch.domain import AlertEventKind
from ciwatch.store import SqlStore, open_store
from ciwatch.store.alerting import add_silence
from ciwatch.web import csrf
from ciwatch.web.app import create_app

from .harness import GOOD, PASSWORD, USER, serve
from .test_dashboard import plain, texts
from .test_dashboard_alerts import HOUR, NOW, client_for, fire, red, runtime_for

BASE = "http://dash.test"
SAME = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
FORM = {
    "project": "group/*",
    "ref": "main",
    "duration": "2h",
    "comment": "database migration",
    "created_by": "ops",
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


def token_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF field on the page"
    return unescape(found.group(1))


async def open_form(client: httpx.AsyncClient) -> str:
    """GET /alerts (which sets the cookie) and the token of its forms."""
    page = await client.get("/alerts")
    assert page.status_code == 200
    return token_of(page.text)


async def post(
    client: httpx.AsyncClient,
    path: str,
    fields: dict[str, str],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(path, data=fields, headers=SAME if headers is None else headers)


async def stored(store: SqlStore) -> list[dict[str, object]]:
    return [
        {"matchers": s.matchers, "ends_at": s.ends_at, "by": s.created_by, "comment": s.comment}
        for s in await list_silences(store, active_at=None)
    ]


async def test_add_a_silence_then_see_it(store: SqlStore, clock: FakeClock) -> None:
    async with client_for(runtime_for(store, clock)) as client:
        token = await open_form(client)
        answer = await post(client, "/alerts/silences", {**FORM, "csrf": token})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/alerts?created=1"
        assert await stored(store) == [
            {
                "matchers": {"project": "group/*", "ref": "main"},
                "ends_at": NOW + 2 * HOUR,
                "by": "ops",
                "comment": "database migration",
            }
        ]
        page = await client.get(answer.headers["location"])
        assert page.status_code == 200
        assert "Silence 1 added." in plain(page.text)
        rows = texts(page.text, "tr", "silence-row")
        assert rows == [
            "1 project=group/* ref=main just now in 2h 00m database migration ops Expire now"
        ]


async def test_an_end_time_instead_of_a_duration(store: SqlStore, clock: FakeClock) -> None:
    async with client_for(runtime_for(store, clock)) as client:
        token = await open_form(client)
        fields = {"source": "gitlab-*", "ends_at": "2026-01-06T15:30", "csrf": token}
        answer = await post(client, "/alerts/silences", fields)
        assert answer.status_code == 303
        [silence] = await stored(store)
        assert silence["matchers"] == {"source": "gitlab-*"}
        assert silence["ends_at"] == NOW.replace(hour=15, minute=30)
        assert silence["by"] is None


async def test_expire_a_silence(store: SqlStore, clock: FakeClock) -> None:
    await add_silence(store, {"ref": "main"}, NOW - HOUR, NOW + HOUR, comment="deploy")
    async with client_for(runtime_for(store, clock)) as client:
        page = await client.get("/alerts")
        assert 'action="/alerts/silences/1/expire"' in page.text
        token = token_of(page.text)
        answer = await post(client, "/alerts/silences/1/expire", {"csrf": token})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/alerts?expired=1"
        assert await list_silences(store, active_at=NOW) == []
        [silence] = await stored(store)
        assert silence["ends_at"] == NOW
        after = await client.get(answer.headers["location"])
        assert "Silence 1 expired." in plain(after.text)
        assert texts(after.text, "tr", "silence-row") == []
        for missing in ("2", "abc", "0", "99999999999999999999"):
            refused = await post(client, f"/alerts/silences/{missing}/expire", {"csrf": token})
            assert refused.status_code == 404, missing
            assert "nothing was changed" in plain(refused.text)


async def test_silence_this_prefills_the_form_for_the_alert(
    store: SqlStore, clock: FakeClock
) -> None:
    run = red(7, NOW - HOUR, project="group/app[1]*", ref="release/*")
    await fire(store, NOW - HOUR, AlertEventKind.BROKEN, run)
    async with client_for(runtime_for(store, clock)) as client:
        page = await client.get("/alerts")
        links = re.findall(r'class="button silence-this" href="([^"]+)"', page.text)
        assert len(links) == 1
        link = unescape(links[0])
        assert link.startswith("/alerts?") and link.endswith("#new-silence")
        assert "refresh=0" in link
        prefilled = await client.get(link.split("#")[0])
        html = prefilled.text
        assert 'name="source" value="gitlab-main"' in html
        assert 'name="project" value="group/app[[]1][*]"' in html
        assert 'name="ref" value="release/[*]"' in html
        assert 'name="duration" value="2h"' in html
        fields = {
            "source": "gitlab-main",
            "project": "group/app[[]1][*]",
            "ref": "release/[*]",
            "duration": "2h",
            "csrf": token_of(html),
        }
        answer = await post(client, "/alerts/silences", fields)
        assert answer.status_code == 303
        [silence] = await list_silences(store, active_at=NOW)
        labels = {"source": run.source, "project": run.project, "ref": run.ref or ""}
        assert matches(silence.matchers, labels)
        # The literal globs match that project only, not its look-alikes.
        assert not matches(silence.matchers, {**labels, "project": "group/app1x"})


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": BASE, "Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Referer": f"{BASE}/alerts"},
        {"Referer": "https://evil.example/page"},
        {},
    ],
    ids=["origin", "null-origin", "fetch-site", "same-site", "referer", "neither"],
)
async def test_cross_origin_posts_are_refused(
    store: SqlStore, clock: FakeClock, headers: dict[str, str]
) -> None:
    await add_silence(store, {"ref": "main"}, NOW - HOUR, NOW + HOUR)
    async with client_for(runtime_for(store, clock)) as client:
        token = await open_form(client)
        added = await post(client, "/alerts/silences", {**FORM, "csrf": token}, headers)
        assert added.status_code == 403
        assert "Refused" in plain(added.text)
        expired = await post(client, "/alerts/silences/1/expire", {"csrf": token}, headers)
        assert expired.status_code == 403
        assert [s["matchers"] for s in await stored(store)] == [{"ref": "main"}]
        assert len(await list_silences(store, active_at=NOW)) == 1


async def test_same_origin_by_referer_or_forwarded_host(store: SqlStore, clock: FakeClock) -> None:
    async with client_for(runtime_for(store, clock)) as client:
        token = await open_form(client)
        fields = {**FORM, "csrf": token}
        by_referer = await post(client, "/alerts/silences", fields, {"Referer": f"{BASE}/alerts"})
        assert by_referer.status_code == 303
        # A proxy that rewrites Host passes the browser's in X-Forwarded-Host.
        proxied = {"Origin": "https://ci.example.com", "X-Forwarded-Host": "ci.example.com"}
        assert (await post(client, "/alerts/silences", fields, proxied)).status_code == 303
        assert len(await stored(store)) == 2


async def test_missing_or_wrong_tokens_are_refused(store: SqlStore, clock: FakeClock) -> None:
    await add_silence(store, {"ref": "main"}, NOW - HOUR, NOW + HOUR)
    async with client_for(runtime_for(store, clock)) as client:
        token = await open_form(client)
        nonce, _, signature = token.partition(".")
        forged = "0" * len(signature)
        other_nonce = ("A" if nonce[0] != "A" else "B") + nonce[1:]
        for bad in ({}, {"csrf": ""}, {"csrf": nonce}, {"csrf": f"{nonce}.{forged}"}):
            assert (await post(client, "/alerts/silences", {**FORM, **bad})).status_code == 403
            assert (await post(client, "/alerts/silences/1/expire", bad)).status_code == 403
        # A nonce other than the cookie's, even signed right, is refused too.
        assert (
            await post(client, "/alerts/silences", {**FORM, "csrf": f"{other_nonce}.{signature}"})
        ).status_code == 403
        # Another server's token (another secret) does not verify here.
        async with client_for(runtime_for(store, clock)) as other:
            foreign = await open_form(other)
            client.cookies.set(csrf.COOKIE, other.cookies[csrf.COOKIE])
            refused = await post(client, "/alerts/silences", {**FORM, "csrf": foreign})
            assert refused.status_code == 403
        # Without the cookie the page's token is refused.
        client.cookies.clear()
        refused = await post(client, "/alerts/silences", {**FORM, "csrf": token})
        assert refused.status_code == 403
        assert "cookie" in plain(refused.text)
        assert [s["matchers"] for s in await stored(store)] == [{"ref": "main"}]
        assert len(await list_silences(store, active_at=NOW)) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"duration": "soon"}, "Duration: "),
        ({"duration": "0s"}, "Duration: the silence must end later."),
        ({"duration": "200000d"}, "Duration: a silence lasts at most 36525 days."),
        ({"duration": "", "ends_at": "2026-01-06T08:00"}, "End time: the silence must end later."),
        ({"duration": "", "ends_at": "tomorrow"}, "End time: "),
        ({"ends_at": "2026-01-06T15:30"}, "Give a duration or an end time (one of them)."),
        ({"duration": ""}, "Give a duration or an end time (one of them)."),
        (
            {"project": "", "ref": ""},
            "Matchers: give at least one matcher.",
        ),
        ({"comment": "a\x00b"}, "Comment: "),
        ({"ref": "ma\nin"}, "Ref: "),
    ],
    ids=[
        "word",
        "zero",
        "too-long",
        "past",
        "bad-time",
        "both",
        "neither",
        "no-matcher",
        "nul",
        "newline",
    ],
)
async def test_bad_input_redisplays_the_form_and_stores_nothing(
    store: SqlStore, clock: FakeClock, fields: dict[str, str], message: str
) -> None:
    async with client_for(runtime_for(store, clock)) as client:
        token = await open_form(client)
        answer = await post(client, "/alerts/silences", {**FORM, **fields, "csrf": token})
        assert answer.status_code == 400
        problem = texts(answer.text, "section", "form-problem")
        assert len(problem) == 1 and message in problem[0], problem
        # The form keeps what was typed, with a fresh token that works.
        assert 'name="comment" value="' in answer.text
        assert token_of(answer.text) == token
        assert await stored(store) == []


async def test_the_form_is_a_urlencoded_body_of_bounded_size(
    store: SqlStore, clock: FakeClock
) -> None:
    async with client_for(runtime_for(store, clock)) as client:
        token = await open_form(client)
        as_json = await client.post("/alerts/silences", json={**FORM, "csrf": token}, headers=SAME)
        assert as_json.status_code == 415
        huge = await post(client, "/alerts/silences", {**FORM, "comment": "x" * 70_000})
        assert huge.status_code == 413
        assert await stored(store) == []


async def test_writes_need_the_same_credentials_as_the_api(
    store: SqlStore, clock: FakeClock
) -> None:
    runtime = runtime_for(store, clock, username=USER, password=PASSWORD)
    async with client_for(runtime) as client:
        page = await client.get("/alerts", headers=GOOD)
        token = token_of(page.text)
        fields = {**FORM, "created_by": "", "csrf": token}
        unauthenticated = await post(client, "/alerts/silences", fields)
        assert unauthenticated.status_code == 401
        assert await stored(store) == []
        answer = await post(client, "/alerts/silences", fields, {**SAME, **GOOD})
        assert answer.status_code == 303
        [silence] = await stored(store)
        assert silence["by"] == USER
        expire = await post(client, "/alerts/silences/1/expire", {"csrf": token})
        assert expire.status_code == 401
        assert len(await list_silences(store, active_at=NOW)) == 1


CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
EVIL = "http://evil.test/"


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


async def test_silence_and_expire_in_chromium(tmp_path: Path) -> None:
    """A person silences a firing alert from its shortcut and expires it again, in a real
    browser against uvicorn (its Origin, Sec-Fetch-Site, cookies and CSP); a form on another
    site posting to the dashboard is refused."""
    _require_chromium()
    async_api = pytest.importorskip("playwright.async_api")
    expect = async_api.expect
    store = open_store(f"sqlite:///{tmp_path / 'silences.db'}")
    try:
        await store.upgrade()
        run = red(3, NOW - HOUR, project="group/app")
        await store.upsert_runs([run])
        await fire(store, NOW - HOUR, AlertEventKind.BROKEN, run)
        app = create_app(runtime_for(store, FakeClock(NOW)), metrics_max_age=0.0)
        async with serve(app) as base, async_api.async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=ARGS
            )
            try:
                page = await browser.new_page(viewport={"width": 1366, "height": 900})
                problems: list[str] = []
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                await page.goto(f"{base}/alerts?refresh=0")
                await page.locator("a.silence-this").click()
                form = page.locator("form.silence-form")
                await expect(form.locator("input[name=project]")).to_have_value("group/app")
                await expect(form.locator("input[name=duration]")).to_have_value("2h")
                await form.locator("input[name=comment]").fill("known breakage, fix in review")
                await form.locator("input[name=created_by]").fill("erin")
                await form.locator("button[type=submit]").click()
                await page.wait_for_url("**/alerts?created=1")
                await expect(page.locator(".done-created")).to_have_text("✔ Silence 1 added.")
                row = page.locator("tr.silence-row")
                await expect(row).to_have_count(1)
                await expect(row).to_contain_text("project=group/app")
                await expect(row).to_contain_text("known breakage, fix in review")
                await page.screenshot(path=tmp_path / "silenced.png", full_page=True)
                await row.locator("button.expire").click()
                await page.wait_for_url("**/alerts?expired=1")
                await expect(page.locator(".done-expired")).to_have_text("✔ Silence 1 expired.")
                await expect(page.locator("tr.silence-row")).to_have_count(0)
                assert problems == []

                # Another site's form, posted from the same browser (which holds the cookie).
                hostile = (
                    f'<form method="post" action="{base}/alerts/silences">'
                    '<input name="project" value="*"><input name="duration" value="30d">'
                    '<button type="submit">win a prize</button></form>'
                )

                async def evil(route: Any) -> None:
                    await route.fulfill(body=hostile, content_type="text/html")

                await page.route(f"{EVIL}**", evil)
                await page.goto(EVIL)
                async with page.expect_response(f"{base}/alerts/silences") as answer:
                    await page.locator("button").click()
                assert (await answer.value).status == 403
                await expect(page.locator("body")).to_contain_text("Refused")
            finally:
                await browser.close()
        # The shortcut's silence, expired; nothing from the other site.
        assert [s.matchers for s in await list_silences(store, active_at=None)] == [
            {"source": "gitlab-main", "project": "group/app", "ref": "main"}
        ]
        assert await list_silences(store, active_at=NOW) == []
    finally:
        await store.close()

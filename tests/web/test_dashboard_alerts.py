"""The dashboard's Alerts page, `/alerts`, over a real store (both engines): firing alerts with
the outcome of their newest notice on each channel (a channel that refused a message shows the
service's error text), history, silences, the empty state and its configuration hint, escaping,
basic auth, the navigation badge. The alert state is written by the real store functions, or by
the real engine and delivery workers talking to local DingTalk and webhook receivers. Last, the
page in headless Chromium."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
import uvicorn
from sqlalchemy import event

from channels.harness import DingTalkRobot, WebhookReceiver
from ciwatch.alerting import AlertEngine, DeliveryWorkers
from ciwatch.alerting.delivery import notice_to_payload
from ciwatch.alerting.rules import AlertRow, Decision, applied
from ciwatch.channels import Channel, Notice, build_channel
from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.config.models import AlertSettings, DingTalkChannel, RouteSettings, WebhookChannel
from ciwatch.domain import AlertEventKind, Run, Status
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import SqlStore, Store, open_store
from ciwatch.store.alerting import Change, NewNotice, add_silence, apply_changes, claim, record
from ciwatch.web.app import create_app
from factories import T0, make_run

from .harness import GOOD, PASSWORD, USER
from .test_dashboard import ATTRIBUTE, SCRIPT, elements, hrefs, plain, texts

NOW = T0 + timedelta(days=1)  # 2026-01-06 09:00 UTC
HOUR = timedelta(hours=1)
SEC = timedelta(seconds=1)
WORKER = "dashboard-test"
LEASE = timedelta(minutes=5)
DINGTALK_ERROR = "dingtalk ding: errcode 310000: keywords not in content"
CONFIGURED = AlertSettings(
    channels=[WebhookChannel(name="hook", url="https://hooks.example.com/ci")],
    routes=[RouteSettings(channels=["hook"])],
)


def runtime_for(
    store: Store, clock: FakeClock, alerts: AlertSettings = CONFIGURED, **server: Any
) -> Runtime:
    settings = Settings(database="sqlite:///unused.db", alerts=alerts, server=server)
    return Runtime(settings, store, clock, CollectionMetrics())


@asynccontextmanager
async def client_for(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime, metrics_max_age=0.0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash.test") as client:
            yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(NOW)


@pytest.fixture
async def client(store: SqlStore, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(runtime_for(store, clock)) as made:
        yield made


def red(n: int, when: datetime, **fields: Any) -> Run:
    values: dict[str, Any] = {
        "run_id": str(n),
        "number": n,
        "status": Status.FAILED,
        "provider_status": "failed",
        "created_at": when - timedelta(minutes=10),
        "started_at": when - timedelta(minutes=10),
        "finished_at": when,
        "updated_at": when,
        "duration_seconds": 600.0,
        "url": f"https://gitlab.example.com/group/app/-/pipelines/{n}",
    }
    values.update(fields)
    return make_run(**values)


def green(n: int, when: datetime, **fields: Any) -> Run:
    return red(n, when, status=Status.SUCCESS, provider_status="success", **fields)


async def fire(
    store: SqlStore,
    now: datetime,
    rule: AlertEventKind,
    run: Run,
    channels: Sequence[str] = (),
    *,
    due: dict[str, datetime] | None = None,
) -> AlertRow:
    """Fire an alert about `run` at `now` with a notice for each channel (due now, or at
    `due[channel]`) through the store's compare-and-set; returns the stored row."""
    fingerprint = (rule.value, run.source, run.project, run.ref or "")
    decision = Decision(fingerprint, "fire", None, rule, run, {"run_id": run.run_id})
    return await _apply(store, now, decision, channels, due or {})


async def resolve(
    store: SqlStore, now: datetime, previous: AlertRow, run: Run, channels: Sequence[str] = ()
) -> AlertRow:
    payload = {**previous.payload, "recovered_by": run.run_id}
    decision = Decision(
        previous.fingerprint, "resolve", previous, AlertEventKind.RECOVERED, run, payload
    )
    return await _apply(store, now, decision, channels, {})


async def _apply(
    store: SqlStore,
    now: datetime,
    decision: Decision,
    channels: Sequence[str],
    due: dict[str, datetime],
) -> AlertRow:
    _rule, source, project, ref = decision.fingerprint
    assert decision.notify is not None
    kind = decision.notify.value
    key = ":".join(decision.fingerprint)
    payload = notice_to_payload(Notice(kind, source, project, ref, decision.run, fingerprint=key))
    dedup = f"{key}:{kind}:{now.isoformat()}"
    change = Change(
        decision, [NewNotice(dedup, name, payload, due.get(name, now)) for name in channels]
    )
    assert await apply_changes(store, [change], now) == [change]
    return applied(decision, now)


async def deliver(
    store: SqlStore,
    channel: str,
    now: datetime,
    outcome: str,
    *,
    error: str | None = None,
    retry_at: datetime | None = None,
) -> None:
    """Claim the due rows of `channel` and record `outcome` on them, as a delivery worker does."""
    rows = await claim(store, channel, WORKER, now, lease=LEASE, limit=50)
    assert rows, f"nothing due on {channel}"
    ids = [row.id for row in rows]
    done = await record(store, ids, WORKER, now, outcome=outcome, error=error, retry_at=retry_at)
    assert done == len(ids)


async def seed_firing(store: SqlStore) -> None:
    """group/app main broken 3 h ago by run #2 (stored), with four channels: slack sent, ding
    refused for good, hook retrying, mail not due yet; jenkins folder/job stuck for 30 min on
    a run that is not stored, without any notice (no route)."""
    fired = NOW - 3 * HOUR
    broken = red(2, fired)
    await store.upsert_runs([green(1, fired - HOUR), broken])
    channels = ["slack", "ding", "hook", "mail"]
    await fire(store, fired, AlertEventKind.BROKEN, broken, channels, due={"mail": NOW + 30 * SEC})
    sent = fired + 5 * SEC
    await deliver(store, "slack", sent, "sent")
    await deliver(store, "ding", sent, "failed", error=DINGTALK_ERROR)
    await deliver(store, "hook", sent, "retry", error="timed out", retry_at=NOW + 120 * SEC)
    stuck = make_run(
        source="jenkins",
        provider="jenkins",
        project="folder/job",
        ref=None,
        run_id="folder-job-77",
        number=None,
        status=Status.RUNNING,
        finished_at=None,
        duration_seconds=None,
        url=None,
    )
    await fire(store, NOW - 1800 * SEC, AlertEventKind.STUCK, stuck)


# -- the page ------------------------------------------------------------------------------


async def test_firing_alerts_with_each_channels_outcome(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await seed_firing(store)
    answer = await client.get("/alerts")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    html = answer.text
    rows = texts(html, "tr", "alert-row")
    assert len(rows) == 2
    # Newest first: the stuck alert fired 30 min ago, the broken one 3 h ago.
    assert rows[0].startswith("⏱ stuck folder/job jenkins — 30m 00s ago folder-job-77")
    assert rows[0].endswith("not sent: no route matched, or a silence held it Silence…")
    assert rows[1].startswith("✘ broken group/app gitlab-main main 3h 00m ago #2 3h 00m ago")
    deliveries = texts(html, "li", "delivery")
    assert deliveries == [
        f"✘ ding failed after 1 attempt, 2h 59m ago: {DINGTALK_ERROR}",
        "↻ hook retrying, 1 attempt failed; next in 2m 00s: timed out",
        "⋯ mail pending, due in 30s",
        "✔ slack sent 2h 59m ago",
    ]
    # The failing channel, with the service's error text, above the tables.
    banner = texts(html, "section", "banner")
    assert banner == [
        "✘ 1 channel failing ding refused the newest notice of 1 firing alert (2h 59m ago): "
        f"{DINGTALK_ERROR} A refused notice is not retried: fix the channel's settings "
        "(ciwatch alerts test CHANNEL shows the service's answer)."
    ]
    assert texts(html, "tr", "delivery-failed") == [rows[1]]
    # Since: relative, with the exact UTC time in the title.
    assert '<time datetime="2026-01-06T06:00:00Z" title="2026-01-06 06:00:00 UTC">' in html
    links = hrefs(html)
    assert "/projects/gitlab-main/group/app?ref=main" in links
    assert "/projects/jenkins/folder/job" in links
    assert "https://gitlab.example.com/group/app/-/pipelines/2" in links
    assert texts(html, "span", "figure")[0] == "2"
    assert "<title>✘ 2 firing · Alerts · ciwatch</title>" in html
    assert "No alerts firing" not in plain(html)
    assert "alerts-hint" not in html  # channels and routes are configured


async def test_history_of_resolved_alerts(client: httpx.AsyncClient, store: SqlStore) -> None:
    app_red = red(2, NOW - 10 * HOUR)
    lib_red = red(5, NOW - 6 * HOUR, project="group/lib")
    await store.upsert_runs([app_red, lib_red])
    app = await fire(store, NOW - 10 * HOUR, AlertEventKind.BROKEN, app_red, ["slack"])
    lib = await fire(store, NOW - 6 * HOUR, AlertEventKind.BROKEN, lib_red, ["slack"])
    await deliver(store, "slack", NOW - 6 * HOUR, "sent")
    await resolve(store, NOW - 8 * HOUR, app, green(3, NOW - 8 * HOUR), ["slack"])
    await resolve(store, NOW - 1 * HOUR, lib, green(6, NOW - HOUR, project="group/lib"), ["slack"])
    await deliver(store, "slack", NOW - HOUR + 5 * SEC, "sent")
    html = (await client.get("/alerts")).text
    assert "No alerts firing" in plain(html)
    assert texts(html, "section", "banner") == []
    history = [
        text
        for tag, attrs, text in elements(html)
        if tag == "tr" and "alert-row" in attrs.get("class", "") and "History" not in text
    ]
    # Most recently resolved first: fired, resolved, how long it lasted, the run, the notice.
    assert history == [
        "✘ broken group/lib gitlab-main main 6h 00m ago 1h 00m ago 5h 00m #5 "
        "recovered: ✔ slack sent 59m 55s ago",
        "✘ broken group/app gitlab-main main 10h 00m ago 8h 00m ago 2h 00m #2 "
        "recovered: ✔ slack sent 59m 55s ago",
    ]
    assert "2 resolved" in texts(html, "span", "figure")
    assert "<title>Alerts · ciwatch</title>" in html


async def test_the_run_of_an_alert_as_its_notice_carried_it(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    # The run is not stored (pruned, say): the link comes from the notice's copy of it.
    waiting = make_run(
        run_id="88",
        number=88,
        status=Status.QUEUED,
        url="https://gitlab.example.com/group/app/-/pipelines/88",
    )
    await fire(store, NOW - HOUR, AlertEventKind.QUEUED, waiting, ["hook"])
    html = (await client.get("/alerts")).text
    (row,) = texts(html, "tr", "alert-row")
    assert row.startswith("… queued group/app gitlab-main main 1h 00m ago #88 1h 00m ago")
    assert "https://gitlab.example.com/group/app/-/pipelines/88" in hrefs(html)


async def test_silences_in_force(client: httpx.AsyncClient, store: SqlStore) -> None:
    await add_silence(
        store,
        {"project": "group/*", "event": "broken"},
        NOW - HOUR,
        NOW + 2 * HOUR,
        created_by="ops",
        comment="database migration",
    )
    await add_silence(store, {"ref": "old/*"}, NOW - 3 * HOUR, NOW - HOUR, comment="over")
    await add_silence(store, {"ref": "next/*"}, NOW + HOUR, NOW + 3 * HOUR, comment="later")
    html = (await client.get("/alerts")).text
    rows = texts(html, "tr", "silence-row")
    assert rows == [
        "1 event=broken project=group/* 1h 00m ago in 2h 00m database migration ops Expire now"
    ]
    assert '<time datetime="2026-01-06T11:00:00Z" title="2026-01-06 11:00:00 UTC">' in html


async def test_empty_state_and_configuration_hint(store: SqlStore, clock: FakeClock) -> None:
    async with client_for(runtime_for(store, clock, AlertSettings())) as unconfigured:
        html = (await unconfigured.get("/alerts")).text
    assert "No alerts firing" in plain(html)
    assert "No resolved alerts yet." in plain(html)
    assert "No silence in force." in plain(html)
    hint = texts(html, "p", "alerts-hint")
    assert hint == [
        "No alert channels or routes configured: alerts are recorded here, but nobody is "
        "notified. Add them under the alerts: section of the configuration."
    ]
    assert "<code>alerts:</code>" in html
    assert "nav-count" not in html
    routes_only = AlertSettings(channels=CONFIGURED.channels)
    async with client_for(runtime_for(store, clock, routes_only)) as half:
        html = (await half.get("/alerts")).text
    assert texts(html, "p", "alerts-hint")[0].startswith("No alert routes configured")
    async with client_for(runtime_for(store, clock)) as configured:
        html = (await configured.get("/alerts")).text
    assert "No alerts firing" in plain(html)
    assert texts(html, "p", "alerts-hint") == []


async def test_hostile_names_are_escaped(client: httpx.AsyncClient, store: SqlStore) -> None:
    evil = red(
        1,
        NOW - HOUR,
        source="src",
        project=f"evil/{SCRIPT}",
        ref=ATTRIBUTE,
        url="javascript:alert(1)",
    )
    await store.upsert_runs([evil])
    await fire(store, NOW - HOUR, AlertEventKind.BROKEN, evil, [SCRIPT])
    await deliver(store, SCRIPT, NOW - HOUR, "failed", error=SCRIPT + ATTRIBUTE)
    await add_silence(
        store,
        {"project": SCRIPT},
        NOW - HOUR,
        NOW + HOUR,
        created_by=ATTRIBUTE,
        comment=SCRIPT,
    )
    html = (await client.get("/alerts")).text
    assert SCRIPT not in html
    assert ATTRIBUTE not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34; onerror=&#34;x" in html
    for _, attrs, _ in elements(html):
        for name in ("href", "src", "action"):
            assert not attrs.get(name, "").strip().lower().startswith("javascript:")
        assert not any(name.startswith("on") for name in attrs)
    project_links = [h for h in hrefs(html) if h.startswith("/projects/")]
    assert project_links == [
        "/projects/src/evil/%3Cscript%3Ealert%281%29%3C/script%3E?ref=%22+onerror%3D%22x"
    ]
    assert f"{SCRIPT} failed after 1 attempt" in plain(html)
    assert SCRIPT + ATTRIBUTE in texts(html, "span", "d-error")


async def test_needs_credentials_when_configured(store: SqlStore, clock: FakeClock) -> None:
    runtime = runtime_for(store, clock, username=USER, password=PASSWORD)
    async with client_for(runtime) as protected:
        refused = await protected.get("/alerts")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith('Basic realm="ciwatch"')
        wrong = await protected.get("/alerts", headers={"Authorization": "Basic eDp5"})
        assert wrong.status_code == 401
        shown = await protected.get("/alerts", headers=GOOD)
        assert shown.status_code == 200
        assert "No alerts firing" in plain(shown.text)


async def test_security_headers_and_refresh(client: httpx.AsyncClient) -> None:
    answer = await client.get("/alerts")
    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert answer.headers["cache-control"] == "no-store"
    assert '<html lang="en" data-refresh="30">' in answer.text
    assert "/alerts?refresh=0" in hrefs(answer.text)
    off = (await client.get("/alerts?refresh=0")).text
    assert '<html lang="en" data-refresh="0">' in off
    assert "/alerts?refresh=0" in hrefs(off)  # the nav keeps refresh off
    assert ' style="' not in answer.text  # the CSP allows no inline style


class Proxy:
    """Another Store (here a proxy to the SQL one): the page asks the store protocols only, so
    any store that offers them serves it."""

    def __init__(self, inner: SqlStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_another_store_serves_the_page_through_the_protocols(
    store: SqlStore, clock: FakeClock
) -> None:
    await seed_firing(store)
    proxy = Proxy(store)
    assert isinstance(proxy, Store) and not isinstance(proxy, SqlStore)
    async with client_for(runtime_for(cast(Store, proxy), clock)) as other:
        answer = await other.get("/alerts")
    assert answer.status_code == 200
    assert "alert-row" in answer.text
    assert "group/app" in plain(answer.text)
    assert "nav-count" in answer.text


async def test_the_store_down_is_a_503_page(clock: FakeClock) -> None:
    broken = open_store("postgresql://postgres@127.0.0.1:1/ciwatch")  # nothing listens there
    try:
        async with client_for(runtime_for(broken, clock)) as down:
            answer = await down.get("/alerts")
    finally:
        await broken.close()
    assert answer.status_code == 503
    assert "Database unavailable" in plain(answer.text)


# -- the navigation ------------------------------------------------------------------------


async def test_every_page_links_to_alerts_with_the_firing_count(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await seed_firing(store)
    # The wall has no navigation bar; its summary links the firing count instead.
    wall = (await client.get("/?tv=1")).text
    assert texts(wall, "a", "wall-alerts") == ["⚠ 2 alerts firing"]
    for path in ("/", "/projects/gitlab-main/group/app", "/alerts"):
        html = (await client.get(path)).text
        nav = [(a, text) for _, a, text in elements(html) if "nav-alerts" in a.get("class", "")]
        assert len(nav) == 1, path
        attrs, text = nav[0]
        assert attrs["href"] == "/alerts"
        assert text == "Alerts , 2 firing", path
        assert (attrs.get("aria-current") == "page") == (path == "/alerts")
    assert 'title="2 alerts firing"' in html
    missing = (await client.get("/projects/gitlab-main/nothing")).text
    assert 'href="/alerts"' in missing


async def test_no_badge_without_firing_alerts(client: httpx.AsyncClient, store: SqlStore) -> None:
    run = red(2, NOW - 2 * HOUR)
    await store.upsert_runs([run])
    row = await fire(store, NOW - 2 * HOUR, AlertEventKind.BROKEN, run)
    await resolve(store, NOW - HOUR, row, green(3, NOW - HOUR))
    html = (await client.get("/")).text
    assert "nav-count" not in html
    assert 'href="/alerts"' in html


async def test_the_board_reads_alerts_with_one_count(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await seed_firing(store)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(" ".join(statement.split()).lower())

    engine = store._engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert (await client.get("/")).status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    alerting = [s for s in statements if " alerts" in s or " outbox" in s]
    assert len(alerting) == 1, alerting
    assert alerting[0].startswith("select count(*)") and "from alerts" in alerting[0]


# -- the engine and the delivery workers, against local receivers -------------------------


@dataclass
class Rig:
    """The real engine and delivery workers: a DingTalk robot whose token is revoked (it
    refuses every message, for good) and a webhook receiver that takes them."""

    engine: AlertEngine
    workers: DeliveryWorkers
    channels: dict[str, Channel]
    settings: AlertSettings
    robot: DingTalkRobot
    hook: WebhookReceiver

    async def cycle(self) -> None:
        await self.engine.evaluate()
        for _ in range(10):
            if not await self.workers.drain():
                return
        raise AssertionError("the outbox never drained")


@asynccontextmanager
async def rig_for(store: SqlStore, clock: FakeClock) -> AsyncIterator[Rig]:
    robot, hook = DingTalkRobot(), WebhookReceiver()
    await robot.start()
    await hook.start()
    settings = AlertSettings(
        channels=[
            DingTalkChannel(name="ding", url=f"{robot.base}/robot/send?access_token=revoked"),
            WebhookChannel(name="hook", url=hook.url),
        ],
        routes=[RouteSettings(channels=["ding", "hook"])],
        group_wait=timedelta(0),
        # The refusing robot's own `unhealthy` alert is tests/alerting/test_unhealthy.py's.
        unhealthy_after=timedelta(days=1),
    )
    channels = {c.name: build_channel(c) for c in settings.channels}
    try:
        yield Rig(
            AlertEngine(store, settings, clock),
            DeliveryWorkers(store, channels, clock, worker_id=WORKER),
            channels,
            settings,
            robot,
            hook,
        )
    finally:
        for channel in channels.values():
            await channel.close()
        await robot.stop()
        await hook.stop()


async def test_engine_and_delivery_against_real_receivers(
    store: SqlStore, clock: FakeClock
) -> None:
    async with rig_for(store, clock) as rig:
        await store.upsert_runs([green(1, NOW - 3 * HOUR), red(2, NOW - HOUR)])
        await rig.cycle()
        assert len(rig.robot.requests) == 1 and rig.robot.messages == []
        assert [e["event"] for e in rig.hook.events] == ["broken"]
        async with client_for(runtime_for(store, clock, rig.settings)) as client:
            html = (await client.get("/alerts")).text
            rows = texts(html, "tr", "alert-row")
            assert len(rows) == 1
            assert rows[0].startswith("✘ broken group/app gitlab-main main")
            failed, sent = texts(html, "li", "delivery")
            assert failed.startswith("✘ ding failed after 1 attempt")
            assert failed.endswith("errcode 300001: token is not exist")
            assert sent.startswith("✔ hook sent")
            banner = texts(html, "li", "failing-channel")
            assert len(banner) == 1 and "errcode 300001: token is not exist" in banner[0]

            clock.advance(600)
            await store.upsert_runs([green(3, clock.now() - 60 * SEC)])
            await rig.cycle()
            assert [e["event"] for e in rig.hook.events] == ["broken", "recovered"]
            html = (await client.get("/alerts")).text
        assert "No alerts firing" in plain(html)
        assert texts(html, "section", "banner") == []
        (resolved,) = texts(html, "tr", "alert-row")
        assert resolved.startswith("✘ broken group/app gitlab-main main")
        assert "recovered: ✘ ding failed after 1 attempt" in resolved
        assert resolved.endswith("✔ hook sent just now")


# -- in Chromium ---------------------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} is not installed (apt-get install chromium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """uvicorn on 127.0.0.1 in a thread with its own loop, over a SQLite store where the real
    engine and workers have fired group/app main: the DingTalk robot refused it, the webhook
    took it. Yields the base URL."""
    require_chromium()
    database = f"sqlite:///{tmp_path / 'alerts.db'}"
    clock = FakeClock(NOW)
    settings: list[AlertSettings] = []

    async def fill() -> None:
        store = open_store(database)
        try:
            await store.upgrade()
            await store.upsert_runs([green(1, NOW - 3 * HOUR), red(2, NOW - HOUR)])
            async with rig_for(store, clock) as rig:
                await rig.cycle()
                settings.append(rig.settings)
        finally:
            await store.close()

    asyncio.run(fill())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    store = open_store(database)
    app = create_app(runtime_for(store, clock, settings[0]))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", ws="none", lifespan="on", access_log=False)
    )

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
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_alerts_page_in_chromium(served: str, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    expect = sync_api.expect
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 900})
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("response", lambda r: problems.append(r.url) if r.status >= 400 else None)
            page.goto(f"{served}/?refresh=0")
            link = page.locator("nav a.nav-alerts")
            expect(link).to_be_visible()
            expect(link.locator(".nav-count")).to_have_text(", 1 firing")
            link.click()
            page.wait_for_url("**/alerts?refresh=0")
            expect(page).to_have_title("✘ 1 firing · Alerts · ciwatch")
            expect(link).to_have_attribute("aria-current", "page")
            row = page.locator("table.firing tr.alert-row")
            expect(row).to_have_count(1)
            expect(row).to_be_visible()
            expect(row).to_contain_text("broken")
            expect(row.locator("a", has_text="group/app")).to_be_visible()
            refused = row.locator("li.d-failed")
            expect(refused).to_be_visible()
            expect(refused).to_contain_text("ding failed")
            expect(refused.locator(".d-error")).to_be_visible()
            expect(refused.locator(".d-error")).to_contain_text(
                "errcode 300001: token is not exist"
            )
            expect(row.locator("li.d-sent")).to_contain_text("hook sent")
            banner = page.locator("section.banner")
            expect(banner).to_be_visible()
            expect(banner).to_contain_text("token is not exist")
            expect(page.get_by_text("No alerts firing")).to_have_count(0)
            page.screenshot(path=tmp_path / "alerts.png", full_page=True)
            # On a phone the page itself never scrolls sideways; the table scrolls in its card.
            page.set_viewport_size({"width": 390, "height": 844})
            page.reload()
            expect(page.locator("section.banner")).to_contain_text("token is not exist")
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            page.screenshot(path=tmp_path / "alerts-narrow.png", full_page=True)
            assert problems == []
        finally:
            browser.close()

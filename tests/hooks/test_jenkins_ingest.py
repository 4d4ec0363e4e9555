"""Jenkins notifications are stored before the 202, and the build read from the Jenkins API
afterwards (a real loopback server, held until the test lets it answer) still merges right:
Jenkins' own times win, the status never goes backwards. Plus the 503 of a store that refuses
the write, and the retry of that delivery. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.clock import FakeClock
from ciwatch.domain import Run, RunKey, Status
from ciwatch.ingest import Ingest
from ciwatch.providers.jenkins import UNDATED
from ciwatch.providers.registry import build_provider
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import SqlStore

from .conftest import NOW, Server, build_app, serving, settings
from .payloads import delivery, jenkins_headers, jenkins_notification

KEY = RunKey("jk", "asgard", "18")
# Jenkins' own start of build 18, in epoch ms (not on a whole second), and its API answer.
STARTED_MS = 1769944800123
STARTED = datetime.fromtimestamp(STARTED_MS / 1000, tz=UTC)


def api_build(*, building: bool, result: str | None = "SUCCESS") -> dict[str, Any]:
    return {
        "number": 18,
        "url": "http://localhost:8080/job/asgard/18/",
        "building": building,
        "result": None if building else result,
        "timestamp": STARTED_MS,
        "duration": 0 if building else 90_000,
        "actions": [{"causes": [{"userId": "alice"}]}],
    }


@dataclass
class JenkinsApi:
    """A Jenkins answering `GET /jenkins/job/asgard/<n>/api/json` with `builds[n]`, each request
    held until `release` is set."""

    builds: dict[str, dict[str, Any]] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    asked: list[str] = field(default_factory=list)

    async def build(self, request: web.Request) -> web.Response:
        self.asked.append(request.match_info["n"])
        await self.release.wait()
        found = self.builds.get(request.match_info["n"])
        if found is None:
            return web.json_response({}, status=404)
        return web.json_response(found)


@pytest.fixture
async def jenkins_api() -> AsyncIterator[tuple[str, JenkinsApi]]:
    api = JenkinsApi()
    app = web.Application()
    app.router.add_get("/jenkins/job/asgard/{n}/api/json", api.build)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/jenkins", api
    finally:
        api.release.set()
        await runner.cleanup()


@pytest.fixture
async def polled(store: SqlStore, jenkins_api: tuple[str, JenkinsApi]) -> AsyncIterator[Server]:
    """The webhook app over `store`, with a real Jenkins provider for source `jk`."""
    url, _ = jenkins_api
    config = settings().model_copy(deep=True)
    jk = next(s for s in config.sources if s.name == "jk")
    jk = jk.model_copy(update={"url": url})
    clock = FakeClock(NOW)
    provider = build_provider(jk, config.collection, clock)
    runtime = Runtime(config, store, clock, CollectionMetrics(), providers={"jk": provider})
    app = build_app(runtime)
    try:
        async with serving(app) as base, aiohttp.ClientSession() as http:
            yield Server(base, runtime, http, app)
            await Server(base, runtime, http, app).settle()
    finally:
        await provider.close()


async def notify(server: Server, body: bytes, key: str) -> dict[str, Any]:
    status, answer = await server.post("/hooks/jenkins/jk", body, jenkins_headers(key))
    assert status == 202, answer
    assert answer["status"] == "accepted", answer
    return dict(answer)


async def stored(server: Server) -> Run:
    run = await server.runtime.store.get_run(KEY)
    assert run is not None
    return run


async def test_undated_notification_is_stored_at_once_then_dated_by_the_api(
    polled: Server, jenkins_api: tuple[str, JenkinsApi]
) -> None:
    _, api = jenkins_api
    api.builds["18"] = api_build(building=False)
    await notify(polled, jenkins_notification(18), "n1")
    # Answered while the API read is still held: the notification alone is stored.
    before = await stored(polled)
    assert (before.status, before.updated_at, before.created_at) == (Status.SUCCESS, UNDATED, NOW)
    assert api.asked == ["18"]
    api.release.set()
    await polled.settle()
    after = await stored(polled)
    assert after.status is Status.SUCCESS
    assert (after.created_at, after.started_at, after.updated_at) == (STARTED, STARTED, STARTED)
    assert after.author == "alice"
    assert after.duration_seconds == 90.0


async def test_an_api_read_behind_the_notification_keeps_its_status(
    polled: Server, jenkins_api: tuple[str, JenkinsApi]
) -> None:
    _, api = jenkins_api
    api.builds["18"] = api_build(building=True)  # read before Jenkins saw the build end
    await notify(polled, jenkins_notification(18, "STARTED", None), "n1")
    await notify(polled, jenkins_notification(18), "n2")
    assert (await stored(polled)).status is Status.SUCCESS
    api.release.set()
    await polled.settle()
    after = await stored(polled)
    assert after.status is Status.SUCCESS
    assert (after.created_at, after.started_at, after.updated_at) == (STARTED, STARTED, STARTED)
    assert after.author == "alice"


async def test_a_dated_notification_moves_a_build_the_api_gave(
    polled: Server, jenkins_api: tuple[str, JenkinsApi]
) -> None:
    _, api = jenkins_api
    api.builds["18"] = api_build(building=True)
    api.release.set()
    await notify(polled, jenkins_notification(18, "STARTED", None), "n1")
    await polled.settle()
    assert ((await stored(polled)).status, (await stored(polled)).updated_at) == (
        Status.RUNNING,
        STARTED,
    )
    # Newer plugin versions send the phase's own time, in whole seconds (earlier than the
    # API's millisecond timestamp): the notification is re-dated to the stored build.
    end = STARTED_MS // 1000 * 1000 + 90_000
    done = jenkins_notification(18, timestamp=end, duration=90_000)
    answer = await notify(polled, done, "n2")
    assert answer["changed"] is True
    after = await stored(polled)
    assert (after.status, after.updated_at, after.created_at) == (Status.SUCCESS, STARTED, STARTED)
    # A STARTED replayed late changes nothing.
    late = await notify(polled, jenkins_notification(18, "STARTED", None), "n3")
    assert late["changed"] is False
    assert (await stored(polled)).status is Status.SUCCESS
    assert api.asked == ["18"]


async def test_dropped_api_reads_lose_no_notification(
    polled: Server, jenkins_api: tuple[str, JenkinsApi]
) -> None:
    _, api = jenkins_api
    ingest = polled.runtime.ingest = Ingest(polled.runtime, running=1, waiting=1)
    for n in range(1, 6):
        await notify(polled, jenkins_notification(n, status="FAILURE"), f"n{n}")
    assert (ingest.pending, ingest.dropped) == (2, 3)
    for n in range(1, 6):
        run = await polled.runtime.store.get_run(RunKey("jk", "asgard", str(n)))
        assert run is not None and run.status is Status.FAILED
    api.release.set()


async def _refuse_run_writes(conn: AsyncConnection, dialect: str, on: bool) -> None:
    if dialect == "sqlite":
        if on:
            await conn.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'no'); END"
            )
        else:
            await conn.exec_driver_sql("DROP TRIGGER refuse")
    elif on:
        await conn.exec_driver_sql(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'no'; END $$"
        )
        await conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON runs FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    else:
        await conn.exec_driver_sql("DROP TRIGGER refuse ON runs")
        await conn.exec_driver_sql("DROP FUNCTION refuse()")


@pytest.mark.parametrize("receiver", ["jenkins", "report"])
async def test_a_store_failure_is_503_and_the_retry_is_stored(
    server: Server, store: SqlStore, receiver: str
) -> None:
    item = delivery(receiver, 7)

    async def refuse(on: bool) -> None:
        await store.write("test trigger", lambda conn: _refuse_run_writes(conn, store.dialect, on))

    await refuse(True)
    try:
        status, answer = await server.post(item.path, item.body, item.headers)
    finally:
        await refuse(False)
    assert status == 503, answer
    assert answer["error"] == "store unavailable"
    # Which database, where: for the log, not for the sender.
    assert store.endpoint.display.split("://")[-1] not in json.dumps(answer)
    assert "failed on" not in json.dumps(answer)
    assert await store.get_run(item.key) is None
    # The same delivery again is stored, not answered "duplicate".
    status, answer = await server.post(item.path, item.body, item.headers)
    assert status == 202, answer
    assert answer.get("status") in ("accepted", item.status.value)
    run = await store.get_run(item.key)
    assert run is not None and run.status is item.status


# -- FINALIZED: the plugin dates it "now" (JobListener.onFinalized), not a time of the build ----

FINISHED = datetime.fromtimestamp((STARTED_MS + 90_000) / 1000, tz=UTC)
# Sent half an hour after the build ended (a slow post-build step, a retried delivery...).
FINALIZED_AT = STARTED_MS + 90_000 + 1_800_000


def finalized(n: int = 18) -> bytes:
    return jenkins_notification(n, "FINALIZED", timestamp=FINALIZED_AT, duration=90_000)


async def test_finalized_never_moves_the_start_and_finish_of_a_finished_build(
    polled: Server, jenkins_api: tuple[str, JenkinsApi]
) -> None:
    _, api = jenkins_api
    api.builds["18"] = api_build(building=False)
    api.release.set()
    await notify(polled, jenkins_notification(18, "STARTED", None, timestamp=STARTED_MS), "n1")
    await polled.settle()
    done = jenkins_notification(18, timestamp=STARTED_MS + 90_000, duration=90_000)
    await notify(polled, done, "n2")
    await polled.settle()
    before = await stored(polled)
    assert (before.status, before.started_at, before.finished_at) == (
        Status.SUCCESS,
        STARTED,
        FINISHED,
    )
    answer = await notify(polled, finalized(), "n3")
    assert answer["changed"] is False
    after = await stored(polled)
    assert after == before


async def test_finalized_after_a_lost_completed_ends_the_build_at_its_start_plus_duration(
    polled: Server, jenkins_api: tuple[str, JenkinsApi]
) -> None:
    _, api = jenkins_api
    api.builds["18"] = api_build(building=True)
    api.release.set()
    await notify(polled, jenkins_notification(18, "STARTED", None, timestamp=STARTED_MS), "n1")
    await polled.settle()
    answer = await notify(polled, finalized(), "n2")
    assert answer["changed"] is True
    run = await stored(polled)
    assert (run.status, run.started_at, run.finished_at, run.duration_seconds) == (
        Status.SUCCESS,
        STARTED,
        FINISHED,
        90.0,
    )
    assert run.updated_at == STARTED


async def test_finalized_first_gives_no_times_and_a_late_completed_brings_them(
    server: Server,
) -> None:
    # Source `jk` is not polled here: nothing reads the build from the API.
    await notify(server, finalized(), "n1")
    run = await stored(server)
    assert (run.status, run.started_at, run.finished_at, run.duration_seconds) == (
        Status.SUCCESS,
        None,
        None,
        90.0,
    )
    done = jenkins_notification(18, timestamp=STARTED_MS + 90_000, duration=90_000)
    answer = await notify(server, done, "n2")
    assert answer["changed"] is True
    run = await stored(server)
    assert (run.started_at, run.finished_at) == (STARTED, FINISHED)
    # A FINALIZED replayed now changes nothing.
    assert (await notify(server, finalized(), "n3"))["changed"] is False
    assert ((await stored(server)).started_at, (await stored(server)).finished_at) == (
        STARTED,
        FINISHED,
    )

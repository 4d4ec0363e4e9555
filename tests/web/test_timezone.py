"""The configured `timezone` through the real app and a real channel text: the pages name the
zone and show times in it, chart days follow local midnight, notifications write local time."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest

from ciwatch.channels.base import Message, Notice
from ciwatch.channels.dingtalk import markdown as dingtalk_markdown
from ciwatch.channels.email import render_html
from ciwatch.channels.render import render_text
from ciwatch.channels.slack import render_slack_blocks
from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.domain import Status
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import SqlStore
from ciwatch.web.app import create_app
from factories import make_run

NOW = datetime(2026, 1, 6, 3, 0, tzinfo=UTC)  # 11:00 on the 6th in Shanghai


def _runs() -> list:  # type: ignore[type-arg]
    def run(run_id: str, when: datetime, status: Status):  # type: ignore[no-untyped-def]
        return make_run(
            run_id=run_id,
            number=int(run_id),
            status=status,
            created_at=when,
            started_at=when,
            finished_at=when + timedelta(seconds=10),
            updated_at=when + timedelta(seconds=10),
            duration_seconds=10.0,
        )

    return [
        run("1", datetime(2026, 1, 5, 15, 59, tzinfo=UTC), Status.SUCCESS),  # 23:59 local
        run("2", datetime(2026, 1, 5, 16, 1, tzinfo=UTC), Status.FAILED),  # 00:01 local, 6th
    ]


async def _client(store: SqlStore, zone: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database="sqlite:///unused.db", timezone=zone)
    runtime = Runtime(settings, store, FakeClock(NOW), CollectionMetrics())
    app = create_app(runtime, metrics_max_age=0.0)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ciwatch.test") as c:
            yield c
    finally:
        await app.state.metrics_cache.aclose()


@pytest.fixture
async def shanghai(store: SqlStore) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(store, "Asia/Shanghai"):
        yield client


@pytest.fixture
async def utc(store: SqlStore) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _client(store, "UTC"):
        yield client


@pytest.mark.parametrize("path", ["/", "/?tv=1", "/projects/gitlab-main/group/app", "/alerts"])
async def test_pages_name_the_zone(shanghai: httpx.AsyncClient, store: SqlStore, path: str) -> None:
    await store.upsert_runs(_runs())
    reply = await shanghai.get(path)
    assert reply.status_code == 200
    assert "times in Asia/Shanghai (UTC+08:00)" in reply.text
    assert "Updated" in reply.text and "11:00:00 CST (UTC+08:00)" in reply.text


async def test_board_times_and_chart_days_are_local(
    shanghai: httpx.AsyncClient, utc: httpx.AsyncClient, store: SqlStore
) -> None:
    await store.upsert_runs(_runs())
    local = (await shanghai.get("/")).text
    # The ref is red since run 2 ended, 00:01:10 on the 6th in Shanghai; ISO UTC stays.
    assert (
        '<time datetime="2026-01-05T16:01:10Z" title="2026-01-06 00:01:10 CST (UTC+08:00)">'
        in local
    )
    assert "per day (Asia/Shanghai)" in local
    assert "Mon 05 Jan: 1 of 1 succeeded (100%)" in local
    assert "Tue 06 Jan: 0 of 1 succeeded (0%)" in local
    plain = (await utc.get("/")).text
    assert '<time datetime="2026-01-05T16:01:10Z" title="2026-01-05 16:01:10 UTC">' in plain
    assert "Mon 05 Jan: 1 of 2 succeeded (50%)" in plain
    assert "times in UTC" in plain


async def test_api_and_cctray_stay_utc(shanghai: httpx.AsyncClient, store: SqlStore) -> None:
    await store.upsert_runs(_runs())
    body = (await shanghai.get("/api/v1/runs")).json()
    assert body["runs"][0]["finished_at"] == "2026-01-05T16:01:10Z"
    assert 'lastBuildTime="2026-01-05T16:01:10Z"' in (await shanghai.get("/cc.xml")).text


def test_notification_texts_show_local_time() -> None:
    run = _runs()[1]
    notice = Notice("broken", run.source, run.project, "main", run)
    local = Message((notice,), zone=ZoneInfo("Asia/Shanghai"))
    for text in (
        render_text(local),
        dingtalk_markdown(local),
        json.dumps(render_slack_blocks(local), ensure_ascii=False),
        render_html(local),
    ):
        assert "2026-01-06 00:01 CST (UTC+08:00)" in text, text
    assert "Finished: 2026-01-05 16:01 UTC" in render_text(Message((notice,)))
    # A zone whose abbreviation is only an offset shows the offset once.
    sao_paulo = render_text(Message((notice,), zone=ZoneInfo("America/Sao_Paulo")))
    assert "Finished: 2026-01-05 13:01 UTC-03:00" in sao_paulo

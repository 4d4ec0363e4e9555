"""Chart days in the configured `timezone`: a day runs from local midnight to local midnight
(DST changes included), on both engines, whatever the process's `TZ`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from ciwatch.domain import Status
from ciwatch.store import SqlStore, stats
from ciwatch.store.stats import DayStats
from factories import make_run

SHANGHAI = ZoneInfo("Asia/Shanghai")  # UTC+08:00, no DST: local midnight is 16:00 UTC
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def other_tz() -> Iterator[None]:
    """A process time zone that is neither UTC nor the configured one: nothing may use it."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Pacific/Kiritimati"  # UTC+14
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def _run(run_id: str, when: datetime, status: Status = Status.SUCCESS, seconds: float = 60.0):  # type: ignore[no-untyped-def]
    return make_run(
        run_id=run_id,
        number=int(run_id),
        status=status,
        created_at=when,
        started_at=when,
        finished_at=when + timedelta(seconds=seconds),
        updated_at=when + timedelta(seconds=seconds),
        duration_seconds=seconds,
    )


def around_midnight() -> list:  # type: ignore[type-arg]
    """Runs of one ref a minute either side of Shanghai's midnight of 6 January (16:00 UTC on
    the 5th), and one in the early UTC morning of the 6th."""
    return [
        _run("1", datetime(2026, 1, 5, 15, 59, tzinfo=UTC), seconds=10.0),  # 5th, 23:59 local
        _run("2", datetime(2026, 1, 5, 16, 1, tzinfo=UTC), Status.FAILED),  # 6th, 00:01 local
        _run("3", datetime(2026, 1, 6, 1, 0, tzinfo=UTC), seconds=30.0),  # 6th, 09:00 local
    ]


async def _days(store: SqlStore, now: datetime, days: int, zone: ZoneInfo | None, **kw):  # type: ignore[no-untyped-def]
    extra = {} if zone is None else {"zone": zone}
    return await store.read(
        "days", lambda conn: stats.daily_stats(conn, now=now, days=days, **extra, **kw)
    )


@pytest.mark.usefixtures("other_tz")
@pytest.mark.parametrize("cached", [False, True])
async def test_runs_around_local_midnight_land_in_their_local_day(
    store: SqlStore, cached: bool
) -> None:
    await store.upsert_runs(around_midnight())
    now = datetime(2026, 1, 6, 3, 0, tzinfo=UTC)  # the 6th in both zones
    cache = stats.StatsCache() if cached else None
    in_utc = await _days(store, now, 2, None, cache=cache)
    assert in_utc == [
        DayStats(date(2026, 1, 5), success=1, failed=1, median_duration=10.0),
        DayStats(date(2026, 1, 6), success=1, failed=0, median_duration=30.0),
    ]
    local = await _days(store, now, 2, SHANGHAI, cache=cache)
    assert local == [
        DayStats(date(2026, 1, 5), success=1, failed=0, median_duration=10.0),
        DayStats(date(2026, 1, 6), success=1, failed=1, median_duration=30.0),
    ]
    # The same through the dashboard's whole-page read, filtered to the ref.
    found = await stats.overview(
        store, stats.Filters(project="group/app", ref="main"), now=now, days=2, zone=SHANGHAI
    )
    assert found.days == local


@pytest.mark.usefixtures("other_tz")
async def test_today_is_the_local_today(store: SqlStore) -> None:
    await store.upsert_runs(around_midnight())
    # 17:00 UTC on the 5th is already 01:00 on the 6th in Shanghai.
    now = datetime(2026, 1, 5, 17, 0, tzinfo=UTC)
    local = await _days(store, now, 1, SHANGHAI)
    assert [(d.day, d.success, d.failed) for d in local] == [(date(2026, 1, 6), 1, 1)]
    in_utc = await _days(store, now, 1, None)
    assert [(d.day, d.success, d.failed) for d in in_utc] == [(date(2026, 1, 5), 1, 1)]


async def test_days_across_a_dst_change(store: SqlStore) -> None:
    # New York springs forward on 8 March 2026 (02:00 EST -> 03:00 EDT): the 8th has 23 hours.
    # Midnights: 7th 05:00 UTC, 8th 05:00 UTC, 9th 04:00 UTC, 10th 04:00 UTC.
    runs = [
        _run("1", datetime(2026, 3, 8, 4, 59, tzinfo=UTC)),  # 7th 23:59 EST
        _run("2", datetime(2026, 3, 8, 5, 0, tzinfo=UTC)),  # 8th 00:00 EST
        _run("3", datetime(2026, 3, 9, 3, 59, tzinfo=UTC)),  # 8th 23:59 EDT
        _run("4", datetime(2026, 3, 9, 4, 0, tzinfo=UTC)),  # 9th 00:00 EDT
        _run("5", datetime(2026, 3, 9, 4, 30, tzinfo=UTC), Status.FAILED),  # 9th 00:30 EDT
    ]
    await store.upsert_runs(runs)
    now = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
    days = await _days(store, now, 3, NEW_YORK)
    assert [(d.day, d.success, d.failed) for d in days] == [
        (date(2026, 3, 7), 1, 0),
        (date(2026, 3, 8), 2, 0),
        (date(2026, 3, 9), 1, 1),
    ]
    start, end, _ = stats.day_window(now, 3, NEW_YORK)
    assert start == datetime(2026, 3, 7, 5, 0, tzinfo=UTC)
    assert end == datetime(2026, 3, 10, 4, 0, tzinfo=UTC)

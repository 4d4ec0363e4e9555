"""Dashboard queries (`ciwatch.store.stats`) on both engines, against hand-computed figures."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.domain import RefKey, Run, Status, TargetState
from ciwatch.store import SqlStore, stats
from ciwatch.store.stats import DayStats, Filters
from factories import at, make_job, make_run

T = TypeVar("T")
HOUR = 3600.0
DAY = 24 * HOUR


async def read(store: SqlStore, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    return await store.read("test", work)


def run(
    run_id: str,
    status: Status = Status.SUCCESS,
    created: float = 0.0,
    duration: float | None = 100.0,
    **fields: Any,
) -> Run:
    """A run created at `at(created)` that took `duration` seconds (None: still running)."""
    created_at = at(created)
    finished = None if duration is None or not status.terminal else at(created + duration)
    return make_run(
        run_id=run_id,
        number=int(run_id) if run_id.isdigit() else None,
        status=status,
        created_at=created_at,
        started_at=created_at,
        finished_at=finished,
        updated_at=finished or at(created + 1),
        duration_seconds=duration if status.terminal else None,
        **fields,
    )


# -- board ---------------------------------------------------------------------------------


def board_sample() -> list[Run]:
    return [
        run("1", project="b/app", ref="main"),
        run("2", Status.FAILED, 10, project="b/app", ref="dev"),
        run("3", project="a/lib", ref="main"),
        run("4", Status.FAILED, 20, project="c/web", ref="main"),
        run("5", Status.RUNNING, 30, duration=None, project="d/new", ref="main"),
        run("6", Status.CANCELED, 40, project="a/lib", ref="old"),
        run("7", source="gh", provider="github", project="a/lib", ref="main"),
        # A success newer than the failure of b/app dev is running: the ref stays failed.
        run("8", Status.RUNNING, 50, duration=None, project="b/app", ref="dev"),
    ]


async def test_board_lists_failing_refs_first_then_by_name(store: SqlStore) -> None:
    await store.upsert_runs(board_sample())
    board = await read(store, lambda c: stats.board_page(c, Filters()))
    keys = [(r.state.status, r.state.source, r.state.project, r.state.ref) for r in board.rows]
    assert keys == [
        (Status.FAILED, "gitlab-main", "b/app", "dev"),
        (Status.FAILED, "gitlab-main", "c/web", "main"),
        (Status.RUNNING, "gitlab-main", "d/new", "main"),
        (Status.CANCELED, "gitlab-main", "a/lib", "old"),
        (Status.SUCCESS, "gh", "a/lib", "main"),
        (Status.SUCCESS, "gitlab-main", "a/lib", "main"),
        (Status.SUCCESS, "gitlab-main", "b/app", "main"),
    ]
    assert board.total == 7
    assert board.counts == {
        Status.FAILED: 2,
        Status.RUNNING: 1,
        Status.CANCELED: 1,
        Status.SUCCESS: 3,
    }
    assert not board.has_more
    dev = board.rows[0]
    # The newest run is the running one; the last duration is the decisive (failed) run's.
    assert dev.state.last_run.run_id == "8"
    assert dev.last_duration == 100.0
    assert board.rows[2].last_duration is None


async def test_board_filters_and_pages(store: SqlStore) -> None:
    await store.upsert_runs(board_sample())

    async def page(filters: Filters, limit: int = 50, offset: int = 0) -> stats.Board:
        return await read(store, lambda c: stats.board_page(c, filters, limit=limit, offset=offset))

    failed = await page(Filters(status=Status.FAILED))
    assert [r.state.project for r in failed.rows] == ["b/app", "c/web"]
    assert failed.total == 2
    # The counts ignore the status filter: they are what the summary shows.
    assert sum(failed.counts.values()) == 7
    lib = await page(Filters(project="a/lib"))
    assert [(r.state.source, r.state.ref) for r in lib.rows] == [
        ("gitlab-main", "old"),
        ("gh", "main"),
        ("gitlab-main", "main"),
    ]
    gh = await page(Filters(source="gh"))
    assert [r.state.project for r in gh.rows] == ["a/lib"]
    main = await page(Filters(source="gitlab-main", ref="main"))
    assert [r.state.project for r in main.rows] == ["c/web", "d/new", "a/lib", "b/app"]
    assert (await page(Filters(project="nope"))).total == 0
    first = await page(Filters(), limit=3)
    second = await page(Filters(), limit=3, offset=3)
    last = await page(Filters(), limit=3, offset=6)
    assert first.has_more and second.has_more and not last.has_more
    assert [len(p.rows) for p in (first, second, last)] == [3, 3, 1]
    everything = await page(Filters())
    assert [r.state.key for r in first.rows + second.rows + last.rows] == [
        r.state.key for r in everything.rows
    ]


# -- daily aggregates ---------------------------------------------------------------------------

NOW = datetime(2026, 1, 7, 15, 30, tzinfo=UTC)  # T0 is 2026-01-05 09:00 UTC


def day_sample() -> list[Run]:
    day5 = 0.0
    day6 = 15 * HOUR  # 2026-01-06 00:00 UTC
    day7 = day6 + DAY
    return [
        run("1", Status.SUCCESS, day5, 100.0),
        run("2", Status.SUCCESS, day5 + 60, 300.0),
        run("3", Status.FAILED, day5 + 120, 50.0),
        run("4", Status.CANCELED, day5 + 180, 10.0),
        run("5", Status.SUCCESS, day6 - 1, 400.0),  # 23:59:59 still counts for the 5th
        run("6", Status.SUCCESS, day6, 90.0),
        run("7", Status.SUCCESS, day6 + 60, 30.0, ref="dev"),
        run("8", Status.SUCCESS, day6 + 120, 60.0),
        run("9", Status.SUCCESS, day6 + 180, None),  # no duration: counted, not in the median
        run("10", Status.RUNNING, day6 + 240, None),
        run("11", Status.FAILED, day7, 20.0),
        run("12", Status.SKIPPED, day7 + 60, 0.0),
        run("13", Status.SUCCESS, -DAY, 999.0),  # 2026-01-04: before the window
        run("14", Status.FAILED, day7 + DAY, 5.0),  # tomorrow: after the window
        run("15", Status.SUCCESS, day6 + 300, 10.0, project="other/app"),
    ]


async def test_daily_stats_count_decisive_runs_and_take_the_median(store: SqlStore) -> None:
    await store.upsert_runs(day_sample())
    days = await read(store, lambda c: stats.daily_stats(c, now=NOW, days=3))
    assert days == [
        # success 1, 2, 5 (100, 300, 400), failed 3; canceled 4 is neither.
        DayStats(date(2026, 1, 5), success=3, failed=1, median_duration=300.0),
        # success 6, 7, 8, 9, 15 with durations 90, 30, 60, 10: median (30 + 60) / 2.
        DayStats(date(2026, 1, 6), success=5, failed=0, median_duration=45.0),
        DayStats(date(2026, 1, 7), success=0, failed=1, median_duration=None),
    ]
    assert days[0].rate == 0.75
    assert days[2].rate == 0.0
    assert DayStats(date(2026, 1, 8), 0, 0, None).rate is None


async def test_daily_stats_filters(store: SqlStore) -> None:
    await store.upsert_runs(day_sample())

    async def stats_for(**filters: str) -> list[tuple[int, int, float | None]]:
        days = await read(store, lambda c: stats.daily_stats(c, now=NOW, days=3, **filters))
        return [(d.success, d.failed, d.median_duration) for d in days]

    assert await stats_for(source="gitlab-main", project="group/app") == [
        (3, 1, 300.0),
        (4, 0, 60.0),
        (0, 1, None),
    ]
    assert await stats_for(source="gitlab-main", project="group/app", ref="main") == [
        (3, 1, 300.0),
        (3, 0, 75.0),
        (0, 1, None),
    ]
    assert await stats_for(project="other/app") == [(0, 0, None), (1, 0, 10.0), (0, 0, None)]
    assert await stats_for(source="nope") == [(0, 0, None)] * 3


async def test_daily_stats_cover_fourteen_days_by_default(store: SqlStore) -> None:
    days = await read(store, lambda c: stats.daily_stats(c, now=NOW))
    assert [d.day for d in days] == [date(2025, 12, 25) + timedelta(days=n) for n in range(14)]
    assert all(d.decided == 0 and d.median_duration is None for d in days)


def test_day_window_is_in_utc() -> None:
    start, end, dates = stats.day_window(NOW, 2)
    assert start == datetime(2026, 1, 6, tzinfo=UTC)
    assert end == datetime(2026, 1, 8, tzinfo=UTC)
    assert dates == [date(2026, 1, 6), date(2026, 1, 7)]


# -- time to green ------------------------------------------------------------------------------


def streak(*statuses: Status, ref: str = "main") -> list[Run]:
    """Runs one hour apart, each taking 10 minutes, with these statuses, oldest first."""
    return [run(f"{n + 1}", status, n * HOUR, 600.0, ref=ref) for n, status in enumerate(statuses)]


async def recovery_of(store: SqlStore, ref: str = "main") -> stats.Recovery | None:
    key = RefKey("gitlab-main", "group/app", ref)
    return await read(store, lambda c: stats.recovery(c, key))


S, F, C, R = Status.SUCCESS, Status.FAILED, Status.CANCELED, Status.RUNNING


async def test_time_to_green_after_a_break(store: SqlStore) -> None:
    await store.upsert_runs(streak(S, S, F, F, C, S, S))
    found = await recovery_of(store)
    assert found is not None
    assert found.status is S
    assert found.broken_by is not None and found.broken_by.run_id == "3"
    assert found.fixed_by is not None and found.fixed_by.run_id == "6"
    # Red from the end of run 3 (2h10m) to the end of run 6 (5h10m).
    assert found.broken_at == at(2 * HOUR + 600)
    assert found.fixed_at == at(5 * HOUR + 600)
    assert found.red_for(at(99 * HOUR)) == timedelta(hours=3)
    assert not found.still_red


async def test_time_to_green_takes_the_last_break(store: SqlStore) -> None:
    await store.upsert_runs(streak(F, S, F, F, F, S, R))
    found = await recovery_of(store)
    assert found is not None
    assert (found.broken_by.run_id, found.fixed_by.run_id) == ("3", "6")  # type: ignore[union-attr]
    assert found.red_for(NOW) == timedelta(hours=3)


async def test_a_first_ever_failure_is_a_break(store: SqlStore) -> None:
    await store.upsert_runs(streak(F, F, S))
    found = await recovery_of(store)
    assert found is not None
    assert (found.broken_by.run_id, found.fixed_by.run_id) == ("1", "3")  # type: ignore[union-attr]
    assert found.red_for(NOW) == timedelta(hours=2)


async def test_still_red_counts_until_now(store: SqlStore) -> None:
    await store.upsert_runs(streak(S, F, C, F, R))
    found = await recovery_of(store)
    assert found is not None
    assert found.status is F and found.still_red
    assert found.broken_by is not None and found.broken_by.run_id == "2"
    assert found.fixed_at is None and found.fixed_by is None
    assert found.red_for(at(5 * HOUR + 600)) == timedelta(hours=4)


async def test_never_red(store: SqlStore) -> None:
    await store.upsert_runs(streak(S, C, S))
    found = await recovery_of(store)
    assert found is not None
    assert found.status is S and found.broken_at is None and found.red_for(NOW) is None
    assert not found.still_red


async def test_no_decisive_run_and_unknown_ref(store: SqlStore) -> None:
    await store.upsert_runs(streak(C, R))
    found = await recovery_of(store)
    assert found == stats.Recovery(RefKey("gitlab-main", "group/app", "main"), R)
    assert await recovery_of(store, "nope") is None


async def test_other_refs_do_not_interfere(store: SqlStore) -> None:
    await store.upsert_runs(streak(S, F, S))
    await store.upsert_runs([run(f"dev-{n}", F, n * HOUR + 30, 60.0, ref="dev") for n in range(4)])
    found = await recovery_of(store)
    assert found is not None
    assert (found.broken_by.run_id, found.fixed_by.run_id) == ("2", "3")  # type: ignore[union-attr]
    dev = await recovery_of(store, "dev")
    assert dev is not None and dev.still_red
    assert dev.broken_by is not None and dev.broken_by.run_id == "dev-0"


# -- failed runs, targets, names ----------------------------------------------------------------


async def test_newest_failed_run(store: SqlStore) -> None:
    await store.upsert_runs(
        [
            run("1", F, 0, ref="main"),
            run("2", F, HOUR, ref="dev"),
            run("3", S, 2 * HOUR, ref="dev"),
            run("4", F, 3 * HOUR, project="other/app"),
        ]
    )

    async def newest(ref: str | None = None, project: str = "group/app") -> str | None:
        found = await read(store, lambda c: stats.newest_failed_run(c, "gitlab-main", project, ref))
        return None if found is None else found.run_id

    assert await newest() == "2"
    assert await newest("main") == "1"
    assert await newest("dev") == "2"
    assert await newest("feature") is None
    assert await newest(project="nope") is None


async def test_unhealthy_targets(store: SqlStore) -> None:
    for n in range(5):
        healthy = n % 2 == 0
        await store.save_target_state(
            TargetState(
                source="gitlab-main",
                project=f"group/p{n}",
                healthy=healthy,
                reason=None if healthy else f"401 for p{n}",
            )
        )
    everything = await read(store, lambda c: stats.unhealthy_targets(c))
    assert [(t.project, t.reason) for t in everything.targets] == [
        ("group/p1", "401 for p1"),
        ("group/p3", "401 for p3"),
    ]
    assert everything.total == 2
    first = await read(store, lambda c: stats.unhealthy_targets(c, limit=1))
    assert [t.project for t in first.targets] == ["group/p1"]
    assert first.total == 2


async def test_known_sources_and_projects(store: SqlStore) -> None:
    await store.upsert_runs(board_sample())
    assert await read(store, stats.known_sources) == ["gh", "gitlab-main"]
    assert await read(store, stats.known_projects) == ["a/lib", "b/app", "c/web", "d/new"]
    two = await read(store, lambda c: stats.known_projects(c, limit=2))
    assert two == ["a/lib", "b/app"]


# -- whole pages --------------------------------------------------------------------------------


async def test_overview_reads_everything_the_dashboard_shows(store: SqlStore) -> None:
    await store.upsert_runs(board_sample())
    found = await stats.overview(store, Filters(), now=at(DAY), recent_limit=3)
    assert found.board.total == 7
    assert [r.run_id for r in found.recent] == ["8", "6", "5"]
    assert len(found.days) == stats.DEFAULT_DAYS
    assert found.days[-2].day == date(2026, 1, 5)
    assert (found.days[-2].success, found.days[-2].failed) == (3, 2)
    assert found.sources == ["gh", "gitlab-main"]
    assert found.unhealthy.total == 0
    quiet = await stats.overview(store, Filters(), now=at(DAY), with_recent=False)
    assert quiet.recent == []


async def test_project_overview(store: SqlStore) -> None:
    runs = streak(S, F, F)
    runs.append(run("10", S, 30, ref="dev"))
    await store.upsert_runs(runs)
    await store.upsert_jobs(
        [
            make_job(run_id="3", job_id="a", name="lint", status=S, created_at=at(2 * HOUR)),
            make_job(run_id="3", job_id="b", name="unit", status=F, created_at=at(2 * HOUR + 1)),
            make_job(run_id="2", job_id="c", name="old", status=F, created_at=at(HOUR)),
        ]
    )
    found = await stats.project_overview(
        store, "gitlab-main", "group/app", now=at(DAY), history_limit=2
    )
    assert [r.state.ref for r in found.board.rows] == ["main", "dev"]
    assert [r.run_id for r in found.history] == ["3", "2"]
    assert found.next_cursor is not None
    assert found.recovery is not None and found.recovery.ref.ref == "main"
    assert found.recovery.still_red
    assert found.failed_run is not None and found.failed_run.run_id == "3"
    assert [j.name for j in found.failed_jobs] == ["unit"]
    older = await stats.project_overview(
        store, "gitlab-main", "group/app", now=at(DAY), history_limit=2, cursor=found.next_cursor
    )
    assert [r.run_id for r in older.history] == ["10", "1"]
    assert older.next_cursor is None
    dev = await stats.project_overview(store, "gitlab-main", "group/app", now=at(DAY), ref="dev")
    assert [r.run_id for r in dev.history] == ["10"]
    assert dev.recovery is not None and dev.recovery.ref.ref == "dev"
    assert dev.failed_run is None and dev.failed_jobs == []
    with pytest.raises(ValueError, match="cursor"):
        await stats.project_overview(store, "gitlab-main", "group/app", now=NOW, cursor="x")


async def test_default_ref_without_a_conventional_branch(store: SqlStore) -> None:
    await store.upsert_runs([run("1", S, 0, ref="alpha"), run("2", F, HOUR, ref="beta")])
    found = await stats.project_overview(store, "gitlab-main", "group/app", now=NOW)
    assert found.recovery is not None and found.recovery.ref.ref == "beta"


async def test_unknown_project_is_empty(store: SqlStore) -> None:
    found = await stats.project_overview(store, "gitlab-main", "nope", now=NOW)
    assert found.board.total == 0 and found.recovery is None and found.history == []


async def test_a_store_without_read_units_is_refused() -> None:
    with pytest.raises(TypeError, match="read units"):
        await stats.overview(object(), Filters(), now=NOW)


# -- the cache ----------------------------------------------------------------------------------


class Timer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_cache_entries_expire_and_the_oldest_go_first() -> None:
    timer = Timer()
    cache = stats.StatsCache(max_age=10.0, max_entries=2, timer=timer)
    cache.put("a", 1)
    timer.now = 5.0
    cache.put("b", 2)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, 2, None)
    timer.now = 8.0
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (None, 2, 3)
    timer.now = 15.5
    assert (cache.get("b"), cache.get("c")) == (None, 3)
    assert len(cache) == 1


async def test_cached_days_read_only_today_again(store: SqlStore) -> None:
    await store.upsert_runs(day_sample())
    timer = Timer()
    cache = stats.StatsCache(max_age=60.0, timer=timer)

    async def days() -> list[tuple[int, int]]:
        found = await read(store, lambda c: stats.daily_stats(c, now=NOW, days=3, cache=cache))
        return [(d.success, d.failed) for d in found]

    assert await days() == [(3, 1), (5, 0), (0, 1)]
    # A new run yesterday is not seen until the cached days expire; one today is at once.
    await store.upsert_runs(
        [run("20", F, 15 * HOUR + 600, 10.0), run("21", F, 39 * HOUR + 600, 10.0)]
    )
    assert await days() == [(3, 1), (5, 0), (0, 2)]
    timer.now = 61.0
    assert await days() == [(3, 1), (5, 1), (0, 2)]

    # Other filters, other entries; the same answers as without a cache.
    async def both(**filters: Any) -> tuple[list[DayStats], list[DayStats]]:
        cached = await read(
            store, lambda c: stats.daily_stats(c, now=NOW, days=3, cache=cache, **filters)
        )
        plain = await read(store, lambda c: stats.daily_stats(c, now=NOW, days=3, **filters))
        return cached, plain

    for cached, plain in (await both(project="other/app"), await both(ref="dev")):
        assert cached == plain


async def test_overview_caches_the_names(store: SqlStore) -> None:
    cache = stats.StatsCache()
    await store.upsert_runs(board_sample())
    first = await stats.overview(store, Filters(), now=NOW, cache=cache)
    await store.upsert_runs([run("30", source="new", project="z/new")])
    second = await stats.overview(store, Filters(), now=NOW, cache=cache)
    assert first.sources == second.sources == ["gh", "gitlab-main"]
    assert second.board.total == first.board.total + 1
    fresh = await stats.overview(store, Filters(), now=NOW)
    assert fresh.sources == ["gh", "gitlab-main", "new"]


def test_recent_runs_are_bounded_only_for_filters_no_index_leads_with() -> None:
    start = datetime(2025, 12, 25, tzinfo=UTC)
    assert stats.recent_bound(Filters(), NOW) is None
    assert stats.recent_bound(Filters(project="group/app"), NOW) is None
    assert stats.recent_bound(Filters(source="gh", project="group/app", ref="main"), NOW) is None
    for filters in (
        Filters(status=Status.FAILED),
        Filters(project="group/app", status=Status.FAILED),
        Filters(source="gh"),
        Filters(ref="main"),
    ):
        assert stats.recent_bound(filters, NOW) == start


async def test_overview_with_a_status_filter_looks_back_over_the_charted_days(
    store: SqlStore,
) -> None:
    await store.upsert_runs(
        [run("1", F, -30 * DAY, source="gh"), run("2", F, 0, source="gh"), run("3", S, HOUR)]
    )
    failed = await stats.overview(store, Filters(status=F), now=NOW)
    assert [r.run_id for r in failed.recent] == ["2"]
    gh = await stats.overview(store, Filters(source="gh"), now=NOW)
    assert [r.run_id for r in gh.recent] == ["2"]
    everything = await stats.overview(store, Filters(), now=NOW)
    assert [r.run_id for r in everything.recent] == ["3", "2", "1"]
    project = await stats.overview(store, Filters(source="gh", project="group/app"), now=NOW)
    assert [r.run_id for r in project.recent] == ["2", "1"]

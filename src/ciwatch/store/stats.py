"""Read queries of the dashboard: the ref board, daily aggregates, time to green, failing runs.

Every query is bounded for a large store (docs/architecture.md#tests-and-benchmarks: 1,000,000 runs,
5,000 refs): the board pages over `ref_states` (one row per ref) and joins runs by primary key only
for the rows of the page; daily aggregates read the runs of the last days through an index on
`order_time` (alone or after `source, project[, ref_key]`); time to green walks back over at most
three index probes of the partial indexes `ix_runs_ref_success` / `ix_runs_ref_failed`.

The functions run in one read unit of work of `SqlStore.read` (one connection, one transaction,
errors as `StoreError`); `overview` and `project_overview` gather what a page needs in one, and
are what the store's `StatsStore` protocol offers the dashboard (`store/base.py`).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from time import monotonic
from typing import Any, Protocol, TypeVar, runtime_checkable

from sqlalchemy import ColumnElement, String, case, func, literal, literal_column, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.domain import CommitRange, Job, RefKey, RefState, Run, RunKey, Status, TargetState
from ciwatch.filters import Match, as_match, clause
from ciwatch.store import reads
from ciwatch.store.rows import RUN_COLUMNS, range_from_value, run_from_row, target_from_row
from ciwatch.store.tables import ref_states, runs, targets
from ciwatch.timeutil import is_utc

T = TypeVar("T")
# The largest duration the daily medians take in (ciwatch.validation.MAX_SECONDS and more).
FINITE_LIMIT = 1e300

# The board lists failing refs first, then what is moving, then the rest.
BOARD_ORDER = (
    Status.FAILED,
    Status.RUNNING,
    Status.QUEUED,
    Status.MANUAL,
    Status.CANCELED,
    Status.SKIPPED,
    Status.SUCCESS,
)
# Literal values (not bound parameters), so that both planners can use the partial indexes.
IS_SUCCESS = runs.c.status == literal_column("'success'")
IS_FAILED = runs.c.status == literal_column("'failed'")
IS_DECISIVE = runs.c.status.in_([literal_column("'success'"), literal_column("'failed'")])
DEFAULT_DAYS = 14
# Bounds for a single query that a caller cannot exceed (a page, a chart, a datalist).
MAX_PAGE = 500
MAX_DAYS = 90


@runtime_checkable
class Readable(Protocol):
    """A store offering read units of work (`SqlStore.read`)."""

    async def read(self, what: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T: ...


Wanted = str | Match | None  # a filter: one exact value (str), patterns (Match) or any (None)


@dataclass(frozen=True)
class Filters:
    """What the dashboard narrows down to; None means any. A string is one exact value, a
    `Match` exact values and globs (`ciwatch.filters`); `ref=""` is runs without a ref.
    `status` is one status or several."""

    source: Wanted = None
    project: Wanted = None
    ref: Wanted = None
    status: Status | tuple[Status, ...] | None = None

    @property
    def active(self) -> bool:
        return any(
            value is not None for value in (self.source, self.project, self.ref, self.status)
        )

    @property
    def statuses(self) -> tuple[Status, ...] | None:
        """The wanted statuses, None for any."""
        if self.status is None:
            return None
        return (self.status,) if isinstance(self.status, Status) else self.status


class StatsCache:
    """Recent answers of the slow-changing dashboard queries: the daily aggregates of the days
    before today (a run created yesterday that finishes now changes them only a little) and the
    lists of sources and projects. An entry lives `max_age` seconds of `timer`; at most
    `max_entries` are kept, the oldest dropped first. Not shared between processes."""

    def __init__(
        self,
        *,
        max_age: float = 300.0,
        max_entries: int = 256,
        timer: Callable[[], float] = monotonic,
    ) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self._timer = timer
        self._entries: dict[Hashable, tuple[float, Any]] = {}

    def get(self, key: Hashable) -> Any:
        """The value stored under `key` while fresh, else None."""
        found = self._entries.get(key)
        if found is None:
            return None
        stamp, value = found
        if self._timer() - stamp > self.max_age:
            del self._entries[key]
            return None
        return value

    def put(self, key: Hashable, value: Any) -> None:
        self._entries.pop(key, None)
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (self._timer(), value)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class BoardRow:
    """One project/ref: its state (with the newest run) and the duration of its decisive run."""

    state: RefState
    decisive_duration: float | None

    @property
    def last_duration(self) -> float | None:
        """The duration of the newest finished run: the newest run's when it has ended, else
        that of the run which set the ref's colour."""
        run = self.state.last_run
        if run.status.terminal and run.duration_seconds is not None:
            return run.duration_seconds
        return self.decisive_duration


@dataclass(frozen=True)
class Board:
    """A page of refs, failing first, with how many refs match and the count of each status
    among the refs matching every filter but the status one."""

    rows: list[BoardRow]
    total: int
    counts: dict[Status, int]
    offset: int
    limit: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.rows) < self.total


@dataclass(frozen=True)
class DayStats:
    """Decisive runs created on one day (of the configured `timezone`), and the median
    duration of its successful runs."""

    day: date
    success: int
    failed: int
    median_duration: float | None

    @property
    def decided(self) -> int:
        return self.success + self.failed

    @property
    def rate(self) -> float | None:
        """success / (success + failed), None on a day without either."""
        return self.success / self.decided if self.decided else None


@dataclass(frozen=True)
class Recovery:
    """The last break of a ref and its fix (time to green).

    `broken_by` is the first failed run of the newest failed streak and `broken_at` when the ref
    turned red (its finish time, else its creation time, as `RefState.since`); `fixed_by` is the
    first success after that streak and `fixed_at` when the ref turned green again. A ref still
    red has no fix; a ref never seen failing has neither.
    """

    ref: RefKey
    status: Status
    broken_by: Run | None = None
    broken_at: datetime | None = None
    fixed_by: Run | None = None
    fixed_at: datetime | None = None
    # Red now: the commits since the last green run kept on `broken_by` (its `broken` notice
    # listed them), or None.
    broken_range: CommitRange | None = None

    @property
    def still_red(self) -> bool:
        return self.broken_at is not None and self.fixed_at is None

    def red_for(self, now: datetime) -> timedelta | None:
        """Time to green of the last break, or how long the ref has been red so far."""
        if self.broken_at is None:
            return None
        end = self.fixed_at or now
        return max(end - self.broken_at, timedelta(0))


@dataclass(frozen=True)
class Unhealthy:
    """Targets marked unhealthy (first `limit`, by source and project) and how many there are."""

    targets: list[TargetState]
    total: int


@dataclass(frozen=True)
class Overview:
    """Everything the main dashboard shows, read in one transaction."""

    board: Board
    recent: list[Run]
    days: list[DayStats]
    unhealthy: Unhealthy
    sources: list[str]
    projects: list[str]


@dataclass(frozen=True)
class ProjectOverview:
    """Everything a project page shows, read in one transaction."""

    board: Board
    history: list[Run]
    next_cursor: str | None
    days: list[DayStats]
    recovery: Recovery | None
    failed_run: Run | None
    failed_jobs: list[Job] = field(default_factory=list)


# -- building blocks (each runs in the caller's connection) ------------------------------------


def _rank() -> ColumnElement[int]:
    return case(
        {status.value: index for index, status in enumerate(BOARD_ORDER)},
        value=ref_states.c.status,
        else_=len(BOARD_ORDER),
    )


def _state_filters(filters: Filters, *, with_status: bool) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = [ref_states.c.status.is_not(None)]
    if filters.source is not None:
        where.append(clause(ref_states.c.source, filters.source))
    if filters.project is not None:
        where.append(clause(ref_states.c.project, filters.project))
    if filters.ref is not None:
        where.append(clause(ref_states.c.ref, filters.ref))
    statuses = filters.statuses
    if with_status and statuses is not None:
        where.append(ref_states.c.status.in_([status.value for status in statuses]))
    return where


async def board_page(
    conn: AsyncConnection, filters: Filters, *, limit: int = 50, offset: int = 0
) -> Board:
    """Refs matching `filters`, failing first (then by source, project, ref), one page."""
    limit = _bounded(limit, 1, MAX_PAGE)
    offset = max(offset, 0)
    where = _state_filters(filters, with_status=True)
    rank = _rank().label("rank")
    # Order and cut the small `ref_states` rows first; join runs only for the page.
    page = (
        select(ref_states.c.id, rank)
        .where(*where)
        .order_by(rank, ref_states.c.source, ref_states.c.project, ref_states.c.ref)
        .limit(limit)
        .offset(offset)
        .subquery("page")
    )
    decisive = runs.alias("decisive")
    query = (
        select(
            ref_states.c.ref.label("state_ref"),
            ref_states.c.status.label("state_status"),
            ref_states.c.since.label("state_since"),
            decisive.c.duration_seconds.label("decisive_duration"),
            *RUN_COLUMNS,
        )
        .select_from(page)
        .join(ref_states, ref_states.c.id == page.c.id)
        .join(runs, runs.c.id == ref_states.c.last_run_id)
        .outerjoin(decisive, decisive.c.id == ref_states.c.decisive_run_id)
        .order_by(page.c.rank, ref_states.c.source, ref_states.c.project, ref_states.c.ref)
    )
    rows = []
    for row in (await conn.execute(query)).mappings():
        run = run_from_row(row)
        state = RefState(
            source=run.source,
            provider=run.provider,
            project=run.project,
            ref=row["state_ref"],
            status=Status(row["state_status"]),
            since=row["state_since"],
            last_run=run,
        )
        rows.append(BoardRow(state, _finite(row["decisive_duration"])))
    counts_query = (
        select(ref_states.c.status, func.count())
        .where(*_state_filters(filters, with_status=False))
        .group_by(ref_states.c.status)
    )
    counts = {Status(status): n for status, n in await conn.execute(counts_query)}
    statuses = filters.statuses
    total = sum(n for status, n in counts.items() if statuses is None or status in statuses)
    return Board(rows, total, counts, offset, limit)


def local_midnight(day: date, zone: tzinfo = UTC) -> datetime:
    """When `day` starts in `zone`, as a UTC time. DST-safe: zoneinfo gives each local
    midnight its own offset (a midnight skipped by a DST change maps to the day's first
    instant, a repeated one to its first occurrence)."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def day_window(
    now: datetime, days: int, zone: tzinfo = UTC
) -> tuple[datetime, datetime, list[date]]:
    """The days of `zone` ending with today's: their start, the end of today (UTC times),
    and the dates."""
    days = _bounded(days, 1, MAX_DAYS)
    today = now.astimezone(zone).date()
    first = today - timedelta(days=days - 1)
    start = local_midnight(first, zone)
    end = local_midnight(today + timedelta(days=1), zone)
    return start, end, [first + timedelta(days=n) for n in range(days)]


def _local_day(first: date, stop: date, zone: tzinfo) -> ColumnElement[str]:
    """The local day (`YYYY-MM-DD`) of `order_time`, for times from `first` up to `stop`: a
    CASE over the UTC instants of the local midnights, computed here by zoneinfo, so that
    both engines bucket alike without a time zone database of their own."""
    whens = []
    day = first
    while day < stop:
        day += timedelta(days=1)
        bound = literal(local_midnight(day, zone), runs.c.order_time.type)
        name = (day - timedelta(days=1)).isoformat()  # digits and dashes only
        whens.append((runs.c.order_time < bound, literal_column(f"'{name}'", String())))
    return case(*whens, else_=None)


def _day_column(dialect: str) -> ColumnElement[str]:
    if dialect == "sqlite":
        # UTCDateTime keeps SQLite times as fixed-width ISO text in UTC: the day is its prefix.
        return func.substr(runs.c.order_time, 1, 10, type_=String())
    return func.to_char(
        func.timezone(literal_column("'UTC'"), runs.c.order_time), "YYYY-MM-DD", type_=String()
    )


def _run_filters(
    source: Wanted, project: Wanted, ref: Wanted, *, dialect: str = ""
) -> list[ColumnElement[bool]]:
    where = []
    if source is not None:
        where.append(_source_is(source, project, dialect))
    if project is not None:
        where.append(clause(runs.c.project, project))
    if ref is not None:
        where.append(clause(runs.c.ref_key, ref))
    return where


def _exact(wanted: Wanted) -> bool:
    return wanted is not None and as_match(wanted).is_exact


def _source_is(source: str | Match, project: Wanted, dialect: str) -> ColumnElement[bool]:
    # Without ANALYZE statistics SQLite takes `source = ?` for selective and walks every run of
    # the source through the unique index, then sorts them. Without an exact project, keep the
    # source test out of index selection (`source || ''`) so the bounded `order_time` range is
    # used.
    if dialect == "sqlite" and not _exact(project):
        return clause(runs.c.source.concat(""), source)
    return clause(runs.c.source, source)


async def daily_stats(
    conn: AsyncConnection,
    *,
    now: datetime,
    days: int = DEFAULT_DAYS,
    source: Wanted = None,
    project: Wanted = None,
    ref: Wanted = None,
    cache: StatsCache | None = None,
    zone: tzinfo = UTC,
) -> list[DayStats]:
    """Per day of `zone` of the last `days` (today included, oldest first): the success and
    failed runs created that day and the median duration of its successful runs.

    Reads only runs with `order_time` in the window (the index range of `order_time`, or of
    `source, project[, ref_key], order_time` when filtered). With a `cache`, the days before
    today come from it while fresh: then only today's runs are read."""
    _, _, dates = day_window(now, days, zone)
    today = dates[-1]
    scope = (source, project, ref)
    if cache is None:
        found = await _aggregate(conn, dates[0], today + timedelta(days=1), scope, zone)
    else:
        key = ("days", *scope, dates[0], today, str(zone))
        past: dict[date, DayStats] | None = cache.get(key)
        if past is None:
            past = await _aggregate(conn, dates[0], today, scope, zone)
            cache.put(key, past)
        now_day = await _aggregate(conn, today, today + timedelta(days=1), scope, zone)
        found = {**past, **now_day}
    return [found.get(when) or DayStats(when, 0, 0, None) for when in dates]


async def _aggregate(
    conn: AsyncConnection,
    first: date,
    stop: date,
    scope: tuple[Wanted, Wanted, Wanted],
    zone: tzinfo = UTC,
) -> dict[date, DayStats]:
    """DayStats of the days (of `zone`) from `first` up to (not including) `stop` that had
    any run."""
    if stop <= first:
        return {}
    if is_utc(zone):
        day = _day_column(conn.dialect.name).label("day")
    else:
        day = _local_day(first, stop, zone).label("day")
    where = [
        runs.c.order_time >= local_midnight(first, zone),
        runs.c.order_time < local_midnight(stop, zone),
        *_run_filters(*scope, dialect=conn.dialect.name),
    ]
    # Grouped over a subquery: a GROUP BY repeating the CASE would bind its times anew, which
    # PostgreSQL does not take for the same expression.
    decisive = select(day, runs.c.status).where(*where, IS_DECISIVE).subquery("decisive")
    counts_query = select(decisive.c.day, decisive.c.status, func.count().label("n")).group_by(
        decisive.c.day, decisive.c.status
    )
    success: dict[str, int] = {}
    failed: dict[str, int] = {}
    for row in await conn.execute(counts_query):
        target = success if row.status == Status.SUCCESS.value else failed
        target[row.day] = row.n
    medians = await _daily_medians(conn, day, [*where, IS_SUCCESS])
    return {
        date.fromisoformat(name): DayStats(
            day=date.fromisoformat(name),
            success=success.get(name, 0),
            failed=failed.get(name, 0),
            median_duration=medians.get(name),
        )
        for name in {*success, *failed, *medians}
    }


async def _daily_medians(
    conn: AsyncConnection, day: ColumnElement[str], where: Sequence[ColumnElement[bool]]
) -> dict[str, float]:
    # The exact median on both engines (SQLite has no percentile function): number the
    # durations of each day and average the middle one or two.
    ranked = (
        select(
            day,
            runs.c.duration_seconds.label("duration"),
            func.row_number()
            .over(partition_by=day, order_by=runs.c.duration_seconds)
            .label("position"),
            func.count().over(partition_by=day).label("size"),
        )
        # Only plausible durations: a NaN or infinite one stored before the edge refused them
        # would make the day's median one too (NaN sorts above every number on PostgreSQL).
        .where(*where, runs.c.duration_seconds.between(0.0, FINITE_LIMIT))
        .subquery("ranked")
    )
    middle = (ranked.c.size + 1) // 2, (ranked.c.size + 2) // 2
    query = (
        select(ranked.c.day, func.avg(ranked.c.duration).label("median"))
        .where(ranked.c.position.in_(middle))
        .group_by(ranked.c.day)
    )
    return {row.day: float(row.median) for row in await conn.execute(query)}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


async def _probe(
    conn: AsyncConnection,
    ref: RefKey,
    status: ColumnElement[bool],
    *,
    before: tuple[datetime, str] | None = None,
    after: tuple[datetime, str] | None = None,
) -> Run | None:
    where = [*_run_filters(ref.source, ref.project, ref.ref), status]
    position = tuple_(runs.c.order_time, runs.c.run_id)
    if before is not None:
        where.append(position < tuple_(*_bound(before)))
        order = (runs.c.order_time.desc(), runs.c.run_id.desc())
    else:
        order = (runs.c.order_time.asc(), runs.c.run_id.asc())
        if after is not None:
            where.append(position > tuple_(*_bound(after)))
    query = select(*RUN_COLUMNS).where(*where).order_by(*order).limit(1)
    row = (await conn.execute(query)).mappings().first()
    return None if row is None else run_from_row(row)


def _bound(position: tuple[datetime, str]) -> tuple[Any, Any]:
    when, run_id = position
    return literal(when, runs.c.order_time.type), literal(run_id, runs.c.run_id.type)


def _moment(run: Run) -> datetime:
    """When a run set a ref's colour: as `RefState.since`, its finish time else its creation."""
    return run.finished_at or run.created_at or run.started_at or run.updated_at


def _position(run: Run) -> tuple[datetime, str]:
    return (run.created_at or run.started_at or run.updated_at, run.run_id)


async def recovery(conn: AsyncConnection, ref: RefKey) -> Recovery | None:
    """The last break of `ref` and its fix; None for an unknown ref.

    From the ref state: red now, the break is the first run of the current streak; green now,
    that run is the fix, and the break is the first failed run after the success preceding the
    newest failed run before the fix (three probes of the partial indexes)."""
    since_run = runs.alias("since_run")
    query = (
        select(
            ref_states.c.status.label("state_status"),
            *(since_run.c[column.name] for column in RUN_COLUMNS),
            since_run.c.commit_range,
        )
        .join_from(ref_states, since_run, since_run.c.id == ref_states.c.since_run_id, isouter=True)
        .where(
            ref_states.c.source == ref.source,
            ref_states.c.project == ref.project,
            ref_states.c.ref == ref.ref,
            ref_states.c.status.is_not(None),
        )
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        return None
    status = Status(row["state_status"])
    first = run_from_row(row) if row["run_id"] is not None else None
    if first is None or not status.decisive:
        return Recovery(ref, status)
    if status is Status.FAILED:
        return Recovery(
            ref,
            status,
            broken_by=first,
            broken_at=_moment(first),
            broken_range=range_from_value(row["commit_range"]),
        )
    last_failed = await _probe(conn, ref, IS_FAILED, before=_position(first))
    if last_failed is None:
        return Recovery(ref, status)
    green_before = await _probe(conn, ref, IS_SUCCESS, before=_position(last_failed))
    after = None if green_before is None else _position(green_before)
    broken = await _probe(conn, ref, IS_FAILED, after=after)
    broken = broken or last_failed
    return Recovery(
        ref,
        status,
        broken_by=broken,
        broken_at=_moment(broken),
        fixed_by=first,
        fixed_at=_moment(first),
    )


async def newest_failed_run(
    conn: AsyncConnection, source: str, project: str, ref: Wanted = None
) -> Run | None:
    """The newest failed run of a project (of one ref when given)."""
    query = (
        select(*RUN_COLUMNS)
        .where(*_run_filters(source, project, ref), IS_FAILED)
        .order_by(runs.c.order_time.desc(), runs.c.run_id.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).mappings().first()
    return None if row is None else run_from_row(row)


async def unhealthy_targets(conn: AsyncConnection, *, limit: int = 10) -> Unhealthy:
    """The first `limit` unhealthy targets (by source, project) and how many there are."""
    limit = _bounded(limit, 1, MAX_PAGE)
    sick = targets.c.healthy.is_(False)
    query = select(targets).where(sick).order_by(targets.c.source, targets.c.project).limit(limit)
    found = [target_from_row(row) for row in (await conn.execute(query)).mappings()]
    if len(found) < limit:
        return Unhealthy(found, len(found))
    total = (await conn.execute(select(func.count()).where(sick))).scalar_one()
    return Unhealthy(found, int(total))


async def known_sources(conn: AsyncConnection) -> list[str]:
    """Every source that has a ref."""
    query = select(ref_states.c.source).distinct().order_by(ref_states.c.source)
    return list((await conn.execute(query)).scalars())


async def known_projects(conn: AsyncConnection, *, limit: int = 200) -> list[str]:
    """Project names having a ref, alphabetically, at most `limit` (for suggestions)."""
    query = (
        select(ref_states.c.project)
        .distinct()
        .order_by(ref_states.c.project)
        .limit(_bounded(limit, 1, MAX_PAGE))
    )
    return list((await conn.execute(query)).scalars())


async def recent_runs(
    conn: AsyncConnection,
    filters: Filters,
    *,
    limit: int = 20,
    cursor: str | None = None,
    since: datetime | None = None,
) -> tuple[list[Run], str | None]:
    """Runs matching `filters` (created at or after `since` when given), newest first, with the
    cursor of the next page (as `Store.history`; ValueError for a malformed cursor)."""
    after = reads.Position.decode(cursor) if cursor is not None else None
    limit = _bounded(limit, 1, MAX_PAGE)
    query = reads.history_query(
        source=None,
        project=filters.project,
        ref=filters.ref,
        status=filters.status,
        since=since,
        limit=limit + 1,
        after=after,
    )
    if filters.source is not None:
        query = query.where(_source_is(filters.source, filters.project, conn.dialect.name))
    return await reads.history_page(conn, query, limit)


def recent_bound(
    filters: Filters, now: datetime, days: int = DEFAULT_DAYS, zone: tzinfo = UTC
) -> datetime | None:
    """How far back the main page looks for recent runs: without bound unless a filter no
    index leads with (a status, a project glob, or a source or ref without a project) would
    make the newest-first scan walk the whole `order_time` index when it matches little; then
    the charted days."""
    if filters.project is None:
        unindexed = filters.source is not None or filters.ref is not None
    else:
        unindexed = not _exact(filters.project)  # a glob leads no index either
    unindexed = unindexed or filters.status is not None
    return day_window(now, days, zone)[0] if unindexed else None


def _bounded(value: int, low: int, high: int) -> int:
    return min(max(value, low), high)


# -- whole pages ------------------------------------------------------------------------------


async def _remember(
    cache: StatsCache | None,
    key: Hashable,
    load: Callable[[AsyncConnection], Awaitable[list[str]]],
    conn: AsyncConnection,
) -> list[str]:
    if cache is None:
        return await load(conn)
    found: list[str] | None = cache.get(key)
    if found is None:
        found = await load(conn)
        cache.put(key, found)
    return found


def _reader(store: object) -> Readable:
    if not isinstance(store, Readable):
        raise TypeError(f"{type(store).__name__} offers no read units of work (SqlStore.read)")
    return store


async def overview(
    store: object,
    filters: Filters,
    *,
    now: datetime,
    board_limit: int = 50,
    board_offset: int = 0,
    recent_limit: int = 20,
    days: int = DEFAULT_DAYS,
    with_recent: bool = True,
    cache: StatsCache | None = None,
    zone: tzinfo = UTC,
) -> Overview:
    """The main dashboard's data in one read transaction (past days' aggregates and the lists
    of sources and projects from `cache` while fresh)."""

    async def work(conn: AsyncConnection) -> Overview:
        board = await board_page(conn, filters, limit=board_limit, offset=board_offset)
        recent: list[Run] = []
        if with_recent:
            since = recent_bound(filters, now, days, zone)
            recent, _ = await recent_runs(conn, filters, limit=recent_limit, since=since)
        stats = await daily_stats(
            conn,
            now=now,
            days=days,
            source=filters.source,
            project=filters.project,
            ref=filters.ref,
            cache=cache,
            zone=zone,
        )
        return Overview(
            board=board,
            recent=recent,
            days=stats,
            unhealthy=await unhealthy_targets(conn),
            sources=await _remember(cache, ("sources",), known_sources, conn),
            projects=await _remember(cache, ("projects",), known_projects, conn),
        )

    return await _reader(store).read("dashboard overview", work)


async def project_overview(
    store: object,
    source: str,
    project: str,
    *,
    now: datetime,
    ref: Wanted = None,
    focus: str | None = None,
    board_limit: int = 50,
    board_offset: int = 0,
    history_limit: int = 25,
    cursor: str | None = None,
    days: int = DEFAULT_DAYS,
    cache: StatsCache | None = None,
    zone: tzinfo = UTC,
) -> ProjectOverview:
    """One project's page data in one read transaction. `ref` (a name, or a `Match` of names
    and globs) narrows the history, charts and failing run; `focus` is the ref whose time to
    green is shown (default: `ref` when it names one ref, else a conventional default branch,
    else the ref of the newest run). ValueError for a bad cursor."""
    filters = Filters(source=source, project=project)

    async def work(conn: AsyncConnection) -> ProjectOverview:
        board = await board_page(conn, filters, limit=board_limit, offset=board_offset)
        history, next_cursor = await recent_runs(
            conn, Filters(source, project, ref), limit=history_limit, cursor=cursor
        )
        stats = await daily_stats(
            conn,
            now=now,
            days=days,
            source=source,
            project=project,
            ref=ref,
            cache=cache,
            zone=zone,
        )
        chosen = focus if focus is not None else _one(ref)
        if chosen is None and isinstance(ref, Match):  # a glob: its newest matching ref
            rows = [row for row in board.rows if ref.matches(row.state.ref)]
            if rows:
                chosen = max(rows, key=lambda row: _position(row.state.last_run)).state.ref
        if chosen is None:
            chosen = await _default_ref(conn, source, project, board)
        found = None if chosen is None else await recovery(conn, RefKey(source, project, chosen))
        failed = await newest_failed_run(conn, source, project, ref)
        jobs = [] if failed is None else await reads.jobs_for(conn, RunKey(*failed.key))
        return ProjectOverview(
            board=board,
            history=history,
            next_cursor=next_cursor,
            days=stats,
            recovery=found,
            failed_run=failed,
            failed_jobs=[job for job in jobs if job.status is Status.FAILED],
        )

    return await _reader(store).read("project overview", work)


DEFAULT_BRANCHES = ("main", "master", "trunk", "develop")


def _one(wanted: Wanted) -> str | None:
    return wanted.single if isinstance(wanted, Match) else wanted


async def _default_ref(
    conn: AsyncConnection, source: str, project: str, board: Board
) -> str | None:
    query = select(ref_states.c.ref).where(
        ref_states.c.source == source,
        ref_states.c.project == project,
        ref_states.c.ref.in_(DEFAULT_BRANCHES),
        ref_states.c.status.is_not(None),
    )
    present = set((await conn.execute(query)).scalars())
    for name in DEFAULT_BRANCHES:
        if name in present:
            return name
    if not board.rows:
        return None
    newest = max(board.rows, key=lambda row: _position(row.state.last_run))
    return newest.state.ref

"""The HTML dashboard (docs/architecture.md#http-and-dashboard): `/` (every project/ref, recent
runs, trends; `?tv=1` wall mode), `/projects/{source}/{project...}` (one project),
`/runs/{source}/{project...}/{run_id}` (one run, its jobs by stage) and `/alerts` (firing alerts
with their deliveries, history, silences). Every page's navigation (the wall's summary) counts the
firing alerts.

`router` is included by `create_app` behind the auth dependency; handlers read the runtime from
`request.app.state.runtime` (store, clock). Pages are server-rendered with Jinja2 (autoescape on:
every value from a CI system is escaped) and SVG charts from `charts.py`; a few lines of JS in
`static/refresh.js` reload the page every 30 s unless the user is busy with it (`?refresh=0`
turns that off), and `static/wall.js` sizes the wall's tiles to the screen. Links to a CI
system are made only for http(s) URLs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup, escape
from pydantic import ValidationError

from ciwatch.alerting import views as alert_views
from ciwatch.alerting.kinds import KINDS
from ciwatch.alerting.silences import (
    MATCHER_KEYS,
    MAX_SILENCE,
    SilenceInputError,
    create_silence,
    given_matchers,
    silence_end,
)
from ciwatch.channels.render import commit_author, commits_count, tests_sentence
from ciwatch.config.durations import format_duration
from ciwatch.domain import Job, Run, RunKey, Status
from ciwatch.errors import StoreError
from ciwatch.filters import Match, parse_filter, query_filters
from ciwatch.store import Store, stats
from ciwatch.store.reliability import RecoveryStats
from ciwatch.store.stats import DayStats, Filters
from ciwatch.timeutil import human_duration, iso_z, local_time, zone_label, zone_name
from ciwatch.validation import MAX_ID, Invalid, loggable, parse_basic, storable
from ciwatch.web import csrf
from ciwatch.web.charts import (
    Bar,
    Point,
    bar_chart,
    line_chart,
    percent_ticks,
    rate_tone,
    short_duration,
)
from ciwatch.web.paths import project_path, run_path
from ciwatch.web.schemas import SilenceCreate

log = logging.getLogger(__name__)
TEMPLATES = Path(__file__).parent / "templates"
REFRESH_SECONDS = 30
BOARD_PAGE = 50
# Tiles shrink to fit the screen (static/wall.js); past this many a last tile pages on.
WALL_TILES = 150
RECENT_RUNS = 20
HISTORY_PAGE = 25
ALERTS_FIRING = 200
ALERTS_HISTORY = 100
# The same glyphs as the CLI (`ciwatch.cli.common.STATUS_STYLE`): never colour alone.
STATUS_ICON: dict[Status, str] = {
    Status.SUCCESS: "✔",
    Status.FAILED: "✘",
    Status.RUNNING: "●",
    Status.QUEUED: "…",
    Status.MANUAL: "✋",
    Status.CANCELED: "⊘",
    Status.SKIPPED: "↷",
}
# Alert rules and notice kinds (docs/architecture.md#alerting), with a glyph besides their colour.
ALERT_ICON = {kind.name.value: kind.wording.glyph for kind in KINDS}
HEADERS = {
    # Scripts and styles only from our own /static; charts are inline SVG, not scripts.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(include_in_schema=False)

_TIME = Markup('<time datetime="%s" title="%s">%s</time>')
_BADGE = Markup(
    '<span class="badge s-%s%s"><span class="badge-icon" aria-hidden="true">%s</span> %s</span>'
)
_RUN_LINK = Markup('<a href="%s" target="_blank" rel="noopener noreferrer">%s</a>')
_CI_LINK = Markup(
    '<a class="ext" href="%s" target="_blank" rel="noopener noreferrer">%s'
    '<span aria-hidden="true"> ↗</span></a>'
)
_NOT_A_LINK = Markup('<span class="muted unsafe-url" title="Not an http(s) link: %s">%s</span>')
_RUNNING_FOR = Markup('<span class="muted" title="still running">%s…</span>')
_NOTHING = Markup('<span class="muted">—</span>')
_PAGE_LINK = Markup('<a class="run-link" href="%s">%s</a>')


# -- formatting -----------------------------------------------------------------------------


def safe_href(url: str | None) -> str | None:
    """`url` when it is an absolute http(s) URL, else None: anything else (javascript:, data:,
    relative paths) from a CI system is shown as text, never linked."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()


@dataclass(frozen=True)
class View:
    """What templates call to format values and build links, for one request."""

    now: datetime
    root: str
    params: Mapping[str, str]
    refresh_off: bool = False
    # The configured `timezone`: times are shown in it (they are stored in UTC).
    zone: tzinfo = UTC

    def icon(self, status: Status) -> str:
        return STATUS_ICON[status]

    def duration(self, seconds: float | None) -> str:
        return human_duration(seconds)

    def ago(self, when: datetime | None) -> str:
        if when is None:
            return "—"
        delta = (self.now - when).total_seconds()
        if delta < 5:
            return "just now"
        return f"{human_duration(delta)} ago"

    def until(self, when: datetime | None) -> str:
        """How far ahead `when` is ("in 3h 20m"); "now" once it has passed."""
        if when is None:
            return "—"
        delta = (when - self.now).total_seconds()
        return f"in {human_duration(delta)}" if delta >= 1 else "now"

    def span(self, when: datetime | None) -> str:
        """How long ago `when` was, without "ago" ("3h 20m")."""
        return "—" if when is None else human_duration((self.now - when).total_seconds())

    def time(self, when: datetime | None, text: str | None = None) -> Markup:
        """A `<time>` element: relative text, the exact time in the configured zone in its
        title, ISO 8601 UTC in `datetime`."""
        if when is None:
            return Markup("—")
        label = text if text is not None else self.ago(when)
        return _TIME % (iso_z(when), self.local(when), label)

    def local(self, when: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
        """`when` in the configured zone: `2026-01-05 22:10:00 CST (UTC+08:00)`; in UTC
        `2026-01-05 14:10:00 UTC`."""
        if when is None:
            return "—"
        return local_time(when, self.zone, fmt)

    @property
    def zone_label(self) -> str:
        """The zone times are shown in, with its offset now: `Asia/Shanghai (UTC+08:00)`."""
        return zone_label(self.zone, self.now)

    @property
    def zone_name(self) -> str:
        return zone_name(self.zone)

    # The snippets below appear on every row: built here (`Markup % args` escapes the args),
    # because a Jinja macro call costs several times more.

    def badge(self, status: Status, size: str = "") -> Markup:
        """A status badge: colour, icon and word."""
        extra = f" badge-{size}" if size in ("sm", "lg") else ""
        return _BADGE % (status.value, extra, STATUS_ICON[status], status.value)

    def run_number(self, run: Run) -> Markup:
        """`#number` (else the run id), linked to the run when its URL is http(s)."""
        label = f"#{run.number}" if run.number is not None else _shorten(run.run_id, 12)
        href = safe_href(run.url)
        return escape(label) if href is None else _RUN_LINK % (href, label)

    def ci_link(self, url: str | None, text: str = "Open") -> Markup:
        """A link to a CI page; a URL that is not http(s) is shown as text, never linked."""
        href = safe_href(url)
        if href is not None:
            return _CI_LINK % (href, text)
        if url:
            return _NOT_A_LINK % (url, _shorten(url, 40))
        return _NOTHING

    def run_duration(self, run: Run) -> Markup:
        """The run's duration; the time so far (with …) while it runs."""
        if run.duration_seconds is not None:
            return escape(human_duration(run.duration_seconds))
        if run.status is Status.RUNNING and run.started_at is not None:
            return _RUNNING_FOR % human_duration((self.now - run.started_at).total_seconds())
        return _NOTHING

    def utc(self, when: datetime | None) -> str:
        return "—" if when is None else f"{when.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"

    def href(self, url: str | None) -> str | None:
        return safe_href(url)

    def url(self, path: str, **params: Any) -> str:
        """A link within the dashboard; None and "" parameters are left out. While this page
        does not refresh itself, links keep `refresh=0` unless they set `refresh`."""
        if self.refresh_off and "refresh" not in params:
            params["refresh"] = "0"
        query = {k: str(v) for k, v in params.items() if v is not None and v != ""}
        return self.root + path + (f"?{urlencode(query)}" if query else "")

    def here(self, **changes: Any) -> str:
        """This page's URL with some query parameters changed (None removes one)."""
        merged: dict[str, Any] = dict(self.params)
        merged.update(changes)
        path = self.params.get("__path__", "/")
        merged.pop("__path__", None)
        return self.url(path, **merged)

    def project(self, source: str, project: str, **params: Any) -> str:
        return self.url(project_path(source, project), **params)

    def static(self, name: str) -> str:
        return f"{self.root}/static/{name}"

    def run_href(self, run: Run, **params: Any) -> str:
        """The dashboard's page of one run (the same identifiers as `/api/v1/runs/...`)."""
        return self.url(run_path(run.source, run.project, run.run_id), **params)

    def run_link(self, run: Run) -> Markup:
        """`#number` (else the run id), linked to the run's page on this dashboard."""
        label = f"#{run.number}" if run.number is not None else _shorten(run.run_id, 12)
        return _PAGE_LINK % (self.run_href(run), label)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _day_label(day: Any) -> str:
    return f"{day.day} {day:%b}"


def _day_tooltip(day: DayStats) -> str:
    when = f"{day.day:%a %d %b}"
    if not day.decided:
        return f"{when}: no success or failed runs"
    assert day.rate is not None
    return f"{when}: {day.success} of {day.decided} succeeded ({day.rate:.0%})"


def charts(days: Sequence[DayStats], scope: str) -> tuple[Markup, Markup]:
    """The success-rate bars and the median-duration line of `days`, as markup."""
    ticks, top = percent_ticks()
    bars = [Bar(_day_label(d.day), d.rate, _day_tooltip(d), rate_tone(d.rate)) for d in days]
    rate = bar_chart(
        bars,
        title=f"Success rate per day, {scope}",
        max_value=top,
        ticks=ticks,
        empty=f"No finished runs in the last {len(days)} days",
    )
    points = [
        Point(
            _day_label(d.day),
            d.median_duration,
            f"{d.day:%a %d %b}: median "
            + (short_duration(d.median_duration) if d.median_duration is not None else "—")
            + f" over {d.success} successful runs",
        )
        for d in days
    ]
    trend = line_chart(
        points,
        title=f"Median duration of successful runs per day, {scope}",
        empty=f"No successful runs in the last {len(days)} days",
    )
    # charts.py escapes every text it writes.
    return Markup(rate), Markup(trend)  # noqa: S704


@dataclass(frozen=True)
class Totals:
    """Success and failed runs over the charted days."""

    success: int
    failed: int

    @property
    def rate(self) -> float | None:
        decided = self.success + self.failed
        return self.success / decided if decided else None

    @property
    def tone(self) -> str:
        return rate_tone(self.rate)


def totals(days: Sequence[DayStats]) -> Totals:
    return Totals(sum(d.success for d in days), sum(d.failed for d in days))


def median_duration(days: Sequence[DayStats]) -> float | None:
    """The newest day's median duration (the current figure of the trend)."""
    for day in reversed(days):
        if day.median_duration is not None:
            return day.median_duration
    return None


# -- templates ------------------------------------------------------------------------------


@cache
def environment() -> Environment:
    """The Jinja2 environment (built on first use: nothing heavy at import)."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["Status"] = Status
    env.globals["board_order"] = stats.BOARD_ORDER
    env.globals["alert_icon"] = ALERT_ICON
    env.globals["silence_link"] = silence_link
    return env


def render(name: str, context: Mapping[str, Any], status_code: int = 200) -> HTMLResponse:
    html = environment().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


# -- request parsing ------------------------------------------------------------------------


def _text(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    value = storable(value.strip())
    return value or None


def _positive(request: Request, name: str, default: int = 1) -> int:
    value = _text(request, name)
    if value is None or not value.isdigit():
        return default
    return max(int(value), 1) if len(value) < 7 else default


def _joined(match: Match | None) -> str | None:
    return None if match is None else match.text


def _flag(request: Request, name: str) -> bool:
    return (_text(request, name) or "").lower() in ("1", "true", "yes", "on")


def _refresh(request: Request) -> int:
    value = _text(request, "refresh")
    return (
        0 if value is not None and value.lower() in ("0", "false", "no", "off") else REFRESH_SECONDS
    )


def _view(
    request: Request, keep: Sequence[str], filters: Mapping[str, str | None] | None = None
) -> View:
    """The page's view; its links keep the `keep` parameters and the parsed `filters` (each
    as one comma-separated value)."""
    runtime = request.app.state.runtime
    params = {name: v for name in keep if (v := _text(request, name)) is not None}
    params.update({name: v for name, v in (filters or {}).items() if v is not None})
    params["__path__"] = request.url.path.removeprefix(request.scope.get("root_path", ""))
    return View(
        now=runtime.clock.now(),
        root=request.scope.get("root_path", ""),
        params=params,
        refresh_off=_refresh(request) == 0,
        zone=runtime.settings.zone,
    )


def _base_context(request: Request, view: View) -> dict[str, Any]:
    refresh = _refresh(request)
    return {
        "view": view,
        "refresh": refresh,
        "refresh_param": None if refresh else "0",
        "tv": False,
        "alerts_firing": None,
    }


async def firing_badge(store: Store) -> int | None:
    """The count of firing alerts for the navigation (one count query)."""
    return await alert_views.firing_count(store)


def stats_cache(request: Request) -> stats.StatsCache:
    """The app's cache of slow-changing aggregates (`app.state.dashboard_cache`), made on first
    use: past days' figures are re-read at most every five minutes, today's on every request."""
    state = request.app.state
    cache = getattr(state, "dashboard_cache", None)
    if not isinstance(cache, stats.StatsCache):
        cache = stats.StatsCache()
        state.dashboard_cache = cache
    return cache


def _unavailable(request: Request, view: View, exc: StoreError) -> HTMLResponse:
    log.warning("%s %s: %s", request.method, loggable(request.url.path), exc)
    context = _base_context(request, view)
    message = "The database did not answer; the server log has the reason."
    context.update(title="Database unavailable", message=message, code=503)
    return render("error.html", context, status_code=503)


# -- pages ----------------------------------------------------------------------------------


FILTER_PARAMS = ("source", "project", "ref", "status")


@router.get("/", response_class=HTMLResponse, summary="Dashboard")
async def index(request: Request) -> HTMLResponse:
    """Every project/ref (failing first), recent runs, 14-day success rate and duration trend;
    `?tv=1` shows the wall mode. Filters: `source`, `project`, `ref`, `status`; `page` pages the
    refs; `refresh=0` stops the automatic reload."""
    try:
        wanted = query_filters(request.query_params.getlist)
    except Invalid as exc:
        return _bad_filter(request, exc)
    filter_text = {name: wanted.text(name) for name in FILTER_PARAMS}
    view = _view(request, ("tv", "refresh"), filter_text)
    context = _base_context(request, view)
    filters = Filters(
        source=wanted.source, project=wanted.project, ref=wanted.ref, status=wanted.status
    )
    tv = _flag(request, "tv")
    per_page = WALL_TILES if tv else BOARD_PAGE
    page = _positive(request, "page")
    runtime = request.app.state.runtime
    try:
        data = await runtime.store.overview(
            filters,
            now=view.now,
            board_limit=per_page,
            board_offset=(page - 1) * per_page,
            recent_limit=RECENT_RUNS,
            with_recent=not tv,
            cache=stats_cache(request),
            zone=view.zone,
        )
        context["alerts_firing"] = await firing_badge(runtime.store)
    except StoreError as exc:
        return _unavailable(request, view, exc)
    scope = _scope(filters)
    rate_chart, duration_chart = charts(data.days, scope)
    known_sources = sorted({*data.sources, *(s.name for s in runtime.settings.sources)})
    context.update(
        filters=filters,
        filter_text=filter_text,
        bad_status=", ".join(wanted.unknown_status) or None,
        data=data,
        board=data.board,
        page=page,
        pages=max(math.ceil(data.board.total / per_page), 1),
        sources=known_sources,
        statuses=list(stats.BOARD_ORDER),
        rate_chart=rate_chart,
        duration_chart=duration_chart,
        totals=totals(data.days),
        median=median_duration(data.days),
        scope=scope,
        tv=tv,
        days=len(data.days),
        recent_bounded=stats.recent_bound(filters, view.now, zone=view.zone) is not None,
    )
    if tv:
        context.update(wall_context(request, data.board, filters, view.now))
    return render("wall.html" if tv else "index.html", context)


# -- wall ---------------------------------------------------------------------------------------

# On the wall, what needs a person comes first: red refs, then refs with a run going now
# (whatever their colour), then the rest in board order.
WALL_RANK = {Status.RUNNING: 1, Status.QUEUED: 2}


@dataclass(frozen=True)
class Tile:
    """One ref on the wall; for a ref with a run going, how far it is against the ref's
    typical duration (that of the run which set its colour, when known)."""

    row: stats.BoardRow
    elapsed: float | None = None
    typical: float | None = None

    @property
    def moving(self) -> bool:
        return self.row.state.last_run.status in WALL_RANK

    @property
    def progress(self) -> float | None:
        """elapsed ÷ typical, capped at 1; None without both."""
        if self.elapsed is None or not self.typical:
            return None
        return min(self.elapsed / self.typical, 1.0)

    @property
    def overdue(self) -> bool:
        if self.elapsed is None or not self.typical:
            return False
        return self.elapsed > self.typical


def wall_tiles(rows: Sequence[stats.BoardRow], now: datetime) -> list[Tile]:
    """`rows` as tiles: failing first, then running, then queued, then the board order."""

    def rank(row: stats.BoardRow) -> int:
        if row.state.failing:
            return 0
        return WALL_RANK.get(row.state.last_run.status, 3)

    tiles = []
    for row in sorted(rows, key=rank):
        run = row.state.last_run
        elapsed = None
        if run.status is Status.RUNNING and run.started_at is not None:
            elapsed = max((now - run.started_at).total_seconds(), 0.0)
        elif run.status is Status.QUEUED and run.created_at is not None:
            elapsed = max((now - run.created_at).total_seconds(), 0.0)
        typical = row.decisive_duration if run.status is Status.RUNNING else None
        tiles.append(Tile(row, elapsed, typical if typical and typical > 0 else None))
    return tiles


def wall_context(
    request: Request, board: stats.Board, filters: Filters, now: datetime
) -> dict[str, Any]:
    """The wall's tiles and headline. `wall_state`: `empty` (nothing stored), `nothing` (the
    filter matches no ref: grey, never green, so a mistyped wall URL does not look fine),
    `failing`, `green` (refs exist and every one is green) or `quiet` (no red ref, but not all
    green: running, canceled, … only)."""
    counts = board.counts
    if filters.status is not None:
        # `board.counts` ignores the status filter: keep the statuses it selects.
        chosen = filters.status if isinstance(filters.status, tuple) else (filters.status,)
        counts = {status: board.counts.get(status, 0) for status in chosen}
    failing = counts.get(Status.FAILED, 0)
    if board.total == 0:
        state = "nothing" if filters.active else "empty"
    elif failing:
        state = "failing"
    elif counts.get(Status.SUCCESS, 0) == board.total:
        state = "green"
    else:
        state = "quiet"
    shown = [(name, value) for name in FILTER_PARAMS if (value := _text(request, name))]
    return {
        "tiles": wall_tiles(board.rows, now),
        "wall_state": state,
        "wall_counts": counts,
        "wall_failing": failing,
        "wall_filter": shown,
    }


def _scope(filters: Filters) -> str:
    parts = [str(value) for value in (filters.source, filters.project, filters.ref) if value]
    return " · ".join(parts) if parts else "all projects"


def _bad_filter(request: Request, exc: Invalid) -> HTMLResponse:
    """400: a filter past its limits (ciwatch.filters); nothing was read."""
    view = _view(request, ("refresh",))
    context = _base_context(request, view)
    problem = exc.problems[0]
    message = f"The `{problem.field}` filter {problem.problem}."
    context.update(title="Bad filter", message=message, code=400)
    return render("error.html", context, status_code=400)


@router.get("/projects/{source}/{project:path}", response_class=HTMLResponse, summary="Project")
async def project_page(request: Request, source: str, project: str) -> HTMLResponse:
    """One project: status per ref, time to green, the failing jobs of its newest failed run,
    trends and its run history (keyset pages: `cursor`; `ref` narrows history and trends;
    `refs` pages the refs). 404 for a project without runs."""
    try:
        ref = parse_filter("ref", request.query_params.getlist("ref"))
    except Invalid as exc:
        return _bad_filter(request, exc)
    view = _view(request, ("refresh",), {"ref": _joined(ref)})
    context = _base_context(request, view)
    cursor = _text(request, "cursor")
    refs_page = _positive(request, "refs")
    runtime = request.app.state.runtime
    source, project = storable(source), storable(project)
    context.update(source=source, project=project, ref=_joined(ref))
    try:
        data = await runtime.store.project_overview(
            source,
            project,
            now=view.now,
            ref=ref,
            board_limit=BOARD_PAGE,
            board_offset=(refs_page - 1) * BOARD_PAGE,
            history_limit=HISTORY_PAGE,
            cursor=cursor,
            cache=stats_cache(request),
            zone=view.zone,
        )
        context["alerts_firing"] = await firing_badge(runtime.store)
    except ValueError:
        context.update(
            title="Bad page link",
            message="The `cursor` of this link is not one the dashboard made.",
            code=400,
        )
        return render("error.html", context, status_code=400)
    except StoreError as exc:
        return _unavailable(request, view, exc)
    if data.board.total == 0:
        context.update(title="Unknown project", code=404)
        return render("not_found.html", context, status_code=404)
    scope = f"{project} · {ref}" if ref is not None else project
    rate_chart, duration_chart = charts(data.days, scope)
    context.update(
        data=data,
        board=data.board,
        refs_page=refs_page,
        refs_pages=max(math.ceil(data.board.total / BOARD_PAGE), 1),
        cursor=cursor,
        rate_chart=rate_chart,
        duration_chart=duration_chart,
        totals=totals(data.days),
        median=median_duration(data.days),
        recovery=data.recovery,
        provider=data.board.rows[0].state.provider if data.board.rows else "",
        days=len(data.days),
        commit_author=commit_author,
        commits_count=commits_count,
        tests_sentence=tests_sentence,
    )
    try:
        context.update(await _time_to_recovery(runtime, source, project, view.now))
    except StoreError as exc:
        return _unavailable(request, view, exc)
    return render("project.html", context)


# -- one run ------------------------------------------------------------------------------------

# A stage takes the colour of its worst job: failed over anything still going, over success;
# skipped only when every job was skipped.
STAGE_ORDER = (
    Status.FAILED,
    Status.RUNNING,
    Status.QUEUED,
    Status.MANUAL,
    Status.CANCELED,
    Status.SUCCESS,
    Status.SKIPPED,
)


@dataclass(frozen=True)
class Stage:
    """The jobs of one stage of a run, in the run's job order, and the stage's worst status (a
    job allowed to fail counts as success there, and marks the stage `warned`)."""

    name: str
    jobs: list[Job]
    status: Status
    warned: bool
    duration: float | None


def _stage_span(jobs: Sequence[Job]) -> float | None:
    """From the first job's start to the last job's finish, when every job has both."""
    starts = [job.started_at for job in jobs if job.started_at is not None]
    ends = [job.finished_at for job in jobs if job.finished_at is not None]
    if not starts or len(ends) != len(jobs):
        return None
    seconds = (max(ends) - min(starts)).total_seconds()
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def stages(jobs: Sequence[Job]) -> list[Stage]:
    """`jobs` grouped by stage, stages in the order their first job appears (`jobs_for` order);
    jobs without a stage (GitHub jobs) form one unnamed stage."""
    grouped: dict[str, list[Job]] = {}
    for job in jobs:
        grouped.setdefault(job.stage or "", []).append(job)
    found = []
    for name, members in grouped.items():
        effective = [
            Status.SUCCESS if job.allow_failure and job.status is Status.FAILED else job.status
            for job in members
        ]
        worst = min(effective, key=STAGE_ORDER.index)
        warned = any(job.allow_failure and job.status is Status.FAILED for job in members)
        found.append(Stage(name, members, worst, warned, _stage_span(members)))
    return found


@router.get("/runs/{source}/{project:path}/{run_id}", response_class=HTMLResponse, summary="Run")
async def run_page(request: Request, source: str, project: str, run_id: str) -> HTMLResponse:
    """One run: status, ref, sha, times, link to the CI system, a bar of its stages and its
    jobs grouped by stage (the HTML of `/api/v1/runs/{source}/{project}/{run_id}`). 404 for
    a run not stored."""
    view = _view(request, ("refresh",))
    context = _base_context(request, view)
    key = RunKey(storable(source), storable(project), storable(run_id))
    runtime = request.app.state.runtime
    context.update(source=key.source, project=key.project, run_id=key.run_id)
    try:
        run = await runtime.store.get_run(key)
        jobs = [] if run is None else await runtime.store.jobs_for(key)
        failed = run is not None and run.status is Status.FAILED
        context["since_green"] = await runtime.store.commit_range(key) if failed else None
        context["alerts_firing"] = await firing_badge(runtime.store)
    except StoreError as exc:
        return _unavailable(request, view, exc)
    if run is None:
        context.update(title="Unknown run", code=404)
        return render("not_found.html", context, status_code=404)
    context.update(run=run, jobs=jobs, stages=stages(jobs), commits_count=commits_count)
    return render("run.html", context)


async def _time_to_recovery(
    runtime: Any, source: str, project: str, now: datetime
) -> dict[str, Any]:
    """The project's time to recovery per ref (`recovery.window`), for its page."""
    window: timedelta = runtime.settings.recovery.window
    store: Store = runtime.store
    per_ref = await store.recovery_stats(now=now, window=window, source=source, project=project)
    found: list[RecoveryStats] = sorted(per_ref.values(), key=lambda item: item.ref.ref)
    return {"ttr": found, "ttr_window": format_duration(window)}


@router.get("/alerts", response_class=HTMLResponse, summary="Alerts")
async def alerts_page(request: Request) -> HTMLResponse:
    """Firing alerts (newest first) with the outcome of their newest notice on each channel,
    the channels that failed for good with their error, recently resolved alerts and the
    silences in force, with the forms that add and expire silences. `silence_source`,
    `silence_project`, `silence_ref`, `silence_event` prefill the new silence (the "Silence"
    link of a firing alert); `created` and `expired` (a silence id) confirm a change."""
    form = {key: _text(request, f"silence_{key}") or "" for key in MATCHER_KEYS}
    if any(form.values()):
        form["duration"] = SILENCE_DEFAULT
    done = {key: value for key in ("created", "expired") if (value := _digits(request, key))}
    return await _alerts_response(request, form=form, done=done)


async def _alerts_response(
    request: Request,
    *,
    form: Mapping[str, str] | None = None,
    problem: str | None = None,
    status_code: int = 200,
    done: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The alerts page; `form` refills the new-silence form and `problem` says what was wrong
    with the last submission (answered with `status_code`)."""
    view = _view(request, ("refresh",))
    context = _base_context(request, view)
    runtime = request.app.state.runtime
    settings = runtime.settings.alerts
    token, fresh_nonce = csrf.form_token(request)
    context.update(
        no_channels=not settings.channels,
        no_routes=not settings.routes,
        overview=None,
        failing=[],
        silences=[],
        history_limit=ALERTS_HISTORY,
        form=dict.fromkeys(SILENCE_FORM, "") | dict(form or {}),
        problem=problem,
        done=dict(done or {}),
        csrf_field=csrf.FIELD,
        csrf_token=token,
        max_silence_days=MAX_SILENCE.days,
    )
    store: Store = runtime.store
    try:
        overview = await alert_views.alerts_overview(
            store, firing_limit=ALERTS_FIRING, history_limit=ALERTS_HISTORY
        )
        silences = await store.list_silences(active_at=view.now)
    except StoreError as exc:
        return _unavailable(request, view, exc)
    context.update(
        overview=overview,
        failing=alert_views.failing_channels(overview.firing),
        silences=silences,
        alerts_firing=overview.firing_total,
    )
    return _with_cookie(request, render("alerts.html", context, status_code), fresh_nonce)


def _with_cookie(request: Request, response: HTMLResponse, nonce: str | None) -> HTMLResponse:
    csrf.set_cookie(request, response, nonce)
    return response


def _digits(request: Request, name: str) -> str | None:
    value = _text(request, name)
    return value if value is not None and value.isdigit() and len(value) < 19 else None


def glob_literal(text: str) -> str:
    """A silence glob matching exactly `text`: `*`, `?` and `[` in a name are bracketed."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def silence_link(view: View, alert: alert_views.AlertView) -> str:
    """The alerts page with the new-silence form prefilled for `alert`'s source, project and
    ref (as literal globs), not reloading itself while it is filled in."""
    labels = {"source": alert.source, "project": alert.project, "ref": alert.ref}
    params = {f"silence_{key}": glob_literal(value) for key, value in labels.items() if value}
    return view.url("/alerts", refresh="0", **params) + "#new-silence"


# -- silence forms --------------------------------------------------------------------------

SILENCE_FORM = (*MATCHER_KEYS, "duration", "ends_at", "comment", "created_by")
SILENCE_DEFAULT = "2h"
# A silence form is a few short fields; anything larger is not one of ours.
FORM_LIMIT = 64 * 1024
FORM_FIELDS = 50
_FORM_TYPE = "application/x-www-form-urlencoded"
_FIELD_LABELS = {
    "matchers": "Matchers",
    "source": "Source",
    "project": "Project",
    "ref": "Ref",
    "event": "Event",
    "duration": "Duration",
    "ends_at": "End time",
    "comment": "Comment",
    "created_by": "Author",
}


class FormRefused(Exception):
    """A form submission answered with `status` and `message`, changing nothing."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _form(request: Request) -> dict[str, str]:
    """The submitted fields (urlencoded, the last of repeated names) after the CSRF checks."""
    problem = csrf.cross_origin(request)
    if problem is not None:
        raise FormRefused(403, f"Refused: {problem}.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise FormRefused(413, f"Refused: a form holds at most {FORM_LIMIT} bytes.")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body and kind != _FORM_TYPE:
        raise FormRefused(415, f"Refused: the form must be sent as {_FORM_TYPE}.")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=FORM_FIELDS)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormRefused(400, f"Refused: the form could not be read ({exc}).") from exc
    fields = dict(pairs)
    problem = csrf.bad_token(request, fields.get(csrf.FIELD))
    if problem is not None:
        raise FormRefused(403, f"Refused: {problem}.")
    return fields


def _refused(request: Request, refused: FormRefused) -> HTMLResponse:
    view = _view(request, ())
    context = _base_context(request, view)
    context.update(title="Form refused", message=refused.message, code=refused.status)
    return render("error.html", context, status_code=refused.status)


def _signed_in(request: Request) -> str | None:
    """The basic-auth user name when the server asks for credentials (require_auth checked
    them already), else None."""
    server = request.app.state.runtime.settings.server
    if server.username is None or server.password is None:
        return None
    given = parse_basic(request.headers.get("authorization"))
    return None if given is None else given[0]


def _silence_request(fields: Mapping[str, str]) -> SilenceCreate:
    """The form's fields as the API's SilenceCreate (its limits: one place per fact); blank
    fields are left out. FormRefused (400) names the field the schema refused."""

    def given(name: str) -> str | None:
        return fields.get(name, "").strip() or None

    body: dict[str, Any] = {
        "matchers": {key: value for key in MATCHER_KEYS if (value := given(key))},
        "duration": given("duration"),
        "ends_at": given("ends_at"),
        "comment": given("comment"),
        "created_by": given("created_by"),
    }
    try:
        return SilenceCreate.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][-1]) if first["loc"] else "matchers"
        label = _FIELD_LABELS.get(name, name)
        raise FormRefused(400, f"{label}: {first['msg']}.") from exc


@router.post("/alerts/silences", response_class=HTMLResponse, summary="Add a silence")
async def add_silence_form(request: Request) -> Response:
    """The new-silence form: the same checks and store call as `POST /api/v1/silences`, after
    the CSRF checks (`web/csrf.py`). 303 to `/alerts?created=ID` when stored; bad input
    redisplays the form with the reason and a 4xx, storing nothing."""
    try:
        fields = await _form(request)
    except FormRefused as refused:
        return _refused(request, refused)
    form = {key: fields.get(key, "") for key in SILENCE_FORM}
    runtime = request.app.state.runtime
    store: Store = runtime.store
    now = runtime.clock.now()
    try:
        body = _silence_request(fields)
        matchers = given_matchers(body.matchers.model_dump(exclude_none=True))
        ends_at = silence_end(now, duration=body.duration, ends_at=body.ends_at)
    except FormRefused as refused:
        return await _alerts_response(
            request, form=form, problem=refused.message, status_code=refused.status
        )
    except SilenceInputError as exc:
        label = _FIELD_LABELS.get(exc.field, exc.field)
        if exc.field == "ends_at" and exc.message.startswith("give ends_at"):
            problem = "Give a duration or an end time (one of them)."
        else:
            problem = f"{label}: {exc.message}."
        return await _alerts_response(request, form=form, problem=problem, status_code=400)
    author = body.created_by if body.created_by is not None else _signed_in(request)
    try:
        silence_id = await create_silence(
            store, matchers, now, ends_at, created_by=author, comment=body.comment
        )
    except StoreError as exc:
        return _unavailable(request, _view(request, ()), exc)
    return _see_other(request, created=silence_id)


@router.post("/alerts/silences/{silence_id}/expire", response_class=HTMLResponse, summary="Expire")
async def expire_silence_form(request: Request, silence_id: str) -> Response:
    """End a silence now (as `DELETE /api/v1/silences/{id}`), after the CSRF checks; 303 to
    `/alerts?expired=ID`, 404 with the page when there is no such silence."""
    try:
        await _form(request)
    except FormRefused as refused:
        return _refused(request, refused)
    runtime = request.app.state.runtime
    store: Store = runtime.store
    number = int(silence_id) if silence_id.isdigit() and len(silence_id) < 19 else 0
    try:
        found = None
        if 1 <= number <= MAX_ID:
            found = await alert_views.expire_silence(store, number, runtime.clock.now())
    except StoreError as exc:
        return _unavailable(request, _view(request, ()), exc)
    if found is None:
        problem = f"There is no silence {silence_id!r} to expire: nothing was changed."
        return await _alerts_response(request, problem=problem, status_code=404)
    return _see_other(request, expired=number)


def _see_other(request: Request, **done: int) -> RedirectResponse:
    """Post/redirect/get: back to the alerts page, saying what was done."""
    root = request.scope.get("root_path", "")
    query = urlencode({key: str(value) for key, value in done.items()})
    return RedirectResponse(f"{root}/alerts?{query}", status_code=303, headers=HEADERS)


FLAKY_LIMIT = 200


@router.get("/flaky", response_class=HTMLResponse, summary="Flaky jobs")
async def flaky_page(request: Request) -> HTMLResponse:
    """Jobs that failed and then passed on the same commit within `flaky.window` (a GitLab
    retry, a GitHub re-run attempt, a Jenkins rebuild), most flaky runs first. Filters:
    `source`, `project`."""
    view = _view(request, ("source", "project", "refresh"))
    context = _base_context(request, view)
    runtime = request.app.state.runtime
    source, project = _text(request, "source"), _text(request, "project")
    window: timedelta = runtime.settings.flaky.window
    context.update(
        jobs=[],
        source=source,
        project=project,
        window=format_duration(window),
        sources=sorted(s.name for s in runtime.settings.sources),
        limit=FLAKY_LIMIT,
    )
    store: Store = runtime.store
    try:
        found = await store.flaky_jobs(
            now=view.now, window=window, source=source, project=project, limit=FLAKY_LIMIT
        )
        context["alerts_firing"] = await firing_badge(store)
    except StoreError as exc:
        return _unavailable(request, view, exc)
    context.update(
        jobs=found, sources=sorted({*context["sources"], *(item.source for item in found)})
    )
    return render("flaky.html", context)

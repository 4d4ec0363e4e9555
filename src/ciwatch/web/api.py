"""The JSON API under `/api/v1` (docs/architecture.md#http-and-dashboard): runs, one run with its
jobs, project/ref states, target health, alerts and silences. Read-only but for silences; every
route here is behind
`require_auth` (see app.py).

Answers are built by `ciwatch.serialize`; the `response_model`s only document them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import StringConstraints

from ciwatch.alerting.silences import (
    SilenceInputError,
    create_silence,
    given_matchers,
    silence_end,
)
from ciwatch.alerting.views import alert_list, expire_silence, get_silence, silence_to_dict
from ciwatch.config.durations import parse_duration
from ciwatch.domain import RefState, RunKey, Status
from ciwatch.filters import (
    MAX_PATTERN_LENGTH,
    MAX_PATTERNS,
    Match,
    QueryFilters,
    matches,
    query_filters,
)
from ciwatch.serialize import commit_range_to_dict, job_to_dict, run_to_dict
from ciwatch.store.reliability import MAX_WINDOW, FlakyJob, recovery_fields
from ciwatch.timeutil import iso_z, to_utc
from ciwatch.validation import MAX_ID, NO_CONTROL_PATTERN, Invalid, storable
from ciwatch.web.context import runtime_of
from ciwatch.web.errors import ApiError, error_responses
from ciwatch.web.paths import project_path
from ciwatch.web.schemas import (
    AlertsAnswer,
    FlakyAnswer,
    ProjectsAnswer,
    RunDetail,
    RunsPage,
    SilenceAnswer,
    SilenceCreate,
    SilencesAnswer,
    TargetsAnswer,
)

if TYPE_CHECKING:
    from ciwatch.metrics import Snapshot, SnapshotCache

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
# /api/v1/projects pages (`limit`): a cursor without a limit gets the default page.
MAX_PROJECTS_LIMIT = 5000
DEFAULT_PROJECTS_LIMIT = 500

router = APIRouter(
    prefix="/api/v1",
    tags=["api"],
    responses=error_responses(401, 422, 503),
)

# Filters (ciwatch.filters): each parameter repeated at most MAX_PATTERNS times, each value
# bounded and free of control characters; the handlers parse them with `filters_of`.
_GLOBS = (
    " fnmatch globs (`*`, `?`, `[...]`, case-sensitive); several by repeating the parameter"
    " or separating them with commas (`[,]` is a literal comma); any of them matches."
)
_Pattern = Annotated[
    str, StringConstraints(max_length=MAX_PATTERN_LENGTH, pattern=NO_CONTROL_PATTERN)
]
_STATUS_WORD = "|".join(status.value for status in Status)
_StatusWords = Annotated[str, StringConstraints(pattern=f"^({_STATUS_WORD})(,({_STATUS_WORD}))*$")]
SourceQ = Annotated[
    list[_Pattern] | None,
    Query(description="Only these sources:" + _GLOBS, max_length=MAX_PATTERNS),
]
ProjectQ = Annotated[
    list[_Pattern] | None,
    Query(description="Only these projects (full paths):" + _GLOBS, max_length=MAX_PATTERNS),
]
RefQ = Annotated[
    list[_Pattern] | None,
    Query(
        description='Only these branches or tags ("" for runs without):' + _GLOBS,
        max_length=MAX_PATTERNS,
    ),
]
StatusQ = Annotated[
    list[_StatusWords] | None,
    Query(
        description="Only these normalised statuses (repeated or comma-separated).",
        max_length=MAX_PATTERNS,
    ),
]


def filters_of(request: Request) -> QueryFilters:
    """The request's `source`, `project`, `ref` and `status` filters (the API's `ref=`
    selects runs without a ref); 400 naming the parameter past a limit."""
    try:
        found = query_filters(request.query_params.getlist, keep_empty_ref=True)
    except Invalid as exc:
        raise ApiError(400, "invalid filter", exc.detail()) from exc
    if found.unknown_status:
        problem = f"unknown status {found.unknown_status[0]!r}"
        raise ApiError(400, "invalid filter", [{"field": "status", "problem": problem}])
    return found


@router.get(
    "/runs",
    response_model=RunsPage,
    summary="Runs, newest first",
    responses=error_responses(400),
)
async def list_runs(
    request: Request,
    source: SourceQ = None,
    project: ProjectQ = None,
    ref: RefQ = None,
    status: StatusQ = None,
    since: Annotated[
        datetime | None,
        Query(description="Only runs created at or after this time (ISO 8601; UTC if no offset)."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Runs per page.")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=1000, description="`next` of the previous page (same filters)."),
    ] = None,
) -> JSONResponse:
    """Runs matching every given filter (`source`, `project`, `ref`: globs, see
    docs/http.md), newest first (creation time, then run id), one page
    at a time: `next` is the cursor of the following page, null on the last one. Keyset
    pagination: a walk sees every run once even while new runs arrive (those show up on page
    one)."""
    store = runtime_of(request).store
    wanted = filters_of(request)
    try:
        page = await store.history(
            source=wanted.source,
            project=wanted.project,
            ref=wanted.ref,
            status=wanted.status,
            since=None if since is None else _since(since),
            limit=limit,
            cursor=cursor,
        )
    except ValueError as exc:
        if cursor is None:
            raise
        raise ApiError(400, "invalid cursor", {"field": "cursor", "message": str(exc)}) from exc
    body = {"runs": [run_to_dict(run) for run in page.runs], "next": page.next}
    return JSONResponse(body)


@router.get(
    "/runs/{source}/{project:path}/{run_id}",
    response_model=RunDetail,
    summary="One run with its jobs",
    responses=error_responses(404),
)
async def get_run(request: Request, source: str, project: str, run_id: str) -> JSONResponse:
    """One run and its jobs. The project is the full path, slashes included:
    `/api/v1/runs/gitlab-main/group/sub/app/1001`."""
    store = runtime_of(request).store
    key = RunKey(storable(source), storable(project), storable(run_id))
    run = await store.get_run(key)
    if run is None:
        detail = {"source": source, "project": project, "run_id": run_id}
        raise ApiError(404, "run not found", detail)
    jobs = await store.jobs_for(key)
    found = await store.commit_range(key) if run.status is Status.FAILED else None
    return JSONResponse(
        {
            "run": run_to_dict(run),
            "jobs": [job_to_dict(job) for job in jobs],
            "commit_range": commit_range_to_dict(found) if found is not None else None,
        }
    )


def _since(value: datetime) -> datetime:
    try:
        return to_utc(value)
    except ValueError as exc:
        raise ApiError(400, "invalid since", {"field": "since", "message": str(exc)}) from exc


def encode_ref_states(states: Iterable[RefState], *page: str | None) -> bytes:
    """`{"projects": [ref_state_to_dict(state), ...]}` as JSON, encoded by msgspec straight from
    the dataclasses: the same document (msgspec writes UTC times with `Z` and enums by value),
    about ten times faster than building the dicts and `json.dumps` over thousands of refs.
    With `page` (the next cursor, or None on the last page), also `"next"`."""
    body: dict[str, Any] = {"projects": [_ref_state_fields(state) for state in states]}
    if page:
        body["next"] = page[0]
    return _ENCODER.encode(body)


def _encode_with_recovery(
    states: Iterable[RefState],
    recovery: dict[Any, Any] | None,
    window: timedelta,
    *page: str | None,
) -> bytes:
    """`encode_ref_states`, each ref with its `recovery` numbers."""
    if recovery is None:
        return encode_ref_states(states, *page)
    seconds = window.total_seconds()
    body: dict[str, Any] = {
        "projects": [
            _ref_state_fields(
                state,
                {"window_seconds": seconds, **recovery_fields(recovery.get(state.key))},
            )
            for state in states
        ]
    }
    if page:
        body["next"] = page[0]
    return _ENCODER.encode(body)


WindowQ = Annotated[
    str | None,
    Query(
        max_length=20,
        description="The window, as a duration (`7d`, `36h`; at most 90 days). Default: the "
        "configured one.",
    ),
]


def _window(value: str | None, default: timedelta) -> timedelta:
    if value is None:
        return default
    try:
        window = parse_duration(value)
    except ValueError as exc:
        raise ApiError(400, "invalid window", _bad("window", str(exc))) from exc
    if not timedelta(0) < window <= MAX_WINDOW:
        problem = f"the window is more than 0 and at most {MAX_WINDOW.days} days"
        raise ApiError(400, "invalid window", _bad("window", problem))
    return window


def flaky_to_dict(found: FlakyJob, dashboard: str) -> dict[str, Any]:
    """One flaky job as `GET /api/v1/flaky` lists it."""
    links = {"dashboard": dashboard}
    if found.url is not None:
        links["web"] = found.url
    return {
        "source": found.source,
        "provider": found.provider,
        "project": found.project,
        "ref": found.ref,
        "job": found.job,
        "stage": found.stage,
        "failures": found.failures,
        "flaky_runs": found.flaky_runs,
        "commits": found.commits,
        "flaky_commits": found.flaky_commits,
        "rate": found.rate,
        "last_seen": iso_z(found.last_seen),
        "links": links,
    }


@router.get(
    "/flaky",
    response_model=FlakyAnswer,
    summary="Flaky jobs",
    responses=error_responses(400),
)
async def list_flaky(
    request: Request,
    source: SourceQ = None,
    project: ProjectQ = None,
    ref: RefQ = None,
    window: WindowQ = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many.")] = (
        DEFAULT_LIMIT
    ),
) -> JSONResponse:
    """Jobs that failed and then passed on the same commit within the window (default
    `flaky.window`, 14 days, of run creation): a GitLab retry, a GitHub re-run attempt or a
    Jenkins rebuild. Most flaky runs first. `rate` is the share of the commits the job ran on
    where it was flaky; `links.web` opens its latest flaky failure on the CI server."""
    runtime = runtime_of(request)
    length = _window(window, runtime.settings.flaky.window)
    wanted = filters_of(request)
    found = await runtime.store.flaky_jobs(
        now=runtime.clock.now(),
        window=length,
        source=wanted.source,
        project=wanted.project,
        ref=wanted.ref,
        limit=limit,
    )
    base = str(request.base_url).rstrip("/")
    body = {
        "window_seconds": length.total_seconds(),
        "jobs": [
            flaky_to_dict(item, f"{base}{project_path(item.source, item.project)}")
            for item in found
        ],
    }
    return JSONResponse(body)


def _ref_state_fields(state: RefState, recovery: Any = None) -> dict[str, Any]:
    fields = {
        "source": state.source,
        "provider": state.provider,
        "project": state.project,
        "ref": state.ref,
        "status": state.status,
        "failing": state.failing,
        "since": state.since,
        "last_run": state.last_run,
    }
    # Only `/api/v1/projects` adds the time to recovery; without it this is `ref_state_to_dict`.
    if recovery is not None:
        fields["recovery"] = recovery
    return fields


_ENCODER = msgspec.json.Encoder()


# Distinct (filters, window) answers of /api/v1/projects kept per snapshot.
MAX_KEPT_ANSWERS = 8


class ProjectsBodies:
    """`GET /api/v1/projects` without `limit`, built from the metrics snapshot (the one `/metrics`
    and `/cc.xml` show) and encoded once per snapshot, filters and window: requests between two
    refreshes copy bytes. `body` is None when the snapshot cannot answer (never read, the store
    down, or older than this process's last write: `SnapshotCache.get_current`); the handler
    then reads the store as before."""

    def __init__(self, cache: SnapshotCache) -> None:
        self._cache = cache
        self._snapshot: Snapshot | None = None
        # Per (filters, window): the time to recovery it was encoded with, and the body.
        self._bodies: dict[tuple[QueryFilters, timedelta], tuple[object, bytes]] = {}
        self.encodes = 0  # bodies encoded, for tests

    async def body(self, wanted: QueryFilters, window: timedelta) -> bytes | None:
        snapshot = await self._cache.get_current()
        if snapshot is None:
            return None
        recovery = await self._cache.recovery(snapshot, window)
        if snapshot is not self._snapshot:
            self._snapshot = snapshot
            self._bodies = {}
        key = (wanted, window)
        kept = self._bodies.get(key)
        # The time to recovery is read again on its own (every 60 s), the snapshot unchanged.
        if kept is not None and kept[0] is recovery:
            return kept[1]
        chosen = [state for state in snapshot.refs if wanted.keep(state)]
        found = _encode_with_recovery(chosen, dict(recovery or {}), window)
        self.encodes += 1
        if kept is not None or len(self._bodies) < MAX_KEPT_ANSWERS:
            self._bodies[key] = (recovery, found)
        return found


def projects_bodies_of(request: Request) -> ProjectsBodies:
    """The app's kept `/api/v1/projects` answers (`create_app` sets them)."""
    found: ProjectsBodies = request.app.state.projects_bodies
    return found


@router.get(
    "/projects",
    response_model=ProjectsAnswer,
    summary="State of every project/ref",
    responses=error_responses(400),
)
async def list_projects(
    request: Request,
    source: SourceQ = None,
    project: ProjectQ = None,
    ref: RefQ = None,
    status: StatusQ = None,
    limit: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_PROJECTS_LIMIT,
            description="Project/refs per page; without it, all of them in one answer.",
        ),
    ] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=1000, description="`next` of the previous page (same filters)."),
    ] = None,
    window: WindowQ = None,
) -> Response:
    """The latest state of every project/ref, sorted by source, project and ref. `status` is
    the ref's colour: the status of its newest run that ended success or failed (before it has
    one, its newest run's status); `failing` is true while that is failed, also while a newer
    run is queued or running. `recovery` holds the ref's breaks, mean and median time to
    recovery, longest red period and failure rate over `window` (default `recovery.window`).

    With `limit`, one page at a time: `next` is the cursor of the following page, null on the
    last. The filters select in the query, but for `status` (a ref's colour is computed), so
    with `status` a page may hold fewer than `limit` (even none) while `next` is not null."""
    wanted = filters_of(request)
    runtime = runtime_of(request)
    length = _window(window, runtime.settings.recovery.window)
    store = runtime.store
    next_page: str | None = None
    paged = limit is not None or cursor is not None
    if not paged:
        kept = await projects_bodies_of(request).body(wanted, length)
        if kept is not None:
            return Response(kept, media_type="application/json")
        states = await store.ref_states(
            source=wanted.source, project=wanted.project, ref=wanted.ref
        )
    else:
        try:
            states, next_page = await store.ref_states_page(
                source=wanted.source,
                project=wanted.project,
                ref=wanted.ref,
                limit=limit or DEFAULT_PROJECTS_LIMIT,
                cursor=cursor,
            )
        except ValueError as exc:
            raise ApiError(400, "invalid cursor", {"field": "cursor", "message": str(exc)}) from exc
    chosen = [state for state in states if wanted.keep(state)]
    recovery = None
    if chosen:
        # A page reads the runs of its own projects only, not of every ref the filters match.
        projects = Match(values=tuple(sorted({s.project for s in chosen}))) if paged else None
        recovery = await store.recovery_stats(
            now=runtime.clock.now(),
            window=length,
            source=wanted.source,
            project=projects or wanted.project,
            ref=wanted.ref,
        )
    page = (next_page,) if paged else ()
    return Response(
        _encode_with_recovery(chosen, recovery, length, *page), media_type="application/json"
    )


@router.get(
    "/targets",
    response_model=TargetsAnswer,
    summary="Health of every polled target",
    responses=error_responses(400),
)
async def list_targets(
    request: Request,
    source: SourceQ = None,
    healthy: Annotated[bool | None, Query(description="Only healthy (or unhealthy) ones.")] = None,
) -> JSONResponse:
    """Every target that has been polled, sorted by source and project, with its health: an
    unhealthy target's `reason` says why (e.g. the token lacks access, the project is gone).
    Each source's discovery (listing a group, organisation or folder) is listed too, as
    `kind: "discovery"` with an empty `project`: a source whose discovery fails shows here with
    the CI server's answer even when it has no targets at all. `paused_until` is set on every
    row of a source paused by a rate limit: none of its targets is polled before then."""
    runtime = runtime_of(request)
    sources = filters_of(request).source
    kinds = {configured.name: configured.type for configured in runtime.settings.sources}
    targets: list[dict[str, Any]] = []
    states = await runtime.store.target_states()
    now = runtime.clock.now()
    paused = {
        state.source: until
        for state in states
        if (until := state.paused_until) is not None and until > now
    }
    for state in states:
        if not matches(state.source, sources) or (healthy is not None and state.healthy != healthy):
            continue
        targets.append(
            {
                "source": state.source,
                "provider": kinds.get(state.source),
                "project": state.project,
                "kind": "discovery" if state.is_discovery else "target",
                "healthy": state.healthy,
                "reason": state.reason,
                "last_polled_at": iso_z(state.last_polled_at),
                "last_success_at": iso_z(state.last_success_at),
                "last_error_at": iso_z(state.last_error_at),
                "paused_until": iso_z(paused.get(state.source)),
            }
        )
    return JSONResponse({"targets": targets})


AlertStateQ = Annotated[
    Literal["firing", "resolved"] | None,
    Query(description="Only firing (or resolved) alerts."),
]


@router.get("/alerts", response_model=AlertsAnswer, summary="Alerts and their deliveries")
async def list_alerts(
    request: Request,
    state: AlertStateQ = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many.")] = (
        DEFAULT_LIMIT
    ),
) -> JSONResponse:
    """Firing alerts first (newest first), then resolved ones (most recently seen first). Each
    carries the newest notice per channel and its outcome: `sent`, `failed` (for good, with the
    channel's `error`) or `pending` (with the last `error` while it is being retried)."""
    answer = await alert_list(runtime_of(request).store, state=state, limit=limit)
    return JSONResponse({"alerts": answer})


@router.get("/silences", response_model=SilencesAnswer, summary="Silences")
async def get_silences(
    request: Request,
    everything: Annotated[
        bool, Query(alias="all", description="Also the expired and future ones (`?all=1`).")
    ] = False,
) -> JSONResponse:
    """The silences in force now, by id; with `all=1` every stored silence."""
    runtime = runtime_of(request)
    now = runtime.clock.now()
    found = await runtime.store.list_silences(active_at=None if everything else now)
    return JSONResponse({"silences": [silence_to_dict(s, now) for s in found]})


@router.post(
    "/silences",
    response_model=SilenceAnswer,
    status_code=201,
    summary="Add a silence",
    responses=error_responses(400),
)
async def post_silence(request: Request, body: SilenceCreate) -> JSONResponse:
    """Mute alerts whose labels match every given glob (`source`, `project`, `ref`, `event`;
    at least one) from now until `ends_at`, or for `duration` (e.g. `2h`). Answers 201 with the
    silence; 400 naming the bad field."""
    store = runtime_of(request).store
    now = runtime_of(request).clock.now()
    try:
        matchers = given_matchers(body.matchers.model_dump(exclude_none=True))
        ends_at = silence_end(now, duration=body.duration, ends_at=body.ends_at)
    except SilenceInputError as exc:
        raise ApiError(400, "invalid silence", _bad(exc.field, exc.message)) from exc
    silence_id = await create_silence(
        store, matchers, now, ends_at, created_by=body.created_by, comment=body.comment
    )
    silence = await get_silence(store, silence_id)
    assert silence is not None
    return JSONResponse({"silence": silence_to_dict(silence, now)}, status_code=201)


def _bad(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


@router.delete(
    "/silences/{silence_id}",
    response_model=SilenceAnswer,
    summary="Expire a silence now",
    responses=error_responses(404),
)
async def expire(
    request: Request, silence_id: Annotated[int, Path(ge=1, le=MAX_ID)]
) -> JSONResponse:
    """End a silence now (it stays listed with `?all=1`); 200 with the silence, 404 when there
    is none with that id. A silence already over is answered unchanged."""
    store = runtime_of(request).store
    now = runtime_of(request).clock.now()
    silence = await expire_silence(store, silence_id, now)
    if silence is None:
        raise ApiError(404, "silence not found", {"id": silence_id})
    return JSONResponse({"silence": silence_to_dict(silence, now)})

"""The JSON API under `/api/v1` (DESIGN §9): runs, one run with its jobs, project/ref states,
target health, alerts and silences. Read-only but for silences; every route here is behind
`require_auth` (see app.py).

Answers are built by `ciwatch.serialize`; the `response_model`s only document them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from ciwatch.alerting.silences import (
    SilenceInputError,
    create_silence,
    given_matchers,
    list_silences,
    silence_end,
)
from ciwatch.alerting.views import alert_list, expire_silence, get_silence, silence_to_dict
from ciwatch.domain import RefState, RunKey, Status
from ciwatch.serialize import job_to_dict, run_to_dict
from ciwatch.store import SqlStore
from ciwatch.timeutil import iso_z, to_utc
from ciwatch.validation import MAX_ID, NO_CONTROL_PATTERN, storable
from ciwatch.web.context import runtime_of
from ciwatch.web.errors import ApiError, error_responses
from ciwatch.web.schemas import (
    AlertsAnswer,
    ProjectsAnswer,
    RunDetail,
    RunsPage,
    SilenceAnswer,
    SilenceCreate,
    SilencesAnswer,
    TargetsAnswer,
)

MAX_LIMIT = 500
DEFAULT_LIMIT = 50

router = APIRouter(
    prefix="/api/v1",
    tags=["api"],
    responses=error_responses(401, 422, 503),
)

# Filters hold the identifiers' limits (ciwatch.validation): no control character, bounded.
_FILTER = {"max_length": 1000, "pattern": NO_CONTROL_PATTERN}
SourceQ = Annotated[str | None, Query(description="Only this source.", **_FILTER)]
ProjectQ = Annotated[str | None, Query(description="Only this project (full path).", **_FILTER)]
RefQ = Annotated[
    str | None,
    Query(description='Only this branch or tag ("" for runs without).', **_FILTER),
]
StatusQ = Annotated[Status | None, Query(description="Only this normalised status.")]


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
    """Runs matching every given filter, newest first (creation time, then run id), one page
    at a time: `next` is the cursor of the following page, null on the last one. Keyset
    pagination: a walk sees every run once even while new runs arrive (those show up on page
    one)."""
    store = runtime_of(request).store
    try:
        page = await store.history(
            source=source,
            project=project,
            ref=ref,
            status=status,
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
    return JSONResponse({"run": run_to_dict(run), "jobs": [job_to_dict(job) for job in jobs]})


def _since(value: datetime) -> datetime:
    try:
        return to_utc(value)
    except ValueError as exc:
        raise ApiError(400, "invalid since", {"field": "since", "message": str(exc)}) from exc


def encode_ref_states(states: Iterable[RefState]) -> bytes:
    """`{"projects": [ref_state_to_dict(state), ...]}` as JSON, encoded by msgspec straight from
    the dataclasses: the same document (msgspec writes UTC times with `Z` and enums by value),
    about ten times faster than building the dicts and `json.dumps` over thousands of refs."""
    return _ENCODER.encode({"projects": [_ref_state_fields(state) for state in states]})


def _ref_state_fields(state: RefState) -> dict[str, Any]:
    return {
        "source": state.source,
        "provider": state.provider,
        "project": state.project,
        "ref": state.ref,
        "status": state.status,
        "failing": state.failing,
        "since": state.since,
        "last_run": state.last_run,
    }


_ENCODER = msgspec.json.Encoder()


@router.get("/projects", response_model=ProjectsAnswer, summary="State of every project/ref")
async def list_projects(
    request: Request,
    source: SourceQ = None,
    project: ProjectQ = None,
    ref: RefQ = None,
    status: StatusQ = None,
) -> Response:
    """The latest state of every project/ref, sorted by source, project and ref. `status` is
    the ref's colour: the status of its newest run that ended success or failed (before it has
    one, its newest run's status); `failing` is true while that is failed, also while a newer
    run is queued or running."""
    states = await runtime_of(request).store.ref_states(source=source, project=project)
    chosen = [
        state
        for state in states
        if (ref is None or state.ref == ref) and (status is None or state.status is status)
    ]
    return Response(encode_ref_states(chosen), media_type="application/json")


@router.get("/targets", response_model=TargetsAnswer, summary="Health of every polled target")
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
        if (source is not None and state.source != source) or (
            healthy is not None and state.healthy != healthy
        ):
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


def _sql_store(request: Request) -> SqlStore:
    store = runtime_of(request).store
    if not isinstance(store, SqlStore):  # alerting's queries are SQL
        raise ApiError(501, "alerting needs the SQL store")
    return store


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
    answer = await alert_list(_sql_store(request), state=state, limit=limit)
    return JSONResponse({"alerts": answer})


@router.get("/silences", response_model=SilencesAnswer, summary="Silences")
async def get_silences(
    request: Request,
    everything: Annotated[
        bool, Query(alias="all", description="Also the expired and future ones (`?all=1`).")
    ] = False,
) -> JSONResponse:
    """The silences in force now, by id; with `all=1` every stored silence."""
    store = _sql_store(request)
    now = runtime_of(request).clock.now()
    found = await list_silences(store, active_at=None if everything else now)
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
    store = _sql_store(request)
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
    store = _sql_store(request)
    now = runtime_of(request).clock.now()
    silence = await expire_silence(store, silence_id, now)
    if silence is None:
        raise ApiError(404, "silence not found", {"id": silence_id})
    return JSONResponse({"silence": silence_to_dict(silence, now)})

"""`GET /cc.xml`: the CCTray feed that build monitors read (CCMenu, Nevergreen, BuildNotify).

One `<Project>` per project/ref, named `SOURCE/PROJECT:REF` (just `SOURCE/PROJECT` for runs
without a ref), built from the metrics snapshot (so a monitor polling every few seconds costs
the store nothing more) and serialised by ElementTree, which escapes every attribute value.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ciwatch.domain import RefState, Run, Status
from ciwatch.filters import QueryFilters
from ciwatch.metrics import Snapshot
from ciwatch.timeutil import iso_z
from ciwatch.web.api import ProjectQ, RefQ, SourceQ, StatusQ, filters_of
from ciwatch.web.context import runtime_of, snapshot_cache_of
from ciwatch.web.errors import STORE_DETAIL, STORE_UNAVAILABLE, ApiError, error_responses
from ciwatch.web.paths import project_path

MEDIA_TYPE = "application/xml"

# Characters XML 1.0 cannot carry at all, even escaped; a CI value holding one loses it.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


router = APIRouter(tags=["cctray"])


def _clean(value: str) -> str:
    return _NOT_XML.sub("", value)


def project_name(state: RefState) -> str:
    """`source/project:ref`, or `source/project` for a ref-less run."""
    name = f"{state.source}/{state.project}"
    return f"{name}:{state.ref}" if state.ref else name


def _label(run: Run) -> str:
    return str(run.number) if run.number is not None else run.run_id


def last_build_status(state: RefState) -> str:
    """The ref's colour in CCTray's words: Failure when it is `failing` (a new run in progress
    keeps it so), Success when its newest success/failed run succeeded, else Unknown."""
    if state.failing:
        return "Failure"
    return "Success" if state.status is Status.SUCCESS else "Unknown"


def project_attributes(state: RefState, decisive: Run | None, web_url: str) -> dict[str, str]:
    """The attributes of one `<Project>`.

    `lastBuildStatus` is the ref's colour (`last_build_status`); label and time are those of
    the run that set it (`decisive`, else the newest run). `activity` is Building while the
    newest run is queued or running.
    """
    newest = state.last_run
    shown = decisive or newest
    when = shown.finished_at or shown.created_at or shown.started_at or shown.updated_at
    return {
        "name": project_name(state),
        "activity": "Building" if newest.status.active else "Sleeping",
        "lastBuildStatus": last_build_status(state),
        "lastBuildLabel": _label(shown),
        "lastBuildTime": iso_z(when) or "",
        "webUrl": web_url,
    }


def render(snapshot: Snapshot, base_url: str, wanted: QueryFilters | None = None) -> bytes:
    """The CCTray document for the refs of `snapshot` passing the `wanted` filters."""
    root = ET.Element("Projects")
    for state in snapshot.refs:
        if wanted is not None and not wanted.keep(state):
            continue
        page = f"{base_url}{project_path(state.source, state.project)}"
        attributes = project_attributes(state, snapshot.decisive_run(state), page)
        ET.SubElement(root, "Project", {k: _clean(v) for k, v in attributes.items()})
    return bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True))


@router.get(
    "/cc.xml",
    summary="CCTray feed",
    response_class=Response,
    responses={
        200: {"content": {MEDIA_TYPE: {}}, "description": "The CCTray XML document."},
        **error_responses(400, 401, 503),
    },
)
async def cc_xml(
    request: Request,
    source: SourceQ = None,
    project: ProjectQ = None,
    ref: RefQ = None,
    status: StatusQ = None,
) -> Response:
    """Every project/ref as a CCTray `<Project>` (name `source/project:ref`); `webUrl` is the
    project's dashboard page, under `server.base_url` when set. The filters are those of
    `/api/v1/projects` (`status`: the ref's colour)."""
    wanted = filters_of(request)
    snapshot = await snapshot_cache_of(request).get()
    if snapshot is None:
        raise ApiError(503, STORE_UNAVAILABLE, STORE_DETAIL)
    configured = runtime_of(request).settings.server.base_url
    base = (configured or str(request.base_url)).rstrip("/")
    body = render(snapshot, base, wanted)
    return Response(body, media_type=MEDIA_TYPE)

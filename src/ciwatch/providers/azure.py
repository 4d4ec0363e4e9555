"""Azure Pipelines (Azure DevOps Services and Azure DevOps Server): the source model, the status
tables, the parsers of the Build REST API and of Service Hooks deliveries, and the webhook
handler. Pure apart from the handler's follow-up, which reads through the source's poller.

Field names come from Microsoft's own material (tests/fixtures/SOURCES.md): the `Build` and
`TimelineRecord` models of `microsoft/azure-devops-python-api` (v7_1), the REST reference
(`build/builds/list`, `build/timeline/get`) and the service hook event samples of
`MicrosoftDocs/azure-devops-docs` (docs/service-hooks/events.md).

The model (docs/extending.md):

- a **target** is one pipeline (a build definition): `<project>/<pipeline>` where `<pipeline>`
  is the definition's folder path and name joined with `/` (`\\` is the root folder, so a
  pipeline `web-ci` at the root of project `Fabrikam` is `Fabrikam/web-ci`, one in folder
  `\\apps` is `Fabrikam/apps/web-ci`). The organization is the source's, so it is not repeated.
- a **run** is one build: run id and number are the build `id` (the `buildNumber` such as
  `20241202.1` is a label, not an integer), ref is `sourceBranch` without `refs/heads/`
  (`refs/pull/7/merge` stays as it is), sha is `sourceVersion`, the URL is `_links.web.href`.
- a **job** is a timeline record of type `Job`, its stage the name of the `Stage` record above
  it (through its `Phase`); stages and phases themselves are not jobs.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import msgspec
from pydantic import AfterValidator

from ciwatch.config.base import BaseSource
from ciwatch.config.types import BaseUrl, Glob, problem
from ciwatch.domain import CommitRange, Job, RangeCommit, Run, Status, UnknownStatus, first_line
from ciwatch.errors import ProviderError, StoreError
from ciwatch.providers.base import matches
from ciwatch.providers.common import (
    Body,
    Payload,
    bad,
    decode,
    latest,
    logged,
    time_of,
)
from ciwatch.providers.hooks import (
    AfterFn,
    HookRequest,
    HookResult,
    Ignored,
    Rejected,
    Store,
    StoreFn,
    not_read,
    require_json,
    require_secret,
)
from ciwatch.providers.spec import ProviderSpec
from ciwatch.providers.watch import unwatched
from ciwatch.validation import parse_basic

if TYPE_CHECKING:
    from ciwatch.clock import Clock
    from ciwatch.config.models import CollectionSettings
    from ciwatch.http import RequestRecorder
    from ciwatch.ingest import Ingest
    from ciwatch.providers.base import Provider

KIND = "azure"

# -- configuration ----------------------------------------------------------------------------

_ORGANIZATION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,49}")
# Azure DevOps refuses these in project names (REST reference "Projects - Create").
_PROJECT_FORBIDDEN = re.compile(r"[\\/:*?\"<>|;#$%{}+=\[\]@,\x00-\x1f]")


def _organization(value: str) -> str:
    if not _ORGANIZATION.fullmatch(value):
        raise problem(f"{value!r} is not an Azure DevOps organization name (e.g. fabrikam)")
    return value


def _project(value: str) -> str:
    if not value.strip() or value != value.strip() or _PROJECT_FORBIDDEN.search(value):
        raise problem(f"{value!r} is not an Azure DevOps project name (e.g. Fabrikam-Fiber)")
    return value


def _api_version(value: str) -> str:
    if not re.fullmatch(r"\d+\.\d+(-preview(\.\d+)?)?", value):
        raise problem(f"{value!r} is not an Azure DevOps REST API version (e.g. 7.1)")
    return value


Organization = Annotated[str, AfterValidator(_organization)]
ApiVersion = Annotated[str, AfterValidator(_api_version)]
AzureProject = Annotated[str, AfterValidator(_project)]


class AzureSource(BaseSource):
    """Azure Pipelines. `url` is `https://dev.azure.com` (Services) or the collection URL of an
    Azure DevOps Server (`https://tfs.example.com/tfs`); `organization` is the organization (or,
    on a Server, the collection); `token` a personal access token with Build (Read)."""

    WATCH_FIELDS: ClassVar[tuple[str, ...]] = ("projects",)

    type: Literal["azure"] = "azure"
    url: BaseUrl = "https://dev.azure.com"
    organization: Organization
    projects: list[AzureProject] = []
    # Globs on the pipeline's folder path and name inside its project (`apps/*`, `*-ci`); empty:
    # every pipeline. `exclude_projects` drops targets by their full `<project>/<pipeline>`.
    pipelines: list[Glob] = []
    # The REST API version asked for (`api-version=`): 7.1 on Azure DevOps Services; an older
    # Azure DevOps Server may need `7.0` or `6.0`.
    api_version: ApiVersion = "7.1"

    def project_member(self, project: str) -> bool:
        """Whether a target (`<project>/<pipeline>`) is in a listed project (without regard to
        case, as Azure DevOps treats project names) and passes `pipelines`: discovery's
        decision, for webhooks."""
        head, _, pipeline = project.partition("/")
        if head.casefold() not in {name.casefold() for name in self.projects} or not pipeline:
            return False
        return not self.pipelines or matches(pipeline, self.pipelines)


# -- status -----------------------------------------------------------------------------------

# `BuildStatus` of the REST reference (`all` is a filter word, not a status): a build that is
# not `completed` is looked up here.
BUILD_STATUS: dict[str, Status] = {
    "none": Status.QUEUED,
    "notstarted": Status.QUEUED,
    "postponed": Status.QUEUED,  # queued for later (a scheduled build waiting for its time)
    "inprogress": Status.RUNNING,
    "cancelling": Status.RUNNING,  # cancel requested, the agent is still stopping
}
# `BuildResult` of a `completed` build. `partiallySucceeded`: some task failed with
# `continueOnError`; Azure shows it as a warning, not green, so it is failed here (as Jenkins'
# UNSTABLE is). `none` on a completed build is unknown: failed, never green.
BUILD_RESULT: dict[str, Status] = {
    "succeeded": Status.SUCCESS,
    "partiallysucceeded": Status.FAILED,
    "failed": Status.FAILED,
    "canceled": Status.CANCELED,
}
# `TimelineRecordState` and, for a `completed` record, `TaskResult`. `succeededWithIssues` is
# the record's form of `partiallySucceeded`: failed, with `allow_failure` set on the job.
RECORD_STATE: dict[str, Status] = {"pending": Status.QUEUED, "inprogress": Status.RUNNING}
RECORD_RESULT: dict[str, Status] = {
    "succeeded": Status.SUCCESS,
    "succeededwithissues": Status.FAILED,
    "failed": Status.FAILED,
    "canceled": Status.CANCELED,
    "abandoned": Status.CANCELED,  # the agent went away and the record was given up
    "skipped": Status.SKIPPED,
}


def map_status(word: str | None, result: str | None = None) -> tuple[Status, UnknownStatus | None]:
    """A build's `status` (and its `result` once `completed`) → the normalised status."""
    key = (word or "").strip().lower()
    if key == "completed":
        outcome = (result or "").strip().lower()
        if outcome in BUILD_RESULT:
            return BUILD_RESULT[outcome], None
        return Status.FAILED, UnknownStatus(KIND, f"completed/{result}")
    if key in BUILD_STATUS:
        return BUILD_STATUS[key], None
    return Status.RUNNING, UnknownStatus(KIND, word or "")


def map_record(state: str | None, result: str | None) -> tuple[Status, UnknownStatus | None]:
    """A timeline record's `state` (and `result` once `completed`) → the normalised status."""
    key = (state or "").strip().lower()
    if key == "completed":
        outcome = (result or "").strip().lower()
        if outcome in RECORD_RESULT:
            return RECORD_RESULT[outcome], None
        return Status.FAILED, UnknownStatus(KIND, f"record completed/{result}")
    if key in RECORD_STATE:
        return RECORD_STATE[key], None
    return Status.RUNNING, UnknownStatus(KIND, f"record {state}")


def _status(word: str | None, result: str | None) -> Status:
    """`map_status`, logging an unknown word once (`providers.common.logged`)."""
    return logged(map_status(word, result))


def _record_status(state: str | None, result: str | None) -> Status:
    return logged(map_record(state, result))


TEST_FIELDS = ("tests_total", "tests_failed", "tests_skipped", "tests_errored")


# -- payloads ---------------------------------------------------------------------------------


class _Href(Payload):
    href: str | None = None


class _Links(Payload):
    web: _Href | None = None


class _ProjectRef(Payload):
    id: str | None = None
    name: str | None = None


class _DefinitionRef(Payload):
    id: int | None = None
    name: str | None = None
    path: str | None = None
    project: _ProjectRef | None = None


class _Identity(Payload):
    display_name: str | None = msgspec.field(name="displayName", default=None)
    unique_name: str | None = msgspec.field(name="uniqueName", default=None)


class AzureBuild(Payload):
    """The fields of a `Build` ciwatch reads."""

    id: int
    status: str | None = None
    result: str | None = None
    queue_time: str | None = msgspec.field(name="queueTime", default=None)
    start_time: str | None = msgspec.field(name="startTime", default=None)
    finish_time: str | None = msgspec.field(name="finishTime", default=None)
    last_changed: str | None = msgspec.field(name="lastChangedDate", default=None)
    source_branch: str | None = msgspec.field(name="sourceBranch", default=None)
    source_version: str | None = msgspec.field(name="sourceVersion", default=None)
    reason: str | None = None
    definition: _DefinitionRef | None = None
    project: _ProjectRef | None = None
    requested_for: _Identity | None = msgspec.field(name="requestedFor", default=None)
    links: _Links | None = msgspec.field(name="_links", default=None)


class _BuildList(Payload):
    value: list[AzureBuild] = []


class AzureDefinition(Payload):
    """A `DefinitionReference` of `GET {project}/_apis/build/definitions`."""

    id: int
    name: str
    path: str | None = None
    project: _ProjectRef | None = None


class _DefinitionList(Payload):
    value: list[AzureDefinition] = []


class _Record(Payload):
    id: str
    type: str | None = None
    name: str | None = None
    parent_id: str | None = msgspec.field(name="parentId", default=None)
    state: str | None = None
    result: str | None = None
    start_time: str | None = msgspec.field(name="startTime", default=None)
    finish_time: str | None = msgspec.field(name="finishTime", default=None)
    last_modified: str | None = msgspec.field(name="lastModified", default=None)
    attempt: int | None = None
    order: int | None = None
    worker_name: str | None = msgspec.field(name="workerName", default=None)


class _Timeline(Payload):
    records: list[_Record] = []


class _TestRun(Payload):
    """The counts of a `TestRun` (models.py of Microsoft's test client) ciwatch reads."""

    id: int
    total_tests: int | None = msgspec.field(name="totalTests", default=None)
    unanalyzed_tests: int | None = msgspec.field(name="unanalyzedTests", default=None)
    not_applicable_tests: int | None = msgspec.field(name="notApplicableTests", default=None)


class _TestRunList(Payload):
    value: list[_TestRun] = []


class _TestCaseResult(Payload):
    outcome: str | None = None
    test_case_title: str | None = msgspec.field(name="testCaseTitle", default=None)
    automated_test_name: str | None = msgspec.field(name="automatedTestName", default=None)


class _TestCaseResultList(Payload):
    value: list[_TestCaseResult] = []


# -- parsers ----------------------------------------------------------------------------------

_NEVER = "0001-01-01"  # .NET's DateTime.MinValue: Azure's way of writing "no time"


def _time(value: str | None, what: str, field: str) -> datetime | None:
    if value is None or value.startswith(_NEVER):
        return None
    return time_of(value, what, field)


def pipeline_path(name: str, folder: str | None) -> str:
    """A definition's folder (`\\apps\\web`) and name → `apps/web/<name>`."""
    parts = [part for part in (folder or "").replace("\\", "/").split("/") if part]
    return "/".join([*parts, name])


def target_name(project: str, name: str, folder: str | None) -> str:
    """The ciwatch project of a pipeline: `<project>/<folder path>/<name>`."""
    return f"{project}/{pipeline_path(name, folder)}"


def strip_ref(branch: str | None) -> str | None:
    """`refs/heads/main` → `main`; any other ref (`refs/pull/7/merge`, `refs/tags/v1`) as is."""
    if branch is None:
        return None
    return branch.removeprefix("refs/heads/") or None


def build_to_run(source: str, project: str, build: AzureBuild) -> Run:
    """One decoded build → a run of `project` (the target's name)."""
    what = f"Azure Pipelines build {build.id} of {project}"
    queued = _time(build.queue_time, what, "queueTime")
    started = _time(build.start_time, what, "startTime")
    finished = _time(build.finish_time, what, "finishTime")
    changed = _time(build.last_changed, what, "lastChangedDate")
    updated = latest([changed, finished, started, queued])
    if updated is None:
        raise bad(what, "no time at all (queueTime, startTime, finishTime, lastChangedDate)")
    status = _status(build.status, build.result)
    word = build.result if (build.status or "").lower() == "completed" else build.status
    who = build.requested_for
    return Run(
        source=source,
        provider=KIND,
        project=project,
        run_id=str(build.id),
        status=status,
        provider_status=word,
        updated_at=updated,
        number=build.id,
        ref=strip_ref(build.source_branch),
        sha=build.source_version,
        event=build.reason,
        created_at=queued,
        started_at=started,
        finished_at=finished,
        duration_seconds=(finished - started).total_seconds() if started and finished else None,
        queued_seconds=(started - queued).total_seconds() if started and queued else None,
        url=build.links.web.href if build.links and build.links.web else None,
        author=(who.display_name or who.unique_name) if who else None,
    )


def parse_builds(body: Body) -> list[AzureBuild]:
    """`GET {project}/_apis/build/builds` → its builds (`value`)."""
    return decode(body, _BuildList, "Azure Pipelines builds list").value


def parse_build(body: Body) -> AzureBuild:
    """`GET {project}/_apis/build/builds/{id}` → the build."""
    return decode(body, AzureBuild, "Azure Pipelines build")


def parse_definitions(body: Body) -> list[AzureDefinition]:
    """`GET {project}/_apis/build/definitions` → its pipelines (`value`)."""
    return decode(body, _DefinitionList, "Azure Pipelines definitions list").value


def build_target(build: AzureBuild, fallback_project: str | None) -> str | None:
    """The target a build belongs to, from its own `project` and `definition` (the project
    falls back to `fallback_project`), or None when it names no definition."""
    definition = build.definition
    if definition is None or definition.name is None:
        return None
    project = (build.project.name if build.project else None) or (
        definition.project.name if definition.project else None
    )
    project = project or fallback_project
    return None if project is None else target_name(project, definition.name, definition.path)


def build_uri(build_id: str) -> str:
    """The artifact URI a test run names its build by (`buildUri` of `GET _apis/test/runs`)."""
    return f"vstfs:///Build/Build/{build_id}"


class _Change(Payload):
    """A `Change` of "Builds - Get Build Changes" and "Builds - Get Changes Between Builds":
    `id` (for a commit, its SHA-1), `message`, `author` (an IdentityRef)."""

    id: str | None = None
    message: str | None = None
    author: _Identity | None = None


class _ChangeList(Payload):
    """The list envelope `{"count", "value"}`, as every Azure DevOps list."""

    value: list[_Change] = []


def parse_build_changes(body: Body, sha: str | None) -> dict[str, Any]:
    """`GET {project}/_apis/build/builds/{id}/changes` → the commit fields of the change whose
    `id` is the built `sha` (else the first listed): `commit_title` (the message's first line),
    `commit_author` (`author.displayName`) and `commit_email` (`author.uniqueName` when it is
    an e-mail address: Azure DevOps gives the identity's name, not the git author's e-mail).
    No change: all None."""
    changes = decode(body, _ChangeList, "Azure Pipelines build changes").value
    wanted = (sha or "").lower()
    change = next((c for c in changes if wanted and (c.id or "").lower() == wanted), None)
    if change is None and changes:
        change = changes[0]
    who = change.author if change else None
    return {
        "commit_title": first_line(change.message) if change else None,
        "commit_author": (who.display_name or None) if who else None,
        "commit_email": _email(who),
    }


def _email(who: _Identity | None) -> str | None:
    """An identity's `uniqueName` when it is an e-mail address (Azure DevOps names the
    identity, e.g. `Build\\Fabrikam` for a service, not the git author's e-mail)."""
    email = (who.unique_name or "").strip() if who else ""
    return email if "@" in email and " " not in email else None


def parse_test_runs(body: Body) -> tuple[dict[str, Any], list[int]]:
    """`GET {project}/_apis/test/runs?buildUri=...` → the build's test counts summed over its
    test runs, and the ids of the runs with failed tests. Failed is `unanalyzedTests` ("number
    of failed tests in the run"), skipped `notApplicableTests`; Azure has no errored count. A
    build without test runs published no report: every count None."""
    runs = decode(body, _TestRunList, "Azure Test runs list").value
    if not runs:
        return dict.fromkeys(TEST_FIELDS), []
    return {
        "tests_total": sum(r.total_tests or 0 for r in runs),
        "tests_failed": sum(r.unanalyzed_tests or 0 for r in runs),
        "tests_skipped": sum(r.not_applicable_tests or 0 for r in runs),
        "tests_errored": None,
    }, [r.id for r in runs if (r.unanalyzed_tests or 0) > 0]


def parse_changes(body: Body, *, green: str | None, limit: int) -> CommitRange:
    """`GET {project}/_apis/build/changes?fromBuildId=&toBuildId=` → the range, in the order
    Azure lists the changes (newest first), `limit` kept; the green build's own commit, should
    Azure list it, is left out. The author's `uniqueName` is the e-mail when it looks like
    one."""
    changes = decode(body, _ChangeList, "Azure build changes")
    found = [c for c in changes.value if c.id and c.id != green]
    commits = []
    for change in found[:limit]:
        who = change.author
        commits.append(
            RangeCommit(
                change.id or "",
                title=first_line(change.message),
                author=(who.display_name or None) if who else None,
                email=_email(who),
            )
        )
    return CommitRange(tuple(commits), len(found))


def parse_failing_results(body: Body, limit: int) -> tuple[str, ...]:
    """`GET {project}/_apis/test/Runs/{id}/results?outcomes=Failed` → the first `limit` failed
    results' names (`automatedTestName`, else `testCaseTitle`)."""
    results = decode(body, _TestCaseResultList, "Azure Test results list").value
    names: list[str] = []
    for result in results:
        name = result.automated_test_name or result.test_case_title
        if (result.outcome or "").lower() != "failed" or not name:
            continue
        names.append(name)
        if len(names) >= limit:
            break
    return tuple(names)


def parse_timeline(source: str, project: str, run_id: str, body: Body) -> list[Job]:
    """`GET {project}/_apis/build/builds/{id}/timeline` → the build's jobs (records of type
    `Job`), each with the name of its stage (the `Stage` record above its `Phase`)."""
    what = f"Azure Pipelines timeline of {project} build {run_id}"
    records = decode(body, _Timeline, what).records
    by_id = {record.id: record for record in records}
    jobs: list[Job] = []
    ordered = sorted(
        (r for r in records if (r.type or "").lower() == "job"), key=lambda r: r.order or 0
    )
    for record in ordered:
        modified = _time(record.last_modified, what, "lastModified")
        started = _time(record.start_time, what, "startTime")
        finished = _time(record.finish_time, what, "finishTime")
        updated = latest([finished, started, modified])
        if updated is None:
            continue  # a job not yet scheduled has no time at all: the next read has one
        result = (record.result or "").lower()
        jobs.append(
            Job(
                source=source,
                project=project,
                run_id=run_id,
                job_id=record.id,
                name=record.name or record.id,
                status=_record_status(record.state, record.result),
                provider_status=record.result or record.state,
                updated_at=updated,
                stage=_stage_of(record, by_id),
                started_at=started,
                finished_at=finished,
                duration_seconds=(
                    (finished - started).total_seconds() if started and finished else None
                ),
                runner=record.worker_name,
                allow_failure=result == "succeededwithissues",
                attempt=max(record.attempt or 1, 1),
            )
        )
    return jobs


def _stage_of(record: _Record, by_id: dict[str, _Record]) -> str | None:
    parent = by_id.get(record.parent_id or "")
    for _ in range(4):  # Job → Phase → Stage; a classic pipeline has no stage
        if parent is None:
            return None
        if (parent.type or "").lower() == "stage":
            return parent.name
        parent = by_id.get(parent.parent_id or "")
    return None


# -- Service Hooks ----------------------------------------------------------------------------

BUILD_COMPLETE = "build.complete"
RUN_STATE_CHANGED = "ms.vss-pipelines.run-state-changed-event"
STAGE_STATE_CHANGED = "ms.vss-pipelines.stage-state-changed-event"
EVENTS = (BUILD_COMPLETE, RUN_STATE_CHANGED, STAGE_STATE_CHANGED)


class _Container(Payload):
    id: str | None = None


class _Containers(Payload):
    project: _Container | None = None


class _RunRef(Payload):
    id: int | None = None


class _PipelineResource(Payload):
    run: _RunRef | None = None


class _EventHead(Payload):
    id: str | None = None
    event_type: str | None = msgspec.field(name="eventType", default=None)
    containers: _Containers | None = msgspec.field(name="resourceContainers", default=None)


class _BuildEvent(_EventHead):
    resource: AzureBuild | None = None


class _PipelineEvent(_EventHead):
    resource: _PipelineResource | None = None


@dataclass(frozen=True, slots=True)
class BuildRef:
    """What a pipeline event names: the build (`resource.run.id`, the build id) and the project
    (`resourceContainers.project.id`, a GUID the REST API accepts in place of the name)."""

    build_id: int
    project_id: str
    with_jobs: bool


def event_type(body: Body) -> tuple[str, str | None]:
    """A delivery's `eventType` and event `id`."""
    head = decode(body, _EventHead, "Azure DevOps service hook")
    return head.event_type or "", head.id


def parse_build_complete(
    source: str, body: Body, fallback_project: str | None = None
) -> tuple[Run | None, BuildRef | None]:
    """A `build.complete` delivery → its run when the build names its project and pipeline,
    else a `BuildRef` to read the build by (older payloads carry no `project`)."""
    what = "Azure DevOps build.complete"
    event = decode(body, _BuildEvent, what)
    if event.resource is None:
        raise bad(what, "no `resource` (the build)")
    build = event.resource
    target = build_target(build, fallback_project)
    if target is not None and (build.status or "").lower() == "completed":
        return build_to_run(source, target, build), None
    project_id = (
        event.containers.project.id if event.containers and event.containers.project else None
    )
    if project_id is None:
        raise bad(what, "the build names no project, nor does `resourceContainers.project`")
    return None, BuildRef(build.id, project_id, with_jobs=True)


def parse_pipeline_event(body: Body) -> BuildRef:
    """A run or stage state change → the build it is about. These events carry neither the
    project's name nor the branch (events.md samples), so the build itself is read."""
    what = "Azure DevOps pipeline event"
    event = decode(body, _PipelineEvent, what)
    run = event.resource.run if event.resource else None
    if run is None or run.id is None:
        raise bad(what, "no `resource.run.id` (the build id)")
    project = event.containers.project if event.containers else None
    if project is None or not project.id:
        raise bad(what, "no `resourceContainers.project.id`")
    return BuildRef(run.id, project.id, with_jobs=event.event_type == STAGE_STATE_CHANGED)


def basic_password(header: str | None) -> str | None:
    """The password of `Authorization: Basic ...` (the Web Hooks consumer's "Basic
    authentication username/password"); the user name is not checked."""
    given = parse_basic(header)
    return given[1] if given is not None else None


class AzureHooks:
    """`POST /hooks/azure/{source}`: a Service Hooks subscription with the Web Hooks consumer,
    Basic authentication with the source's `webhook_secret` as the password (any user name),
    and one of the three events below. The delivery id is the event's `id`."""

    events = EVENTS
    summary = "Azure DevOps Service Hooks (Web Hooks consumer)"

    def handle(self, request: HookRequest) -> HookResult:
        settings = request.source
        assert isinstance(settings, AzureSource)
        secret = require_secret(settings).decode()
        given = basic_password(request.headers.get("authorization"))
        if given is None or not hmac.compare_digest(given.encode(), secret.encode()):
            raise Rejected(401, "rejected_signature", "missing or wrong Basic authentication")
        require_json(request)
        kind, event_id = event_type(request.body)
        if kind not in EVENTS:
            return not_read(kind)
        delivery = event_id or request.delivery()
        if kind == BUILD_COMPLETE:
            only = settings.projects[0] if len(settings.projects) == 1 else None
            run, ref = parse_build_complete(settings.name, request.body, only)
            if run is not None:
                if (reason := unwatched(settings, run.project, run.ref)) is not None:
                    return Ignored(reason)
                return Store(delivery, run, after=_details_after(run))
        else:
            ref = parse_pipeline_event(request.body)
        assert ref is not None
        return Store(delivery, None, store=_read_build(settings, ref))


def _details_after(run: Run) -> AfterFn:
    def after(ingest: Ingest, changed: bool) -> None:
        if changed:
            ingest.fetch_details_later(run)

    return after


def _read_build(settings: AzureSource, ref: BuildRef) -> StoreFn:
    """The store step of a delivery that names a build: read it (and, for a stage event or an
    old `build.complete`, its timeline) through the source's poller, then store it; a run
    event's timeline is read in the background once the run changed."""

    async def store(ingest: Ingest) -> bool:
        from ciwatch.providers.azure_poll import AzureProvider  # the poller imports this module

        provider = ingest.runtime.providers.get(settings.name)
        if not isinstance(provider, AzureProvider):
            return False  # no poller for this source in this process: nothing to read with
        try:
            run = await provider.build(ref.project_id, ref.build_id)
            if run is None or unwatched(settings, run.project, run.ref) is not None:
                return False
            jobs: Sequence[Job] = []
            if ref.with_jobs:
                run, jobs = await provider.details(run)
        except ProviderError as exc:
            # 503: Azure DevOps retries the delivery, which is then read again.
            raise StoreError(
                f"reading build {ref.build_id} from Azure DevOps failed: {exc}"
            ) from exc
        changed = await ingest.store(run, jobs)
        if changed and not ref.with_jobs:
            ingest.fetch_details_later(run)  # a run event: its jobs in the background
        return changed

    return store


# -- the registry entry -----------------------------------------------------------------------


def _build(
    settings: BaseSource,
    collection: CollectionSettings,
    clock: Clock,
    recorder: RequestRecorder | None,
) -> Provider:
    from ciwatch.providers.azure_poll import make_provider

    assert isinstance(settings, AzureSource)
    return make_provider(settings, collection, clock, recorder)


SPEC = ProviderSpec(
    kind=KIND,
    title="Azure Pipelines",
    settings=AzureSource,
    map_status=map_status,
    build=_build,
    webhook=AzureHooks(),
    simulator="ciwatch.simulator.azure",
)

"""Jenkins: payload parsing (remote access API, Pipeline Stage View `wfapi`, Notification plugin)
into the normalised model.

Sources read for field meanings: the Jenkins remote access API (`/api/json`, `_class` on every
object), `jenkinsci/pipeline-stage-view-plugin` (`rest-api/README.md`, `RunExt`, `FlowNodeExt`,
`StatusExt`), `jenkinsci/metrics-plugin` (`TimeInQueueAction`) and
`jenkinsci/notification-plugin` (`Phase`, `JobListener`, `BuildState`).

Mapping choices:

- A build is a run: `run_id` = `str(number)`, `number` = `number`. While `building` (or before
  Jenkins has a `result`) it is `running` with provider status `building`; after, its `result`
  maps through docs/architecture.md#the-model (`UNSTABLE` → failed, provider status `UNSTABLE`).
- `created_at` = `started_at` = `timestamp` (epoch ms). Once finished: `finished_at` =
  `timestamp + duration`, `duration_seconds` = `duration / 1000`.
- **`updated_at` = the build's `timestamp`, constant for the build.** Jenkins exposes no
  last-change time, and a build never leaves a terminal state (a replay or a rebuild is a new
  build number), so ordering one build's updates by status rank alone (queued < running <
  terminal, docs/architecture.md#state-machine-and-time) is right.
- `queued_seconds` = `queuingDurationMillis / 1000` of the metrics plugin's `TimeInQueueAction`
  ("the wall time from when it entered the queue until it left the queue"), when the build's
  `actions` carry it; `buildableDurationMillis` is only the buildable part of that wait.
- `author`: the `CauseAction` causes: the first `userId`, else the first `userName`, else the
  first cause's `shortDescription` ("Started by timer").
- `sha` / `ref`: the first git `BuildData` action's `lastBuiltRevision.SHA1` and its
  `branch[0].name`, stripped of `refs/remotes/origin/`, `origin/` or `refs/heads/`.
- Pipeline stages (wfapi) are the jobs of a build; their status words are mapped by
  `WFAPI_STATUS` below. A stage's `updated_at` is its start plus its duration so far (never
  before the run's start), so a stage that pauses for input after running is still ordered.
- Notification plugin: see `parse_notification_dated` for how its phases and times are used,
  and below for how a notification is stored.

Storing notifications (`ciwatch.ingest.Ingest.store_notification` with `keep_stored_times`
and `UNDATED`, the webhook handler's store step). Every update of one build carries the
build's constant `timestamp` as `updated_at`, so the status rank alone orders them. A
notification is stored before it is answered:

- for a stored build it is re-dated to that build's `updated_at`, and its phase moves it on;
- for a build the store has never seen it is stored as it is when its payload carries the
  build's time (floored to the second, never later than Jenkins' own `timestamp`), else dated
  `UNDATED` (1970), earlier than any timestamp. Either way the build read from the API in the
  background (or by the next poll) is newer by `updated_at`, so it wins the merge and the run
  takes Jenkins' own created/started times. Should Jenkins answer with less progress than a
  notification already stored (a read racing the build's end), the read keeps the stored status:
  status never goes backwards. The read and the notifications of one build are serialized in
  this process (`_exclusive`) so that this check and the write see the same stored run.

A FINALIZED notification is dated "now" by the plugin and carries no time of the build
(`untimed_end`). It never moves a stored build's start and finish: for a build
stored as finished it is not written at all (it brings nothing), for one stored as queued or
running it ends it, finishing at the stored start plus its `duration`. A timed end (COMPLETED,
or the API) of a build known only from a FINALIZED is written one microsecond after the stored
`updated_at`, so that its times win the merge rather than a tie of equal ranks.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

import msgspec
from pydantic import Field

from ciwatch.config.base import BaseSource, Check, both_or_neither
from ciwatch.config.types import JenkinsName, OptionalText
from ciwatch.domain import CommitRange, Job, RangeCommit, Run, Status, UnknownStatus, first_line
from ciwatch.providers import hooks, watch
from ciwatch.providers.common import (
    Body,
    Payload,
    bad,
    decode,
    logged,
    millis,
    time_of,
    warn_unknown_status,
)
from ciwatch.providers.spec import ProviderSpec
from ciwatch.timeutil import from_epoch_ms, to_utc
from ciwatch.validation import basic_userinfo, parsed

if TYPE_CHECKING:
    from ciwatch.clock import Clock
    from ciwatch.config.models import CollectionSettings
    from ciwatch.http import RequestRecorder
    from ciwatch.ingest import Ingest
    from ciwatch.providers.base import Provider

PROVIDER = "jenkins"


class JenkinsSource(BaseSource):
    """Jenkins; `url` is the root. `token` is the API token of `username`."""

    WATCH_FIELDS: ClassVar[tuple[str, ...]] = ("jobs", "folders")

    type: Literal["jenkins"] = "jenkins"
    username: OptionalText = None
    jobs: list[JenkinsName] = []
    folders: list[JenkinsName] = []
    builds: int = Field(20, ge=1, le=1000)

    def _extra_problems(self) -> list[Check]:
        return both_or_neither(self, "username", "token")

    def project_member(self, project: str) -> bool:
        # A listed job, a job inside one (multibranch `project/branch`) or inside a listed
        # folder at any depth; Jenkins names are exact.
        return watch.listed(project, self.jobs, fold=False) or watch.under(
            project, [*self.jobs, *self.folders], fold=False
        )


# docs/architecture.md#the-model. Jenkins build `result` (hudson.model.Result: SUCCESS,
# UNSTABLE, FAILURE, NOT_BUILT, ABORTED), the same words in the Notification plugin's
# `build.status`. "building" and "in queue" are states, not results (see `map_status`).
JENKINS_RESULT: dict[str, Status] = {
    "success": Status.SUCCESS,
    "failure": Status.FAILED,
    "unstable": Status.FAILED,
    "aborted": Status.CANCELED,
    "not_built": Status.SKIPPED,
}


def map_status(
    word: str | None, conclusion: str | None = None
) -> tuple[Status, UnknownStatus | None]:
    """A build's `result` (None while building: running; "in queue": queued). An unknown result
    ended the build: failed, never green."""
    key = (word or "").strip().lower()
    if key in ("", "building", "null", "none"):
        return Status.RUNNING, None
    if key in ("in queue", "queued", "in_queue"):
        return Status.QUEUED, None
    if key in JENKINS_RESULT:
        return JENKINS_RESULT[key], None
    return Status.FAILED, UnknownStatus(PROVIDER, word or "")


UNDATED = datetime(1970, 1, 1, tzinfo=UTC)
"""The `updated_at` of a build stored from a notification that carried no time, before the API
has given it Jenkins' own `timestamp`: earlier than any real timestamp, so that the build read
from the API (or polled) later wins the merge and brings Jenkins' times (see `ciwatch.ingest`)."""

# --------------------------------------------------------------------------------------------
# Parsing: vendor Structs and pure parse_* functions (no HTTP, no I/O)
# --------------------------------------------------------------------------------------------

FOLDER_CLASSES = frozenset(
    {
        "com.cloudbees.hudson.plugins.folder.Folder",
        "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
        "jenkins.branch.OrganizationFolder",
    }
)
"""`_class` values of items that hold other jobs rather than builds."""

# Pipeline Stage View `StatusExt` words. UNSTABLE is failed as for build results
# (docs/architecture.md#the-model); PAUSED_PENDING_INPUT is an input step waiting for a person:
# docs/architecture.md#the-model's Jenkins `manual`.
WFAPI_STATUS: dict[str, Status] = {
    "SUCCESS": Status.SUCCESS,
    "FAILED": Status.FAILED,
    "UNSTABLE": Status.FAILED,
    "ABORTED": Status.CANCELED,
    "NOT_EXECUTED": Status.SKIPPED,
    "SKIPPED": Status.SKIPPED,
    "IN_PROGRESS": Status.RUNNING,
    "PAUSED_PENDING_INPUT": Status.MANUAL,
}
# An unknown wfapi word is failed, as an unknown build result is in `map_status`: never green.
_WFAPI_UNKNOWN = Status.FAILED

_REF_PREFIXES = ("refs/remotes/origin/", "origin/", "refs/heads/")


class _Cause(Payload, rename="camel"):
    short_description: str | None = None
    user_id: str | None = None
    user_name: str | None = None


class _Branch(Payload):
    name: str | None = None


class _Revision(Payload):
    sha1: str | None = msgspec.field(default=None, name="SHA1")
    branch: list[_Branch] = msgspec.field(default_factory=list)


class _Action(Payload, rename="camel"):
    causes: list[_Cause] | None = None
    last_built_revision: _Revision | None = None
    queuing_duration_millis: int | None = None


class JenkinsBuild(Payload, rename="camel"):
    """A build (`/job/<name>/<number>/api/json`, or an item of a job's `builds`)."""

    number: int
    url: str | None = None
    result: str | None = None
    building: bool | None = None
    timestamp: int | None = None
    duration: int | None = None
    actions: list[_Action | None] = msgspec.field(default_factory=list)


class _Task(Payload):
    name: str | None = None
    url: str | None = None


class JenkinsQueueItem(Payload, rename="camel"):
    """An item of `/queue/api/json` `items`, or a job's `queueItem`."""

    id: int
    task: _Task | None = None
    in_queue_since: int | None = None
    why: str | None = None
    stuck: bool = False
    blocked: bool = False
    buildable: bool = False

    @property
    def project(self) -> str | None:
        """The queued job's full name, from its URL (`.../job/team/job/app/` → `team/app`)."""
        if self.task is None:
            return None
        return job_full_name_from_url(self.task.url) or self.task.name

    @property
    def queued_since(self) -> datetime | None:
        """When the item entered the queue, as aware UTC."""
        return None if self.in_queue_since is None else from_epoch_ms(self.in_queue_since)


class JenkinsJob(Payload, rename="camel"):
    """A job or folder (`/job/<name>/api/json`, or an item of a `jobs` tree)."""

    name: str
    url: str | None = None
    full_name: str | None = None
    class_: str | None = msgspec.field(default=None, name="_class")
    color: str | None = None
    in_queue: bool = False
    next_build_number: int | None = None
    builds: list[JenkinsBuild] = msgspec.field(default_factory=list)
    last_build: JenkinsBuild | None = None
    queue_item: JenkinsQueueItem | None = None
    jobs: list[JenkinsJob] = msgspec.field(default_factory=list)

    @property
    def is_folder(self) -> bool:
        """Whether this item holds jobs (folder, multibranch project, organisation folder)."""
        return self.class_ in FOLDER_CLASSES or bool(self.jobs)


class _WfapiStage(Payload, rename="camel"):
    id: str
    name: str
    status: str
    start_time_millis: int | None = None
    duration_millis: int | None = None
    exec_node: str | None = None


class _WfapiRun(Payload, rename="camel"):
    id: str | None = None
    name: str | None = None
    start_time_millis: int | None = None
    stages: list[_WfapiStage] = msgspec.field(default_factory=list)


class _Scm(Payload):
    branch: str | None = None
    commit: str | None = None


class _NotificationBuild(Payload):
    number: int
    phase: str
    status: str | None = None
    full_url: str | None = None
    url: str | None = None
    scm: _Scm | None = None
    # Newer plugin versions: the phase's own time, ISO text (older ones: epoch ms).
    timestamp: str | int | None = None
    duration: int | None = None


class _Notification(Payload):
    build: _NotificationBuild
    name: str | None = None
    url: str | None = None


def parse_job(source: str, body: Body) -> JenkinsJob:
    """`/job/<name>/api/json` → the job, with its `builds`, `lastBuild`, queue state and, for a
    folder, its child `jobs`. `source` names the Jenkins in error messages."""
    return decode(body, JenkinsJob, f"Jenkins job ({source})")


def parse_build(source: str, project: str, body: Body | JenkinsBuild) -> Run:
    """`/job/<name>/<number>/api/json` (or an already decoded build) → one run."""
    build = body if isinstance(body, JenkinsBuild) else decode(body, JenkinsBuild, "Jenkins build")
    return build_to_run(source, project, build)


def build_to_run(source: str, project: str, build: JenkinsBuild) -> Run:
    """A decoded build (e.g. from a job's `builds[...]`) → one run.

    Raises `BadPayload` when the build has no `timestamp`: request the builds with
    `tree=builds[number,url,result,building,timestamp,duration,actions[...]]`.
    """
    what = f"Jenkins build #{build.number} of {project}"
    if build.timestamp is None:
        raise bad(what, "no `timestamp`: was it requested in the `tree=` query?")
    started = from_epoch_ms(build.timestamp)
    done = not build.building and build.result is not None
    if done:
        word: str | None = build.result
        status = logged(map_status(build.result))
    else:
        word, status = "building", Status.RUNNING
    duration = millis(build.duration) if done else None
    finished = started + timedelta(seconds=duration) if duration is not None else None
    actions = [a for a in build.actions if a is not None]
    revision = next((a.last_built_revision for a in actions if a.last_built_revision), None)
    queued_ms = next(
        (a.queuing_duration_millis for a in actions if a.queuing_duration_millis is not None), None
    )
    return Run(
        source=source,
        provider=PROVIDER,
        project=project,
        run_id=str(build.number),
        status=status,
        provider_status=word,
        updated_at=started,
        number=build.number,
        ref=_strip_ref(revision.branch[0].name) if revision and revision.branch else None,
        sha=revision.sha1 if revision else None,
        created_at=started,
        started_at=started,
        finished_at=finished,
        duration_seconds=duration,
        queued_seconds=millis(queued_ms),
        url=build.url,
        author=_author(actions),
    )


def queued_run(source: str, project: str, job: JenkinsJob) -> Run | None:
    """The build a job has waiting in the queue, as a queued run numbered `nextBuildNumber`
    (the number Jenkins gives it when it leaves the queue), or None when nothing waits.

    When the build starts, the poll finds build `nextBuildNumber` running with its start
    `timestamp` (later than `inQueueSince`), which moves the same run forward.
    """
    item, number = job.queue_item, job.next_build_number
    if not job.in_queue or item is None or number is None or item.in_queue_since is None:
        return None
    since = from_epoch_ms(item.in_queue_since)
    return Run(
        source=source,
        provider=PROVIDER,
        project=project,
        run_id=str(number),
        status=Status.QUEUED,
        provider_status="in queue" + (f": {item.why}" if item.why else ""),
        updated_at=since,
        number=number,
        created_at=since,
    )


def parse_stages(source: str, project: str, run_id: str, body: Body) -> list[Job]:
    """`/job/<name>/<number>/wfapi/describe` → the run's stages as jobs."""
    what = f"Jenkins wfapi describe of {project} #{run_id}"
    return _stages(source, project, run_id, decode(body, _WfapiRun, what), what)


def parse_notification_dated(source: str, body: Body, received_at: datetime) -> tuple[Run, bool]:
    """A Notification plugin POST (JSON format) → the run it reports, and whether the payload
    carried its own time (False: the run is dated by `received_at`).

    Project: the job's full name from its `url` (`job/team/job/app/` → `team/app`), else `name`.
    Status by `build.phase`: QUEUED → queued, STARTED (and the step-triggered NONE) → running,
    COMPLETED / FINALIZED → `build.status` mapped as a build result. `url` is `build.full_url`
    (absolute; present when Jenkins knows its root URL), else the relative `build.url`.

    Times: newer plugin versions send `build.timestamp`, the phase's own time (`JobListener`:
    queue entry for QUEUED, start for STARTED, start + duration for COMPLETED, "now" for
    FINALIZED), and `build.duration`. The start is derived from them and, floored to the second,
    is `updated_at`: the same constant the API gives the build (`timestamp`), never later, so a
    poll that finds the build finished still wins over a STARTED notification. When the payload
    has no timestamp (the plugin's own example, older versions) `received_at` stands in for it.

    FINALIZED is sent when Jenkins is done with the build (after post-build steps, log and
    artifacts), and its `timestamp` is the time it was sent, not a time of the build: it gives
    no start and no finish (only `duration_seconds`) and counts as undated, so that it never
    moves a stored build's times (`keep_stored_times` keeps them, see `untimed_end`).

    Limitation: with `received_at` as `updated_at`, a non-terminal notification is dated later
    than the polled build's constant `timestamp`, so a poll could not move that build on from
    queued/running. The receiver therefore stores an undated notification of a build it has
    never seen at `UNDATED` instead (when it can read the build from the API), and re-dates a
    notification of a stored build to that build's `updated_at` (`align`).
    """
    what = "Jenkins notification"
    note = decode(body, _Notification, what)
    b = note.build
    project = job_full_name_from_url(note.url) or note.name
    if not project:
        raise bad(what, "neither `url` nor `name` names the job")
    phase = b.phase.upper()
    # FINALIZED's timestamp is "now" (JobListener.onFinalized): no time of the build.
    sent_now = phase == "FINALIZED" or b.timestamp in (0, "0")
    stamp = None if sent_now else time_of(b.timestamp, what, "build.timestamp")
    moment = stamp or to_utc(received_at)
    started: datetime | None = moment
    finished: datetime | None = None
    duration: float | None = None
    if phase == "FINALIZED":
        word = b.status or phase
        status = logged(map_status(b.status))
        started = None
        duration = millis(b.duration) if status.terminal else None
    elif phase == "COMPLETED":
        word = b.status or phase
        status = logged(map_status(b.status))
        if status.terminal:
            duration = millis(b.duration)
            started = moment - timedelta(seconds=duration) if duration is not None else moment
            finished = moment
    elif phase == "QUEUED":
        word, status, started = phase, Status.QUEUED, None
    else:
        word, status = phase, Status.RUNNING
        if phase not in ("STARTED", "NONE"):
            warn_unknown_status(PROVIDER, f"phase {b.phase}", status)
    created = started or moment
    updated = created.replace(microsecond=0) if stamp else created
    scm = b.scm
    run = Run(
        source=source,
        provider=PROVIDER,
        project=project,
        run_id=str(b.number),
        status=status,
        provider_status=word,
        updated_at=updated,
        number=b.number,
        ref=_strip_ref(scm.branch) if scm else None,
        sha=(scm.commit or None) if scm else None,
        created_at=created,
        started_at=started,
        finished_at=finished,
        duration_seconds=duration,
        url=b.full_url or b.url,
    )
    return run, stamp is not None


def untimed_end(run: Run) -> bool:
    """Whether `run` is a notification of a build's end that carries no end time of its own
    (FINALIZED): it must not replace the times a stored build has."""
    return run.status.terminal and run.finished_at is None and run.started_at is None


def keep_stored_times(run: Run, stored: Run) -> Run | None:
    """A notification of a stored build, aligned to it (`align`), such that a FINALIZED never
    moves the stored start and finish (see the module's doc). None: nothing to write."""
    untimed = untimed_end(run)
    run = align(run, stored)
    if stored.attempt != run.attempt:
        return run
    if untimed:
        if stored.status.terminal:
            return None
        started = stored.started_at
        finished = (
            started + timedelta(seconds=run.duration_seconds)
            if started is not None and run.duration_seconds is not None
            else None
        )
        return replace(run, started_at=started, finished_at=finished)
    if stored.status.terminal and untimed_end(stored) and run.status.terminal:
        return replace(run, updated_at=stored.updated_at + timedelta(microseconds=1))
    return run


def align(run: Run, stored: Run) -> Run:
    """A Jenkins notification re-dated to the stored build's `updated_at` (its constant
    timestamp, or `UNDATED`), with the stored build's created/started times, so that the status
    rank alone orders them. Both ways: a notification floored to the second is earlier than the
    API's millisecond timestamp, one dated on arrival is later."""
    if run.updated_at == stored.updated_at:
        return run
    return replace(
        run,
        updated_at=stored.updated_at,
        created_at=stored.created_at or run.created_at,
        started_at=stored.started_at or run.started_at,
    )


def job_full_name_from_url(url: str | None) -> str | None:
    """A job's full name from its URL: the segment after each `job/` (`.../job/a/job/b/` → `a/b`).

    Works on absolute and relative job or build URLs; None when the URL names no job.
    """
    if not url:
        return None
    parts = urlsplit(url).path.split("/")
    names = [unquote(parts[i + 1]) for i, p in enumerate(parts[:-1]) if p == "job" and parts[i + 1]]
    return "/".join(names) or None


def _strip_ref(name: str | None) -> str | None:
    if not name:
        return None
    for prefix in _REF_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _author(actions: list[_Action]) -> str | None:
    causes = [c for a in actions if a.causes for c in a.causes]
    user_id = next((c.user_id for c in causes if c.user_id), None)
    user_name = next((c.user_name for c in causes if c.user_name), None)
    return user_id or user_name or (causes[0].short_description if causes else None)


def _stage_status(word: str) -> Status:
    status = WFAPI_STATUS.get(word.strip().upper())
    if status is None:
        warn_unknown_status(PROVIDER, word, _WFAPI_UNKNOWN)
        return _WFAPI_UNKNOWN
    return status


def _stages(source: str, project: str, run_id: str, run: _WfapiRun, what: str) -> list[Job]:
    run_start = _epoch_ms(run.start_time_millis)
    jobs = []
    for stage in run.stages:
        status = _stage_status(stage.status)
        started = _epoch_ms(stage.start_time_millis)
        so_far = millis(stage.duration_millis)
        progress = (
            started + timedelta(seconds=so_far) if started and so_far is not None else started
        )
        updated = max((t for t in (run_start, progress) if t is not None), default=None)
        if updated is None:
            raise bad(what, f"stage {stage.id} ({stage.name!r}) and its run carry no start time")
        terminal = status.terminal and status is not Status.SKIPPED
        jobs.append(
            Job(
                source=source,
                project=project,
                run_id=run_id,
                job_id=stage.id,
                name=stage.name,
                status=status,
                provider_status=stage.status,
                updated_at=updated,
                started_at=started,
                finished_at=progress if terminal else None,
                duration_seconds=so_far if terminal else None,
                runner=stage.exec_node or None,
            )
        )
    return jobs


def _epoch_ms(value: int | None) -> datetime | None:
    # wfapi writes 0 for a stage that never started.
    return from_epoch_ms(value) if value else None


# --- commits and test reports (issue 13) ----------------------------------------------------
# `changeSets` (Pipeline runs) / `changeSet` (freestyle builds): `items[]` are
# `ChangeLogSet.Entry` beans (`commitId`, `msg`, `author{fullName}`; the git plugin's
# `GitChangeSet` adds `authorEmail`); `culprits[]` are users (`fullName`).
COMMIT_TREE = (
    "changeSet[items[commitId,msg,authorEmail,author[fullName]]],"
    "changeSets[items[commitId,msg,authorEmail,author[fullName]]],"
    "culprits[fullName]"
)
# `hudson.tasks.junit.TestResult` (`failCount`, `skipCount`, `passCount`, `suites[].cases[]`
# with `className`, `name`, `status`) or an aggregated result (`totalCount`, no suites).
TEST_TREE = "failCount,skipCount,passCount,totalCount,suites[cases[className,name,status]]"
FAILING_CASE = frozenset({"FAILED", "REGRESSION"})


class _FullName(Payload, rename="camel"):
    full_name: str | None = None


class _ChangeItem(Payload, rename="camel"):
    commit_id: str | None = None
    msg: str | None = None
    author_email: str | None = None
    author: _FullName | None = None


class _ChangeSet(Payload):
    items: list[_ChangeItem] = msgspec.field(default_factory=list)


class _BuildChanges(Payload, rename="camel"):
    change_set: _ChangeSet | None = None
    change_sets: list[_ChangeSet] = msgspec.field(default_factory=list)
    culprits: list[_FullName] = msgspec.field(default_factory=list)


def parse_commit(body: Body, sha: str | None) -> dict[str, Any]:
    """A build's `changeSets`/`changeSet` and `culprits` → the run's commit fields: the change
    whose `commitId` is the built SHA, else the newest change; without changes, the first
    culprit as the author."""
    changes = decode(body, _BuildChanges, "Jenkins build changes")
    items = [
        item
        for group in ([changes.change_set] if changes.change_set else []) + changes.change_sets
        for item in group.items
    ]
    chosen = next((i for i in items if sha and i.commit_id == sha), items[-1] if items else None)
    if chosen is None:
        culprit = next((c.full_name for c in changes.culprits if c.full_name), None)
        return {"commit_author": culprit} if culprit else {}
    return {
        "commit_title": first_line(chosen.msg),
        "commit_author": chosen.author.full_name if chosen.author else None,
        "commit_email": chosen.author_email or None,
    }


_CHANGE_ITEMS = "items[commitId,msg,authorEmail,author[fullName]]"


def range_tree(builds: int) -> str:
    """The `tree=` of a job's newest `builds` builds with their change sets (the commits each
    build brought since the previous one: what the commits since green are made of)."""
    return f"builds[number,changeSet[{_CHANGE_ITEMS}],changeSets[{_CHANGE_ITEMS}]]{{0,{builds}}}"


class _RangeBuild(Payload, rename="camel"):
    number: int
    change_set: _ChangeSet | None = None
    change_sets: list[_ChangeSet] = msgspec.field(default_factory=list)


class _RangeJob(Payload):
    builds: list[_RangeBuild] = msgspec.field(default_factory=list)


def parse_build_range(body: Body, after: int, upto: int, *, asked: int, limit: int) -> CommitRange:
    """A job's builds (`range_tree(asked)`, newest first) → the commits of the builds numbered
    `after` (the last green build, excluded) to `upto` (the failing one), newest first, each
    commit once; a build lists its changes oldest first. `cut` when the builds read do not
    reach back to `after` (more than `asked` builds since)."""
    job = decode(body, _RangeJob, "Jenkins builds' changes")
    chosen = sorted(
        (b for b in job.builds if after < b.number <= upto), key=lambda b: b.number, reverse=True
    )
    found: dict[str, RangeCommit] = {}
    for build in chosen:
        groups = ([build.change_set] if build.change_set else []) + build.change_sets
        for item in reversed([item for group in groups for item in group.items]):
            if item.commit_id and item.commit_id not in found:
                found[item.commit_id] = RangeCommit(
                    item.commit_id,
                    title=first_line(item.msg),
                    author=item.author.full_name if item.author else None,
                    email=item.author_email or None,
                )
    oldest = min((b.number for b in job.builds), default=after + 1)
    cut = len(job.builds) >= asked and oldest > after + 1
    commits = tuple(found.values())
    return CommitRange(commits[:limit], len(commits), cut=cut)


class _Case(Payload, rename="camel"):
    class_name: str | None = None
    name: str | None = None
    status: str | None = None


class _Suite(Payload):
    cases: list[_Case] = msgspec.field(default_factory=list)


class _TestResult(Payload, rename="camel"):
    fail_count: int | None = None
    skip_count: int | None = None
    pass_count: int | None = None
    total_count: int | None = None
    suites: list[_Suite] = msgspec.field(default_factory=list)


def parse_test_report(body: Body, limit: int) -> dict[str, Any]:
    """`{build}/testReport/api/json` → the run's test counts and first `limit` failing cases
    (`className::name`). Jenkins has no errored count (an error is a failure there)."""
    r = decode(body, _TestResult, "Jenkins test report")
    total = r.total_count
    if total is None and r.pass_count is not None:
        total = r.pass_count + (r.fail_count or 0) + (r.skip_count or 0)
    names: list[str] = []
    for suite in r.suites:
        for case in suite.cases:
            if (case.status or "").upper() in FAILING_CASE and case.name and len(names) < limit:
                names.append(f"{case.class_name}::{case.name}" if case.class_name else case.name)
    return {
        "tests_total": total,
        "tests_failed": r.fail_count,
        "tests_skipped": r.skip_count,
        "tests_errored": None,
        "tests_failing": tuple(names),
    }


# --------------------------------------------------------------------------------------------
# Webhooks: the Notification plugin (`POST /hooks/jenkins/{source}`)
# --------------------------------------------------------------------------------------------

NOTIFICATION_XML = (
    "the Notification plugin's XML format is not read: set the endpoint's Format to JSON"
)


def notification_token(request: hooks.HookRequest) -> str | None:
    """The secret a Jenkins notification presents: `X-Ciwatch-Token`, `?token=`,
    `Authorization: Bearer <secret>`, or HTTP Basic with the secret as the password, which is
    what the Notification plugin sends for credentials in the endpoint URL
    (`https://any-user:<secret>@host/hooks/jenkins/<source>`). Any user name is accepted: the
    secret alone authenticates (the source's `username` is the account ciwatch polls Jenkins
    with, not something Jenkins sends). A user-info without a colon is taken whole. The plugin
    sends the URL's user-info as written, so percent-escapes in it are decoded (`%40` is `@`)."""
    given = request.headers.get("x-ciwatch-token") or request.query.get("token")
    if given is not None:
        return given
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    decoded = basic_userinfo(request.headers.get("authorization"))
    if decoded is None:
        return None
    user, colon, password = decoded.partition(":")
    return unquote(password if colon else user)


def _require_notification_json(request: hooks.HookRequest) -> None:
    """415 for the plugin's XML format (`application/xml`), with a hint naming JSON."""
    kind = request.content_type
    looks_xml = request.body.lstrip()[:1] == b"<" and not kind.endswith("json")
    if kind.endswith("/xml") or kind.endswith("+xml") or looks_xml:
        raise hooks.Rejected(415, "bad_payload", NOTIFICATION_XML, {"content_type": kind or None})
    hooks.require_json(request)


def _store_dated(run: Run, dated: bool) -> hooks.StoreFn:
    async def store(ingest: Ingest) -> bool:
        return await ingest.store_notification(
            run, dated=dated, merge=keep_stored_times, undated=UNDATED
        )

    return store


class JenkinsHooks:
    """The Notification plugin's JSON (every phase of a build); the secret as
    `notification_token` reads it; the delivery id is `Idempotency-Key`, else the body's
    SHA-256. Stored through `ingest.store_notification` with `keep_stored_times` (the module's
    doc: notifications without times)."""

    events = ("QUEUED", "STARTED", "COMPLETED", "FINALIZED")
    summary = "Jenkins Notification plugin"

    def handle(self, request: hooks.HookRequest) -> hooks.HookResult:
        settings = request.source
        hooks.check_token(settings, notification_token(request))
        _require_notification_json(request)
        run, dated = parsed(parse_notification_dated, settings.name, request.body, request.received)
        if (reason := watch.unwatched(settings, run.project, run.ref)) is not None:
            return hooks.Ignored(reason)
        delivery = request.delivery("idempotency-key")
        return hooks.Store(delivery, run, (), store=_store_dated(run, dated))


def basic_auth_headers(settings: JenkinsSource) -> dict[str, str]:
    """HTTP basic auth with the user and API token (Jenkins' documented way for scripts)."""
    if settings.username and settings.token:
        pair = f"{settings.username}:{settings.token}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}
    return {}


def build(
    settings: BaseSource,
    collection: CollectionSettings,
    clock: Clock,
    recorder: RequestRecorder | None,
) -> Provider:
    """The poller of a Jenkins source (`jenkins_poll.JenkinsProvider`)."""
    from ciwatch.providers.client import source_client
    from ciwatch.providers.jenkins_poll import JenkinsProvider

    assert isinstance(settings, JenkinsSource)
    headers = basic_auth_headers(settings)
    client = source_client(settings, collection, clock, recorder, headers=headers)
    return JenkinsProvider(settings, client, clock)


SPEC = ProviderSpec(
    kind=PROVIDER,
    title="Jenkins",
    settings=JenkinsSource,
    map_status=map_status,
    build=build,
    webhook=JenkinsHooks(),
    simulator="ciwatch.simulator.jenkins",
)

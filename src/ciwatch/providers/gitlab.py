"""GitLab CI: payload parsing (REST API v4 and webhooks) into the normalised model.

Sources read for field meanings: `doc/api/pipelines.md`, `doc/api/jobs.md`,
`doc/user/project/integrations/webhook_events.md` (Pipeline and Job events) and the payload
builders `lib/gitlab/data_builder/pipeline.rb` / `build.rb` of `gitlab-org/gitlab`.

Mapping choices:

- `run_id` is the global pipeline `id` (what the jobs API and the Job Hook's `pipeline_id` name);
  `number` is the per-project `iid`.
- `event` is the pipeline `source` verbatim (`push`, `merge_request_event`, `schedule`, `web`,
  ...), the same word in the API and the hooks so that a run's identity fields agree whichever
  arrives first. A Pipeline Hook without `source` but with a `merge_request` object is
  `merge_request_event`.
- `duration_seconds` / `queued_seconds` are GitLab's `duration` / `queued_duration`; `duration`
  is computed from `started_at`..`finished_at` only when GitLab gives none.
- `updated_at`: the API's `updated_at`. Hooks carry none: a Pipeline Hook uses `finished_at`, else
  the latest time in the payload (its builds included); a job uses its latest of
  finished/started/created.
- `attempt` is always 1: a GitLab retry creates a new job id, and a retried pipeline keeps its id
  and moves on with a newer `updated_at`, which is what orders its updates.
- Pipeline Hook builds and Job Hooks carry no job URL; it is built as
  `<project web_url>/-/jobs/<id>`, the form of the API's `web_url`.
- Job Hook project: `project.path_with_namespace` when the hook has a `project` object (newer
  GitLab). Older `data_builder/build.rb` (15.x-16.x, and go-gitlab's captured payloads) sent none:
  only `project_id`, `project_name` (the display name, "Group / Project", not the path) and
  `repository.homepage` (the project's `web_url`). The path is then the path of that URL, less
  the path of the source's `url` when GitLab is served below a relative URL root. `project_id`
  alone cannot name the project without an API request: such a hook is refused.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

import msgspec

from ciwatch.config.base import BaseSource
from ciwatch.config.types import BaseUrl, GitLabGroup, GitLabProject
from ciwatch.domain import CommitRange, Job, RangeCommit, Run, Status, first_line
from ciwatch.providers import hooks, watch
from ciwatch.providers.common import (
    Body,
    Payload,
    bad,
    check_run_id,
    decode,
    latest,
    logged,
    time_of,
)
from ciwatch.providers.spec import ProviderSpec, table_status
from ciwatch.timeutil import seconds_between
from ciwatch.validation import parsed

if TYPE_CHECKING:
    from ciwatch.clock import Clock
    from ciwatch.config.models import CollectionSettings
    from ciwatch.http import RequestRecorder
    from ciwatch.providers.base import Provider

PROVIDER = "gitlab"


class GitLabSource(BaseSource):
    """GitLab (gitlab.com or self-managed); `url` is the instance root."""

    WATCH_FIELDS: ClassVar[tuple[str, ...]] = ("projects", "groups")

    type: Literal["gitlab"] = "gitlab"
    url: BaseUrl = "https://gitlab.com"
    projects: list[GitLabProject] = []
    groups: list[GitLabGroup] = []

    def project_member(self, project: str) -> bool:
        # Groups cover their subgroups; GitLab paths compare without regard to case.
        return watch.listed(project, self.projects, fold=True) or watch.under(
            project, self.groups, fold=True
        )


# docs/architecture.md#the-model: the statuses of `Ci::HasStatus` / the jobs API `scope` enum
# (`created`, `waiting_for_resource`, `preparing`, `waiting_for_callback`, `pending`, `running`,
# `success`, `failed`, `canceling`, `canceled`, `skipped`, `manual`, `scheduled`), the same words
# in the pipelines API, Pipeline Hooks and Job Hooks (doc/api/pipelines.md, doc/api/jobs.md,
# webhook_events.md). Keys lower-cased; any other word is unknown and maps to running (safe:
# never green, never red), logged once.
GITLAB_STATUS: dict[str, Status] = {
    "created": Status.QUEUED,  # created, not yet pending (waiting for earlier stages)
    "waiting_for_resource": Status.QUEUED,  # waiting for a `resource_group`
    "preparing": Status.QUEUED,  # the runner is preparing the environment
    "waiting_for_callback": Status.QUEUED,  # ordered before `pending` by GitLab (17.x+)
    "pending": Status.QUEUED,  # waiting for a runner
    "scheduled": Status.QUEUED,  # a delayed job (`when: delayed`) waiting for its time
    "running": Status.RUNNING,
    # `canceling`: cancel requested, the runner is still running `after_script` (GitLab 16.x+
    # state machine: `canceling` → `canceled` when the runner reports). Still running, not final.
    "canceling": Status.RUNNING,
    "success": Status.SUCCESS,
    "failed": Status.FAILED,
    "canceled": Status.CANCELED,
    "skipped": Status.SKIPPED,
    "manual": Status.MANUAL,  # waiting for someone to start a `when: manual` job
}
map_status = table_status(PROVIDER, GITLAB_STATUS, Status.RUNNING)

# --------------------------------------------------------------------------------------------
# Parsing: vendor Structs and pure parse_* functions (no HTTP, no I/O)
# --------------------------------------------------------------------------------------------


class _User(Payload):
    username: str | None = None


class _Runner(Payload):
    description: str | None = None
    name: str | None = None


class _PipelineRef(Payload):
    id: int | None = None


class GitlabPipeline(Payload):
    """A pipeline as listed by `GET /projects/:id/pipelines` or read by `.../pipelines/:id`."""

    id: int
    status: str
    iid: int | None = None
    name: str | None = None
    ref: str | None = None
    sha: str | None = None
    source: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration: float | None = None
    queued_duration: float | None = None
    web_url: str | None = None
    user: _User | None = None


class GitlabJob(Payload):
    """A job from the jobs API, or a `builds` item of a Pipeline Hook (which lacks `web_url`)."""

    id: int
    name: str
    status: str
    stage: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration: float | None = None
    queued_duration: float | None = None
    allow_failure: bool = False
    web_url: str | None = None
    runner: _Runner | None = None
    pipeline: _PipelineRef | None = None


class _HookProject(Payload):
    path_with_namespace: str
    web_url: str | None = None


class _MergeRequest(Payload):
    iid: int | None = None


class _PipelineAttrs(Payload):
    id: int
    status: str
    iid: int | None = None
    name: str | None = None
    ref: str | None = None
    sha: str | None = None
    source: str | None = None
    created_at: str | None = None
    finished_at: str | None = None
    duration: float | None = None
    queued_duration: float | None = None
    url: str | None = None


class _GitPerson(Payload):
    name: str | None = None
    email: str | None = None


class _HookCommit(Payload):
    """`commit` of a Pipeline Hook: `id`, `message`, `title` (newer GitLab), `author{name,
    email}`. (A Job Hook's `commit.id` is the pipeline id, an integer: such a commit is not the
    pipeline's and is not taken.)"""

    id: str | int | None = None
    message: str | None = None
    title: str | None = None
    author: _GitPerson | None = None


class GitlabCommit(Payload):
    """`GET /projects/:id/repository/commits/:sha` (doc/api/commits.md, "Get a single
    commit")."""

    id: str
    title: str | None = None
    message: str | None = None
    author_name: str | None = None
    author_email: str | None = None


class _CompareCommit(Payload):
    id: str
    title: str | None = None
    message: str | None = None
    author_name: str | None = None
    author_email: str | None = None


class _Compare(Payload):
    """`GET /projects/:id/repository/compare` (doc/api/repositories.md, "Compare branches,
    tags, or commits"): `commits[]` oldest first, the last being `to` (the `commit`)."""

    commits: list[_CompareCommit] = []


class _TestTotal(Payload):
    count: int | None = None
    failed: int | None = None
    skipped: int | None = None
    error: int | None = None


class _TestSummary(Payload):
    """`GET /projects/:id/pipelines/:pipeline_id/test_report_summary` (doc/api/pipelines.md)."""

    total: _TestTotal | None = None


class _TestCase(Payload):
    name: str | None = None
    classname: str | None = None
    status: str | None = None


class _TestSuite(Payload):
    name: str | None = None
    failed_count: int | None = None
    error_count: int | None = None
    test_cases: list[_TestCase] = msgspec.field(default_factory=list)


class _TestReport(Payload):
    """`GET /projects/:id/pipelines/:pipeline_id/test_report`: the suites and their cases."""

    test_suites: list[_TestSuite] = msgspec.field(default_factory=list)


class _PipelineHook(Payload):
    object_attributes: _PipelineAttrs
    project: _HookProject
    object_kind: str | None = None
    user: _User | None = None
    commit: _HookCommit | None = None
    merge_request: _MergeRequest | None = None
    builds: list[GitlabJob] = msgspec.field(default_factory=list)


class _HookRepository(Payload):
    homepage: str | None = None


class _JobHook(Payload):
    build_id: int
    build_name: str
    build_status: str
    pipeline_id: int
    project: _HookProject | None = None
    project_id: int | None = None
    repository: _HookRepository | None = None
    object_kind: str | None = None
    build_stage: str | None = None
    build_created_at: str | None = None
    build_started_at: str | None = None
    build_finished_at: str | None = None
    build_duration: float | None = None
    build_queued_duration: float | None = None
    build_allow_failure: bool = False
    runner: _Runner | None = None


class GitlabProject(Payload):
    """A project as listed by `GET /projects` or `GET /groups/:id/projects`."""

    id: int
    path_with_namespace: str
    default_branch: str | None = None
    web_url: str | None = None


def parse_pipelines(source: str, project: str, body: Body) -> list[Run]:
    """`GET /projects/:id/pipelines` → runs (list items carry no user, start or duration)."""
    what = "GitLab pipelines list"
    return [
        _pipeline_run(source, project, p, what) for p in decode(body, list[GitlabPipeline], what)
    ]


def parse_pipeline(source: str, project: str, body: Body) -> Run:
    """`GET /projects/:id/pipelines/:pipeline_id` → one run."""
    what = "GitLab pipeline"
    return _pipeline_run(source, project, decode(body, GitlabPipeline, what), what)


def parse_jobs(source: str, project: str, run_id: str | None, body: Body) -> list[Job]:
    """`GET .../pipelines/:id/jobs` (or the project-wide `GET .../jobs`) → jobs.

    Each job's own `pipeline.id` is its run id; `run_id` is used when an item lacks one and, when
    both exist, must agree. Pass None for the project-wide list.
    """
    what = "GitLab jobs list"
    jobs = decode(body, list[GitlabJob], what)
    return [
        _job(
            source,
            project,
            check_run_id(what, run_id, j.pipeline.id if j.pipeline else None),
            j,
            j.web_url,
            what,
        )
        for j in jobs
    ]


def parse_pipeline_hook(source: str, body: Body) -> tuple[Run, list[Job]]:
    """A Pipeline Hook (`X-Gitlab-Event: Pipeline Hook`) → the run and its latest jobs."""
    what = "GitLab Pipeline Hook"
    hook = decode(body, _PipelineHook, what)
    if hook.object_kind not in (None, "pipeline"):
        raise bad(what, f"object_kind is {hook.object_kind!r}, not 'pipeline'")
    attrs = hook.object_attributes
    project = hook.project.path_with_namespace
    run_id = str(attrs.id)
    jobs = [
        _job(source, project, run_id, b, _job_url(hook.project, b.id), what) for b in hook.builds
    ]
    created_at = time_of(attrs.created_at, what, "object_attributes.created_at")
    finished_at = time_of(attrs.finished_at, what, "object_attributes.finished_at")
    job_times = [t for j in jobs for t in (j.created_at, j.started_at, j.finished_at)]
    updated_at = finished_at or latest([created_at, *job_times])
    if updated_at is None:
        raise bad(what, f"pipeline {attrs.id} carries no timestamp")
    event = attrs.source or ("merge_request_event" if hook.merge_request else None)
    run = Run(
        source=source,
        provider=PROVIDER,
        project=project,
        run_id=run_id,
        status=logged(map_status(attrs.status)),
        provider_status=attrs.status,
        updated_at=updated_at,
        number=attrs.iid,
        workflow=attrs.name,
        ref=attrs.ref,
        sha=attrs.sha,
        event=event,
        created_at=created_at,
        finished_at=finished_at,
        duration_seconds=attrs.duration,
        queued_seconds=attrs.queued_duration,
        url=attrs.url,
        author=hook.user.username if hook.user else None,
    )
    commit = _commit_fields(hook.commit, attrs.sha)
    return (replace(run, **commit) if commit else run), jobs


def _commit_fields(commit: _HookCommit | None, sha: str | None) -> dict[str, Any]:
    # A hook's `commit` is the pipeline's own commit; one that names another SHA is not used.
    if commit is None or (commit.id is not None and commit.id != sha):
        return {}
    person = commit.author
    return {
        "commit_title": commit.title or first_line(commit.message),
        "commit_author": (person.name or None) if person else None,
        "commit_email": (person.email or None) if person else None,
    }


def parse_commit(body: Body) -> dict[str, Any]:
    """`GET /projects/:id/repository/commits/:sha` → the run's commit fields."""
    c = decode(body, GitlabCommit, "GitLab commit")
    return {
        "commit_title": c.title or first_line(c.message),
        "commit_author": c.author_name or None,
        "commit_email": c.author_email or None,
    }


def parse_compare(body: Body, limit: int) -> CommitRange:
    """`GET /projects/:id/repository/compare?from=&to=` → the range, newest first, `limit`
    kept. GitLab lists every commit of the comparison (no paging), so `total` is its count."""
    found = decode(body, _Compare, "GitLab compare")
    newest = found.commits[::-1]
    commits = tuple(
        RangeCommit(
            c.id,
            title=c.title or first_line(c.message),
            author=c.author_name or None,
            email=c.author_email or None,
        )
        for c in newest[:limit]
        if c.id
    )
    return CommitRange(commits, len(found.commits))


def parse_test_summary(body: Body) -> dict[str, Any]:
    """`.../pipelines/:id/test_report_summary` → the run's test counts (`total`)."""
    summary = decode(body, _TestSummary, "GitLab test report summary")
    total = summary.total or _TestTotal()
    return {
        "tests_total": total.count,
        "tests_failed": total.failed,
        "tests_skipped": total.skipped,
        "tests_errored": total.error,
    }


def parse_failing_tests(body: Body, limit: int) -> tuple[str, ...]:
    """`.../pipelines/:id/test_report` → the first `limit` failed or errored cases, each as
    `classname::name` (the name alone when GitLab gives no class name)."""
    report = decode(body, _TestReport, "GitLab test report")
    names: list[str] = []
    for suite in report.test_suites:
        for case in suite.test_cases:
            if case.status not in ("failed", "error") or not case.name:
                continue
            names.append(f"{case.classname}::{case.name}" if case.classname else case.name)
            if len(names) >= limit:
                return tuple(names)
    return tuple(names)


def parse_job_hook(source: str, body: Body, base_url: str | None = None) -> Job:
    """A Job Hook (`X-Gitlab-Event: Job Hook`) → one job of pipeline `pipeline_id`.

    Its `commit.id` is the pipeline id, not a SHA, and is not read. The project is
    `project.path_with_namespace`, else the path of `repository.homepage` below `base_url` (the
    GitLab instance root; see the module's doc).
    """
    what = "GitLab Job Hook"
    hook = decode(body, _JobHook, what)
    if hook.object_kind not in (None, "build"):
        raise bad(what, f"object_kind is {hook.object_kind!r}, not 'build'")
    as_job = GitlabJob(
        id=hook.build_id,
        name=hook.build_name,
        status=hook.build_status,
        stage=hook.build_stage,
        created_at=hook.build_created_at,
        started_at=hook.build_started_at,
        finished_at=hook.build_finished_at,
        duration=hook.build_duration,
        queued_duration=hook.build_queued_duration,
        allow_failure=hook.build_allow_failure,
        runner=hook.runner,
    )
    where = hook.project or _project_from_homepage(hook, base_url, what)
    url = _job_url(where, hook.build_id)
    return _job(source, where.path_with_namespace, str(hook.pipeline_id), as_job, url, what)


def _project_from_homepage(hook: _JobHook, base_url: str | None, what: str) -> _HookProject:
    """The project of a Job Hook without a `project` object, from `repository.homepage`."""
    homepage = hook.repository.homepage if hook.repository else None
    if not homepage:
        raise bad(
            what,
            f"no `project` object and no `repository.homepage` to name project "
            f"{hook.project_id if hook.project_id is not None else '(no project_id)'}",
        )
    path = unquote(urlsplit(homepage).path).strip("/")
    root = unquote(urlsplit(base_url).path).strip("/") if base_url else ""
    if root and path.startswith(root + "/"):
        path = path[len(root) + 1 :]
    if "/" not in path:
        raise bad(what, f"repository.homepage {homepage!r} does not name a group/project path")
    return _HookProject(path_with_namespace=path, web_url=homepage)


def parse_projects(body: Body) -> list[GitlabProject]:
    """`GET /projects` or `GET /groups/:id/projects` → projects."""
    return decode(body, list[GitlabProject], "GitLab projects list")


def _pipeline_run(source: str, project: str, p: GitlabPipeline, what: str) -> Run:
    created_at = time_of(p.created_at, what, "created_at")
    started_at = time_of(p.started_at, what, "started_at")
    finished_at = time_of(p.finished_at, what, "finished_at")
    updated_at = time_of(p.updated_at, what, "updated_at") or latest(
        [finished_at, started_at, created_at]
    )
    if updated_at is None:
        raise bad(what, f"pipeline {p.id} carries no timestamp")
    duration = p.duration if p.duration is not None else seconds_between(started_at, finished_at)
    return Run(
        source=source,
        provider=PROVIDER,
        project=project,
        run_id=str(p.id),
        status=logged(map_status(p.status)),
        provider_status=p.status,
        updated_at=updated_at,
        number=p.iid,
        workflow=p.name,
        ref=p.ref,
        sha=p.sha,
        event=p.source,
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        duration_seconds=duration,
        queued_seconds=p.queued_duration,
        url=p.web_url,
        author=p.user.username if p.user else None,
    )


def _job(source: str, project: str, run_id: str, j: GitlabJob, url: str | None, what: str) -> Job:
    created_at = time_of(j.created_at, what, f"job {j.id} created_at")
    started_at = time_of(j.started_at, what, f"job {j.id} started_at")
    finished_at = time_of(j.finished_at, what, f"job {j.id} finished_at")
    updated_at: datetime | None = latest([finished_at, started_at, created_at])
    if updated_at is None:
        raise bad(what, f"job {j.id} carries no timestamp")
    duration = j.duration if j.duration is not None else seconds_between(started_at, finished_at)
    runner = (j.runner.description or j.runner.name) if j.runner else None
    return Job(
        source=source,
        project=project,
        run_id=run_id,
        job_id=str(j.id),
        name=j.name,
        status=logged(map_status(j.status)),
        provider_status=j.status,
        updated_at=updated_at,
        stage=j.stage,
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        duration_seconds=duration,
        queued_seconds=j.queued_duration,
        runner=runner or None,
        allow_failure=j.allow_failure,
        url=url,
    )


def _job_url(project: _HookProject, job_id: int) -> str | None:
    return f"{project.web_url.rstrip('/')}/-/jobs/{job_id}" if project.web_url else None


# --------------------------------------------------------------------------------------------
# Webhooks: Pipeline Hooks and Job Hooks (`POST /hooks/gitlab/{source}`)
# --------------------------------------------------------------------------------------------


class _JobHookScope(Payload):
    ref: str | None = None


def job_hook_ref(body: Body) -> str | None:
    """The ref of a GitLab Job Hook (its top-level `ref`)."""
    return decode(body, _JobHookScope, "GitLab Job Hook").ref


class GitLabHooks:
    """`X-Gitlab-Token` is the source's `webhook_secret`; `X-Gitlab-Event` names the event; the
    delivery id is `Idempotency-Key`, else `X-Gitlab-Event-UUID`, else the body's SHA-256."""

    events = ("Pipeline Hook", "Job Hook")
    summary = "GitLab Pipeline and Job Hooks"

    def handle(self, request: hooks.HookRequest) -> hooks.HookResult:
        settings = request.source
        hooks.check_token(settings, request.headers.get("x-gitlab-token"))
        event = request.headers.get("x-gitlab-event", "")
        if event not in self.events:
            return hooks.not_read(event)
        hooks.require_json(request)
        body = request.body
        delivery = request.delivery("idempotency-key", "x-gitlab-event-uuid")
        if event == "Pipeline Hook":
            run, jobs = parsed(parse_pipeline_hook, settings.name, body)
            if (reason := watch.unwatched(settings, run.project, run.ref)) is not None:
                return hooks.Ignored(reason)
            return hooks.Store(delivery, run, jobs)
        job = parsed(parse_job_hook, settings.name, body, str(settings.url))
        ref = job_hook_ref(body)
        if (reason := watch.unwatched(settings, job.project, ref)) is not None:
            return hooks.Ignored(reason)
        return hooks.Store(delivery, None, [job])


def build(
    settings: BaseSource,
    collection: CollectionSettings,
    clock: Clock,
    recorder: RequestRecorder | None,
) -> Provider:
    """The poller of a GitLab source (`gitlab_poll.GitLabProvider`)."""
    from ciwatch.providers.client import source_client
    from ciwatch.providers.gitlab_poll import GitLabProvider

    assert isinstance(settings, GitLabSource)
    headers = {"PRIVATE-TOKEN": settings.token} if settings.token else {}
    client = source_client(settings, collection, clock, recorder, headers=headers)
    return GitLabProvider(settings, client, clock)


SPEC = ProviderSpec(
    kind=PROVIDER,
    title="GitLab",
    settings=GitLabSource,
    map_status=map_status,
    build=build,
    webhook=GitLabHooks(),
    simulator="ciwatch.simulator.gitlab",
)

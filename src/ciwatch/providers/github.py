"""GitHub Actions: payload parsing (REST API and webhooks) into the normalised model.

Sources read for field meanings: the REST description `github/rest-api-description`
(`workflow-run`, `job`, `workflow`, `repository` schemas) and `octokit/webhooks` payload schemas
(`workflow_run`, `workflow_job`).

Mapping choices:

- Status: `status`, and for `completed` the `conclusion` (docs/architecture.md#the-model).
  `provider_status` is `completed/<conclusion>` when completed, else the bare status (`queued`,
  `in_progress`, ...).
- `workflow` is the run's `name`; webhook runs may carry an empty `name`, then the event's
  `workflow.name` is used.
- `started_at` is `run_started_at`, the start of the *latest attempt*; `finished_at` is
  `updated_at`, and only once the run is completed (GitHub has no completion time for runs).
  `duration_seconds` = `finished_at - run_started_at`, i.e. the duration of that attempt.
- `queued_seconds` = `run_started_at - created_at`, only for attempt 1 and only once the run has
  left the queue. `created_at` belongs to attempt 1, so for a re-run the difference would count
  the whole first attempt and the idle time before the re-run, not a queue; and GitHub fills
  `run_started_at` before a queued run starts, so a queued run has no queue time yet.
- `author` is `triggering_actor.login` (who started this attempt), else `actor.login`.
- `commit_title`, `commit_author`, `commit_email`: `head_commit.message` (its first line) and
  `head_commit.author.name` / `.email`, in the REST run and the `workflow_run` webhook alike.
- Failing tests (`tests: true`, failed runs only, `github_poll.GitHubProvider._tests`): the
  `failure` annotations of the commit's failed check runs (`check-run`, `check-annotation`
  schemas), named by `title`, else `path:start_line`, else the message's first line; GitHub's
  own `<path>#L<line>` title and `.github` path (no file) name nothing, and the runner's
  "Process completed with exit code N." is no test. GitHub gives no counts besides.
- `attempt` is `run_attempt` (default 1): a re-run keeps the run id and raises the attempt, which
  is what lets it reopen a finished run (docs/architecture.md#state-machine-and-time).
- Jobs: GitHub gives a queued job a `started_at` equal to its `created_at` before any runner
  picked it up (see the `workflow_job.queued` example), so `started_at` is dropped while the job
  is queued. `queued_seconds` = `started_at - created_at` once started; `duration_seconds` =
  `completed_at - started_at` once completed; `updated_at` is the latest of those times (jobs
  have no `updated_at`). Jobs have no stage.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, Literal
from urllib.parse import parse_qs

from ciwatch.config.base import BaseSource
from ciwatch.config.types import BaseUrl, GitHubLogin, GitHubRepo, Glob
from ciwatch.domain import CommitRange, Job, RangeCommit, Run, Status, UnknownStatus, first_line
from ciwatch.errors import BadPayload
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
from ciwatch.providers.spec import ProviderSpec
from ciwatch.timeutil import seconds_between
from ciwatch.validation import parsed

if TYPE_CHECKING:
    from ciwatch.clock import Clock
    from ciwatch.config.models import CollectionSettings
    from ciwatch.http import RequestRecorder
    from ciwatch.ingest import Ingest
    from ciwatch.providers.base import Provider

PROVIDER = "github"


class GitHubSource(BaseSource):
    """GitHub Actions; `url` is the API base (`https://HOST/api/v3` for GitHub Enterprise)."""

    WATCH_FIELDS: ClassVar[tuple[str, ...]] = ("repos", "orgs", "users")

    type: Literal["github"] = "github"
    url: BaseUrl = "https://api.github.com"
    repos: list[GitHubRepo] = []
    orgs: list[GitHubLogin] = []
    users: list[GitHubLogin] = []
    workflows: list[Glob] = []

    def project_member(self, project: str) -> bool:
        # A repository listed, or owned by a listed organisation or user (case-insensitive).
        owners = [*self.orgs, *self.users]
        return watch.listed(project, self.repos, fold=True) or (
            project.count("/") == 1 and watch.under(project, owners, fold=True)
        )

    def workflow_globs(self) -> Sequence[str]:
        return self.workflows


# docs/architecture.md#the-model. GitHub `status`: the REST `status` of workflow runs and jobs
# and the `workflow_run` / `workflow_job` webhook schemas (octokit/webhooks payload-schemas
# common/workflow-run and workflow-job: `requested`, `in_progress`, `completed`, `queued`,
# `waiting`; the REST "List workflow runs" `status` filter adds `pending`).
GITHUB_STATUS: dict[str, Status] = {
    "requested": Status.QUEUED,  # the run was created, its jobs not yet queued
    "queued": Status.QUEUED,
    "pending": Status.QUEUED,  # held by a concurrency group until another run finishes
    # `waiting`: a deployment environment awaits a reviewer's approval (or a wait timer). It is
    # waiting for a person, not for a runner, so it is manual: queued would fire queued-too-long.
    "waiting": Status.MANUAL,
    "in_progress": Status.RUNNING,
}
# GitHub `conclusion` of a completed run or job: the webhook schemas (`success`, `failure`,
# `neutral`, `cancelled`, `timed_out`, `action_required`, `stale`, `skipped`) and the REST status
# filter (`startup_failure`).
GITHUB_CONCLUSION: dict[str, Status] = {
    "success": Status.SUCCESS,
    "neutral": Status.SUCCESS,  # ended without a verdict: GitHub shows it as not failing
    "failure": Status.FAILED,
    "timed_out": Status.FAILED,
    "startup_failure": Status.FAILED,  # the workflow could not start (invalid file, ...)
    "cancelled": Status.CANCELED,
    "stale": Status.CANCELED,  # superseded, marked stale by GitHub after being incomplete
    "skipped": Status.SKIPPED,
    "action_required": Status.MANUAL,  # needs a person (e.g. approve a fork's first run)
}


def map_status(
    word: str | None, conclusion: str | None = None
) -> tuple[Status, UnknownStatus | None]:
    """A run's or job's `status`, and its `conclusion` once `completed`. A completed run with an
    unknown conclusion ended: failed, never green; any other unknown word is running."""
    key = (word or "").strip().lower()
    if key == "completed":
        concl = (conclusion or "").strip().lower()
        if concl in GITHUB_CONCLUSION:
            return GITHUB_CONCLUSION[concl], None
        return Status.FAILED, UnknownStatus(PROVIDER, f"completed/{conclusion}")
    if key in GITHUB_STATUS:
        return GITHUB_STATUS[key], None
    return Status.RUNNING, UnknownStatus(PROVIDER, word or "")


# --------------------------------------------------------------------------------------------
# Parsing: vendor Structs and pure parse_* functions (no HTTP, no I/O)
# --------------------------------------------------------------------------------------------


class _Actor(Payload):
    login: str | None = None


class _Person(Payload):
    name: str | None = None
    email: str | None = None


class _HeadCommit(Payload):
    """`head_commit` of a workflow run (REST and webhook): `id`, `message`, `author{name,
    email}` (a git identity, no login)."""

    id: str | None = None
    message: str | None = None
    author: _Person | None = None


class _GitCommit(Payload):
    message: str | None = None
    author: _Person | None = None


class _ComparedCommit(Payload):
    sha: str
    commit: _GitCommit | None = None
    author: _Actor | None = None  # the GitHub account of the author, when one matches


class GithubComparison(Payload):
    """`GET /repos/{owner}/{repo}/compare/{base}...{head}` ("Compare two commits"):
    `total_commits`, and one page of `commits[]` in chronological order (oldest first)."""

    total_commits: int | None = None
    commits: list[_ComparedCommit] = []


class GithubRun(Payload):
    """A workflow run (`GET /repos/{owner}/{repo}/actions/runs/{run_id}`, `workflow_run`)."""

    id: int
    updated_at: str
    status: str | None = None
    conclusion: str | None = None
    name: str | None = None
    head_branch: str | None = None
    head_sha: str | None = None
    run_number: int | None = None
    run_attempt: int | None = None
    event: str | None = None
    created_at: str | None = None
    run_started_at: str | None = None
    html_url: str | None = None
    actor: _Actor | None = None
    triggering_actor: _Actor | None = None
    head_commit: _HeadCommit | None = None


class _RunsPage(Payload):
    workflow_runs: list[GithubRun]


class GithubJob(Payload):
    """A workflow job (`GET /repos/{owner}/{repo}/actions/jobs/{job_id}`, `workflow_job`)."""

    id: int
    run_id: int
    name: str
    status: str
    conclusion: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    runner_name: str | None = None
    html_url: str | None = None
    run_attempt: int | None = None


class _JobsPage(Payload):
    jobs: list[GithubJob]


class _Repository(Payload):
    full_name: str


class _WorkflowRef(Payload):
    name: str | None = None


class _WorkflowRunEvent(Payload):
    workflow_run: GithubRun
    repository: _Repository
    workflow: _WorkflowRef | None = None


class _WorkflowJobEvent(Payload):
    workflow_job: GithubJob
    repository: _Repository


class GithubRepo(Payload):
    """A repository as listed by `GET /orgs/{org}/repos` or `GET /users/{user}/repos`."""

    full_name: str
    default_branch: str | None = None
    archived: bool = False
    html_url: str | None = None


def parse_runs(source: str, project: str, body: Body) -> list[Run]:
    """`GET /repos/{owner}/{repo}/actions/runs` (the `workflow_runs` page) → runs."""
    what = "GitHub workflow runs list"
    page = decode(body, _RunsPage, what)
    return [_run(source, project, r, None, what) for r in page.workflow_runs]


def parse_run(source: str, project: str, body: Body) -> Run:
    """`GET /repos/{owner}/{repo}/actions/runs/{run_id}` → one run."""
    what = "GitHub workflow run"
    return _run(source, project, decode(body, GithubRun, what), None, what)


def parse_jobs(source: str, project: str, run_id: str | None, body: Body) -> list[Job]:
    """`GET .../actions/runs/{run_id}/jobs` (the `jobs` page) → jobs.

    Each job's own `run_id` is used; when `run_id` is given it must agree.
    """
    what = "GitHub workflow jobs list"
    page = decode(body, _JobsPage, what)
    return [_job(source, project, check_run_id(what, run_id, j.run_id), j, what) for j in page.jobs]


def parse_job(source: str, project: str, body: Body) -> Job:
    """`GET /repos/{owner}/{repo}/actions/jobs/{job_id}` → one job."""
    what = "GitHub workflow job"
    j = decode(body, GithubJob, what)
    return _job(source, project, str(j.run_id), j, what)


def parse_workflow_run_event(source: str, body: Body) -> Run:
    """A `workflow_run` webhook (any action) → the run; project is `repository.full_name`."""
    what = "GitHub workflow_run event"
    event = decode(body, _WorkflowRunEvent, what)
    fallback = event.workflow.name if event.workflow else None
    return _run(source, event.repository.full_name, event.workflow_run, fallback, what)


def parse_workflow_job_event(source: str, body: Body) -> Job:
    """A `workflow_job` webhook (any action) → the job; project is `repository.full_name`."""
    what = "GitHub workflow_job event"
    event = decode(body, _WorkflowJobEvent, what)
    j = event.workflow_job
    return _job(source, event.repository.full_name, str(j.run_id), j, what)


def parse_comparison(body: Body) -> GithubComparison:
    """One page of a comparison (the poller may read the last page too)."""
    return decode(body, GithubComparison, "GitHub comparison")


def comparison_range(pages: Sequence[GithubComparison], limit: int) -> CommitRange:
    """The range from the pages read of one comparison (the first, and the last when there
    are more): newest first from the last page read, `limit` kept; `total` is GitHub's
    `total_commits`."""
    commits = pages[-1].commits[::-1]
    total = next((p.total_commits for p in pages if p.total_commits is not None), len(commits))
    kept = []
    for c in commits[:limit]:
        git = c.commit or _GitCommit()
        person = git.author or _Person()
        kept.append(
            RangeCommit(
                c.sha,
                title=first_line(git.message),
                author=person.name or None,
                email=person.email or None,
                login=(c.author.login or None) if c.author else None,
            )
        )
    return CommitRange(tuple(kept), total)


def parse_repos(body: Body) -> list[GithubRepo]:
    """A JSON array of repositories (`GET /orgs/{org}/repos`, `GET /users/{user}/repos`)."""
    return decode(body, list[GithubRepo], "GitHub repositories list")


# --------------------------------------------------------------------------------------------
# Failing tests from check-run annotations (`tests: true`)
# --------------------------------------------------------------------------------------------

# The conclusions of a check run that failed (the `check-run` schema's `conclusion` enum).
FAILING_CHECK_CONCLUSIONS = frozenset({"failure", "timed_out"})
# The runner's own annotation on a failed step ("Process completed with exit code 1.", from
# actions/runner's ScriptHandler): it says that a step failed, not which test.
_RUNNER_EXIT = re.compile(r"Process completed with exit code -?\d+\.?", re.IGNORECASE)
# The `path` GitHub gives an annotation made from an error with no file (the runner's own, or a
# bare `::error::`): no place in the repository.
_NO_FILE = ".github"


class _CheckOutput(Payload):
    annotations_count: int = 0


class _CheckRun(Payload):
    """A check run (`GET /repos/{owner}/{repo}/commits/{ref}/check-runs`, `check-run` schema)."""

    id: int
    conclusion: str | None = None
    output: _CheckOutput | None = None


class _CheckRunsPage(Payload):
    check_runs: list[_CheckRun]


class _Annotation(Payload):
    """A check-run annotation (`GET .../check-runs/{check_run_id}/annotations`)."""

    path: str | None = None
    start_line: int | None = None
    annotation_level: str | None = None
    title: str | None = None
    message: str | None = None


def parse_failing_check_runs(body: Body, first: Sequence[int], limit: int) -> list[int]:
    """`GET .../commits/{ref}/check-runs` → the ids of at most `limit` check runs that failed
    (`conclusion` failure or timed_out) and carry annotations (`output.annotations_count` > 0);
    the ids in `first` (the run's own jobs: a job's check run has the job's id) come first, the
    others (a test reporter's own check run) after, each group in the listed order."""
    page = decode(body, _CheckRunsPage, "GitHub check runs list")
    failing = [
        c.id
        for c in page.check_runs
        if (c.conclusion or "").lower() in FAILING_CHECK_CONCLUSIONS
        and c.output is not None
        and c.output.annotations_count > 0
    ]
    own = set(first)
    return ([i for i in failing if i in own] + [i for i in failing if i not in own])[:limit]


def parse_failing_annotations(body: Body) -> list[str]:
    """`GET .../check-runs/{check_run_id}/annotations` → one name per `failure` annotation: its
    `title`, else `path:start_line`, else the first line of its `message`. A title GitHub filled
    in itself (`<path>#L<start_line>`, for an annotation made without one) is no title, and the
    path `.github` (an error with no file) no place. The runner's "Process completed with exit
    code N." annotations are skipped. Repeated names are kept once."""
    notes = decode(body, list[_Annotation], "GitHub check run annotations")
    names: dict[str, None] = {}
    for note in notes:
        if (note.annotation_level or "").lower() != "failure":
            continue
        message = (note.message or "").strip()
        if _RUNNER_EXIT.fullmatch(message):
            continue
        path = (note.path or "").strip()
        title = (note.title or "").strip()
        if path and re.fullmatch(rf"{re.escape(path)}#L\d+(-L\d+)?", title):
            title = ""  # GitHub's default title: the location, not a name
        place = path if path != _NO_FILE else ""
        if place and note.start_line:
            place = f"{place}:{note.start_line}"
        name = title or place or first_line(message)
        if name:
            names.setdefault(name)
    return list(names)


def _provider_status(status: str | None, conclusion: str | None) -> str | None:
    if status == "completed" and conclusion:
        return f"completed/{conclusion}"
    return status


def _run(source: str, project: str, r: GithubRun, workflow: str | None, what: str) -> Run:
    status = logged(map_status(r.status, r.conclusion))
    attempt = r.run_attempt or 1
    completed = r.status == "completed"
    created_at = time_of(r.created_at, what, "created_at")
    started_at = time_of(r.run_started_at, what, "run_started_at")
    updated_at = time_of(r.updated_at, what, "updated_at")
    if updated_at is None:
        raise bad(what, f"run {r.id} has an empty updated_at")
    finished_at = updated_at if completed else None
    left_queue = status is not Status.QUEUED
    queued = seconds_between(created_at, started_at) if attempt == 1 and left_queue else None
    author = (r.triggering_actor and r.triggering_actor.login) or (r.actor and r.actor.login)
    commit = r.head_commit
    person = commit.author if commit else None
    return Run(
        source=source,
        provider=PROVIDER,
        project=project,
        run_id=str(r.id),
        status=status,
        provider_status=_provider_status(r.status, r.conclusion),
        updated_at=updated_at,
        number=r.run_number,
        workflow=r.name or workflow,
        ref=r.head_branch,
        sha=r.head_sha,
        event=r.event,
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        duration_seconds=seconds_between(started_at, finished_at),
        queued_seconds=queued,
        url=r.html_url,
        author=author or None,
        attempt=attempt,
        commit_title=first_line(commit.message) if commit else None,
        commit_author=(person.name or None) if person else None,
        commit_email=(person.email or None) if person else None,
    )


def _job(source: str, project: str, run_id: str, j: GithubJob, what: str) -> Job:
    status = logged(map_status(j.status, j.conclusion))
    created_at = time_of(j.created_at, what, f"job {j.id} created_at")
    given_start = time_of(j.started_at, what, f"job {j.id} started_at")
    started_at: datetime | None = None if status is Status.QUEUED else given_start
    finished_at = None
    if j.status == "completed":
        finished_at = time_of(j.completed_at, what, f"job {j.id} completed_at")
    # A queued job from the API may lack created_at; its placeholder start still orders it.
    updated_at = latest([finished_at, started_at, created_at]) or given_start
    if updated_at is None:
        raise bad(what, f"job {j.id} carries no timestamp")
    return Job(
        source=source,
        project=project,
        run_id=run_id,
        job_id=str(j.id),
        name=j.name,
        status=status,
        provider_status=_provider_status(j.status, j.conclusion),
        updated_at=updated_at,
        created_at=created_at,
        started_at=started_at,
        finished_at=finished_at,
        duration_seconds=seconds_between(started_at, finished_at),
        queued_seconds=seconds_between(created_at, started_at),
        runner=j.runner_name or None,
        url=j.html_url,
        attempt=j.run_attempt or 1,
    )


# --------------------------------------------------------------------------------------------
# Webhooks: workflow_run and workflow_job (`POST /hooks/github/{source}`)
# --------------------------------------------------------------------------------------------


class _JobScope(Payload):
    head_branch: str | None = None
    workflow_name: str | None = None


class _JobScopeEvent(Payload):
    workflow_job: _JobScope


def job_event_scope(body: Body) -> tuple[str | None, watch.Fact]:
    """The ref (`head_branch`) and workflow (`workflow_name`, else `UNKNOWN`) of a GitHub
    `workflow_job` event."""
    job = decode(body, _JobScopeEvent, "GitHub workflow_job event").workflow_job
    return job.head_branch, job.workflow_name if job.workflow_name is not None else watch.UNKNOWN


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, compared in constant
    time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header[len("sha256=") :].strip().encode())


def _payload(request: hooks.HookRequest) -> bytes:
    """GitHub sends JSON, or a form with the JSON in `payload` when so configured."""
    if request.content_type == "application/x-www-form-urlencoded":
        values = parse_qs(request.body.decode("utf-8", "replace")).get("payload")
        if not values:
            raise BadPayload("GitHub webhook: form body without a `payload` field")
        return values[0].encode()
    hooks.require_json(request)
    return request.body


def _details_if_changed(run: Run) -> hooks.AfterFn:
    def after(ingest: Ingest, changed: bool) -> None:
        if changed:
            ingest.fetch_details_later(run)

    return after


def _run_of_job(job: Job) -> hooks.AfterFn:
    def after(ingest: Ingest, changed: bool) -> None:
        ingest.fetch_run_of_job_later(job)

    return after


class GitHubHooks:
    """`X-Hub-Signature-256` over the raw body with the source's `webhook_secret`;
    `X-GitHub-Event` names the event (`ping` is acknowledged); the delivery id is
    `X-GitHub-Delivery`, else the body's SHA-256. A stored `workflow_run` that changed the run
    fetches its jobs in the background; a stored `workflow_job` reads its run when the store
    lacks it."""

    events = ("workflow_run", "workflow_job")
    summary = "GitHub workflow_run and workflow_job"

    def handle(self, request: hooks.HookRequest) -> hooks.HookResult:
        settings = request.source
        secret = hooks.require_secret(settings)
        if not signature_ok(secret, request.body, request.headers.get("x-hub-signature-256")):
            raise hooks.Rejected(401, "rejected_signature", "missing or wrong X-Hub-Signature-256")
        event = request.headers.get("x-github-event", "")
        if event == "ping":
            return hooks.Acknowledged("ping")
        if event not in self.events:
            return hooks.not_read(event)
        payload = _payload(request)
        delivery = request.delivery("x-github-delivery")
        if event == "workflow_run":
            run = parsed(parse_workflow_run_event, settings.name, payload)
            reason = watch.unwatched(settings, run.project, run.ref, run.workflow)
            if reason is not None:
                return hooks.Ignored(reason)
            return hooks.Store(delivery, run, (), after=_details_if_changed(run))
        job = parsed(parse_workflow_job_event, settings.name, payload)
        ref, workflow = job_event_scope(payload)
        if (reason := watch.unwatched(settings, job.project, ref, workflow)) is not None:
            return hooks.Ignored(reason)
        return hooks.Store(delivery, None, [job], after=_run_of_job(job))


def build(
    settings: BaseSource,
    collection: CollectionSettings,
    clock: Clock,
    recorder: RequestRecorder | None,
) -> Provider:
    """The poller of a GitHub source (`github_poll.GitHubProvider`)."""
    from ciwatch.providers.client import source_client
    from ciwatch.providers.github_poll import GitHubProvider

    assert isinstance(settings, GitHubSource)
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    if settings.token:
        headers["Authorization"] = f"Bearer {settings.token}"
    client = source_client(settings, collection, clock, recorder, headers=headers)
    return GitHubProvider(settings, client, clock)


SPEC = ProviderSpec(
    kind=PROVIDER,
    title="GitHub",
    settings=GitHubSource,
    map_status=map_status,
    build=build,
    webhook=GitHubHooks(),
    simulator="ciwatch.simulator.github",
)

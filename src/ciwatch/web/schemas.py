"""Pydantic models of the JSON answers, for the OpenAPI document (docs/architecture.md#the-model,
#http-and-dashboard).

Handlers answer with the dicts of `ciwatch.serialize` (the single definition of the JSON shapes);
these models describe them, and a test checks that every answer validates against its model and
that the run and job models have exactly the domain model's fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from ciwatch.alerting.kinds import ALERT_RULES, EVENTS, listing
from ciwatch.domain import Status
from ciwatch.providers.registry import RUN_PROVIDERS
from ciwatch.validation import NO_CONTROL_PATTERN, NO_NUL_PATTERN

# The provider kinds of the registry (providers/registry.py) and `push`, as an enum in the
# OpenAPI document.
if TYPE_CHECKING:
    Provider = str
else:
    Provider = Literal[RUN_PROVIDERS]


class RunModel(BaseModel):
    """One pipeline (GitLab), workflow run (GitHub) or build (Jenkins). Times are ISO 8601 UTC
    with `Z`."""

    source: str = Field(description="Name of the configured source, or `push`.")
    provider: Provider
    project: str = Field(description="GitLab group/project, GitHub owner/repo, Jenkins folder/job.")
    run_id: str = Field(description="The provider's id of the run.")
    status: Status = Field(description="Normalised status.")
    updated_at: datetime = Field(description="The provider's last-change time.")
    number: int | None = Field(None, description="GitLab iid, GitHub run_number, Jenkins build.")
    workflow: str | None = None
    ref: str | None = Field(None, description="Branch or tag.")
    sha: str | None = None
    event: str | None = Field(None, description="push, merge_request, schedule, manual, ...")
    provider_status: str | None = Field(None, description="The provider's own status word(s).")
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    queued_seconds: float | None = None
    url: str | None = None
    author: str | None = None
    attempt: int = Field(1, description="Re-run attempt of the same run id (1 for the first).")
    commit_title: str | None = Field(None, description="First line of the commit's message.")
    commit_author: str | None = Field(None, description="The commit author's name.")
    commit_email: str | None = Field(None, description="The commit author's e-mail address.")
    tests_total: int | None = Field(None, description="Tests in the run's report (tests: true).")
    tests_failed: int | None = None
    tests_skipped: int | None = None
    tests_errored: int | None = None
    tests_failing: list[str] = Field(
        default_factory=list, description="The first 20 failing tests' names."
    )


class JobModel(BaseModel):
    """One job (GitLab job, GitHub workflow job, Jenkins stage) of a run."""

    source: str
    project: str
    run_id: str
    job_id: str
    name: str
    status: Status
    updated_at: datetime
    stage: str | None = None
    provider_status: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    queued_seconds: float | None = None
    runner: str | None = None
    allow_failure: bool = False
    url: str | None = None
    attempt: int = 1


class RunsPage(BaseModel):
    """One page of runs, newest first; pass `next` back as `cursor` for the following page."""

    runs: list[RunModel]
    next: str | None = Field(description="Cursor of the next page; null on the last page.")


class RangeCommitModel(BaseModel):
    """One commit of the range since the ref's last green run."""

    sha: str = Field(description="The commit's SHA.")
    title: str | None = Field(description="First line of its message.")
    author: str | None = Field(description="Its author's name.")
    email: str | None = Field(description="Its author's e-mail address.")
    login: str | None = Field(description="Its author's login, where the CI system gives one.")


class CommitRangeModel(BaseModel):
    """The commits from the ref's last green run (excluded) to this run's (included), as the
    CI system listed them when this run broke the ref: newest first, at most 20."""

    total: int = Field(description="How many commits the CI system counts in the range.")
    cut: bool = Field(description="Whether some were left out (more than 20).")
    commits: list[RangeCommitModel]


class RunDetail(BaseModel):
    """One run and its jobs (in creation order)."""

    run: RunModel
    jobs: list[JobModel]
    commit_range: CommitRangeModel | None = Field(
        None,
        description="A run that broke its ref: the commits since the last green run, kept "
        "when the breaking notice listed them; else null.",
    )


class RecoveryModel(BaseModel):
    """A ref's breaks over the window (`recovery.window`, default 14 days) of run creation.
    A red period runs from the finish of the failed run that turned the ref red to that of the
    success that turned it green."""

    window_seconds: float = Field(description="The window the numbers are over.")
    breaks: int = Field(description="Red periods that began in the window.")
    mean_recovery_seconds: float | None = Field(
        description="Mean length of the red periods that ended (null: none ended)."
    )
    median_recovery_seconds: float | None = Field(
        description="Median length of the red periods that ended (null: none ended)."
    )
    longest_red_seconds: float | None = Field(
        description="The longest red period, a current one counted up to now (null: no break)."
    )
    failure_rate: float | None = Field(
        description="failed / (success + failed) runs of the window (null: no such run)."
    )


class RefStateModel(BaseModel):
    """The state of one project/ref: the status of its newest success/failed run (its colour),
    since when, and its newest run."""

    source: str
    provider: Provider
    project: str
    ref: str = Field(description='Branch or tag; "" for runs without one.')
    status: Status
    failing: bool = Field(
        description="The ref is red: its newest success/failed run failed (a newer queued or "
        "running run does not change that). The same as /cc.xml Failure and ci_ref_failing."
    )
    since: datetime | None = Field(description="When the current colour began.")
    last_run: RunModel
    recovery: RecoveryModel | None = Field(
        None,
        description="Time to recovery over `recovery.window` (null when the store cannot "
        "compute it).",
    )


class ProjectsAnswer(BaseModel):
    projects: list[RefStateModel]
    next: str | None = Field(
        None, description="With `limit`: the cursor of the next page, null on the last one."
    )


class FlakyModel(BaseModel):
    """One job that failed and then passed on the same commit (SHA) in the window: by a retry
    (GitLab), a new attempt (GitHub `run_attempt`) or a new run (a Jenkins rebuild)."""

    source: str
    provider: Provider
    project: str
    ref: str = Field(description="The ref of its latest flaky commit.")
    job: str = Field(description="The job's name (GitLab job, GitHub job, Jenkins stage).")
    stage: str | None = Field(description="The stage of its latest flaky failure.")
    failures: int = Field(description="Its failed attempts in the window.")
    flaky_runs: int = Field(description="Failed attempts on a commit where a later one passed.")
    commits: int = Field(description="Commits it ended on in the window.")
    flaky_commits: int = Field(description="Commits it was flaky on.")
    rate: float = Field(description="flaky_commits / commits.")
    last_seen: datetime = Field(description="When its latest flaky commit passed.")
    links: dict[str, str] = Field(
        description="`web`: the CI server's page of its latest flaky failure (job, else run); "
        "`dashboard`: its project page here."
    )


class FlakyAnswer(BaseModel):
    window_seconds: float
    jobs: list[FlakyModel]


class TargetModel(BaseModel):
    """Health of one polled target (a GitLab project, GitHub repo or Jenkins job)."""

    source: str
    provider: str | None = Field(description="The source's type; null if no longer configured.")
    project: str = Field(description="The project; empty for a source's discovery.")
    kind: Literal["target", "discovery"] = Field(
        description="`discovery`: the listing of the source's groups, organisations or folders."
    )
    healthy: bool
    reason: str | None = Field(None, description="Why the target is unhealthy.")
    last_polled_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    paused_until: datetime | None = Field(
        None,
        description="While the source is paused by a rate limit (on each of its rows): when "
        "the pause ends. None of its targets is polled before then.",
    )


class TargetsAnswer(BaseModel):
    targets: list[TargetModel]


class ChannelOutcome(BaseModel):
    """The newest notice of an alert on one channel and what became of it."""

    channel: str = Field(description="Channel name from the configuration.")
    event: str | None = Field(description=f"{listing(EVENTS)}.")
    outcome: Literal["sent", "failed", "pending"] = Field(
        description="sent; failed for good (see `error`); pending: not sent yet, being retried "
        "when `error` is set."
    )
    at: datetime | None = Field(description="When it was sent or failed; when due if pending.")
    attempts: int = Field(description="Send attempts so far.")
    error: str | None = Field(description="The channel's error text of the last failed attempt.")


class AlertModel(BaseModel):
    """One alert: the state of a fingerprint (rule, source, project, ref)."""

    rule: str = Field(description=f"The rule: {listing((*ALERT_RULES, 'escalated-<route>'))}.")
    event: str | None = Field(description="The newest event notified for it, if any.")
    source: str
    project: str
    ref: str
    state: Literal["firing", "resolved"]
    first_seen: datetime
    last_seen: datetime
    last_notified: datetime | None
    channels: list[ChannelOutcome] = Field(description="Newest notice per channel, by channel.")


class AlertsAnswer(BaseModel):
    alerts: list[AlertModel] = Field(
        description="Firing alerts first (newest first), then resolved ones (most recent first)."
    )


class SilenceMatchers(BaseModel):
    """Globs (`*`, `?`, `[...]`) on the alert's labels; a missing key matches anything."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(None, min_length=1, max_length=500, pattern=NO_CONTROL_PATTERN)
    project: str | None = Field(None, min_length=1, max_length=500, pattern=NO_CONTROL_PATTERN)
    ref: str | None = Field(None, min_length=1, max_length=500, pattern=NO_CONTROL_PATTERN)
    event: str | None = Field(None, min_length=1, max_length=500, pattern=NO_CONTROL_PATTERN)


class SilenceCreate(BaseModel):
    """A new silence: matchers and either `ends_at` or `duration` (from now)."""

    model_config = ConfigDict(extra="forbid")

    matchers: SilenceMatchers
    ends_at: datetime | None = Field(None, description="When it ends (ISO 8601; UTC if no offset).")
    duration: str | None = Field(
        None, max_length=100, description="How long from now, e.g. 30m, 2h, 1d."
    )
    comment: str | None = Field(None, max_length=1000, pattern=NO_NUL_PATTERN)
    created_by: str | None = Field(None, max_length=200, pattern=NO_CONTROL_PATTERN)


class SilenceModel(BaseModel):
    """A stored silence; `active` when in force now."""

    id: int
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str | None
    comment: str | None
    active: bool


class SilenceAnswer(BaseModel):
    silence: SilenceModel


class SilencesAnswer(BaseModel):
    silences: list[SilenceModel]


class StatusAnswer(BaseModel):
    status: Literal["ok"]

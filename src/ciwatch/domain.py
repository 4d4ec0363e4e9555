"""The normalised model every provider is translated into (docs/architecture.md#the-model).

Pure data: frozen dataclasses and enums, no I/O. Every datetime is timezone-aware UTC; the
constructors reject naive or non-UTC values so a provider can never leak local time past its edge.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

# What a provider kind looks like (a source `type:`, a `/hooks/{kind}/` segment). The kinds
# themselves are the provider registry's (providers/registry.py); the domain, being pure, only
# checks the shape, and the store checks the kind against the registry (store/rows.py).
PROVIDER_NAME = re.compile(r"^[a-z][a-z0-9]{1,31}$")


class Status(enum.StrEnum):
    """Normalised status of a run or a job."""

    QUEUED = "queued"
    RUNNING = "running"
    MANUAL = "manual"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    SKIPPED = "skipped"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        """Queued or running: the target is polled at its faster `active_interval`."""
        return self in (Status.QUEUED, Status.RUNNING)

    @property
    def decisive(self) -> bool:
        """Success or failed: the statuses that set a ref's colour
        (docs/architecture.md#state-machine-and-time)."""
        return self in (Status.SUCCESS, Status.FAILED)

    @property
    def rank(self) -> int:
        """Progress order used to break ties between updates with the same `updated_at`."""
        return _RANK[self]


TERMINAL = frozenset({Status.SUCCESS, Status.FAILED, Status.CANCELED, Status.SKIPPED})
_RANK = {
    Status.QUEUED: 0,
    Status.MANUAL: 1,
    Status.RUNNING: 2,
    Status.SUCCESS: 3,
    Status.FAILED: 3,
    Status.CANCELED: 3,
    Status.SKIPPED: 3,
}


class UnknownStatus(NamedTuple):
    """What `map_status` returns alongside the status when the provider's word was unknown."""

    provider: str
    word: str


def map_status(provider: str, word: str | None) -> Status:
    """The normalised status for a word that is already one of ours (`Status` values, any case):
    what the push API accepts. Each CI system's own words are mapped by its provider module's
    `map_status` (`ProviderSpec.map_status`, docs/architecture.md#the-model)."""
    return map_status_checked(provider, word)[0]


def map_status_checked(provider: str, word: str | None) -> tuple[Status, UnknownStatus | None]:
    """Like `map_status`, and also report an unknown word (never raises): running, the safe
    status that is neither green nor red."""
    key = (word or "").strip().lower()
    if key in Status.__members__.values():
        return Status(key), None
    return Status.RUNNING, UnknownStatus(provider, word or "")


# Bounds of the commit and test fields of a run (docs/model.md): at most 20 failing tests' names
# of at most 200 characters each are kept per run.
COMMIT_LIMITS = {"commit_title": 200, "commit_author": 200, "commit_email": 254}
MAX_FAILING_TESTS = 20
MAX_TEST_NAME = 200
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]+")


def clean_text(value: str, limit: int) -> str:
    """`value` on one line without control characters or lone surrogates, cut to `limit`."""
    text = _UNPRINTABLE.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# The commits since a break's last green run (issue 13, `CommitRange`): at most this many are
# kept (newest first), each string bounded as the run's own commit fields.
MAX_RANGE_COMMITS = 20
MAX_LOGIN = 100
MAX_SHA = 64


@dataclass(frozen=True, slots=True)
class RangeCommit:
    """One commit of a range: its SHA, title, author's name and e-mail, and the author's login
    where the CI system knows one (GitHub)."""

    sha: str
    title: str | None = None
    author: str | None = None
    email: str | None = None
    login: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", clean_text(self.sha, MAX_SHA))
        limits = {
            "title": COMMIT_LIMITS["commit_title"],
            "author": COMMIT_LIMITS["commit_author"],
            "email": COMMIT_LIMITS["commit_email"],
            "login": MAX_LOGIN,
        }
        for name, limit in limits.items():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, clean_text(value, limit) or None)


@dataclass(frozen=True, slots=True)
class CommitRange:
    """The commits from a break's last green run (excluded) to the failing run's commit
    (included), newest first: at most `MAX_RANGE_COMMITS`, `total` as the CI system counts
    them, `cut` when some were left out (by us or by the CI system)."""

    commits: tuple[RangeCommit, ...]
    total: int
    cut: bool = False

    def __post_init__(self) -> None:
        commits = tuple(self.commits)
        total = max(int(self.total), len(commits))
        kept = commits[:MAX_RANGE_COMMITS]
        object.__setattr__(self, "commits", kept)
        object.__setattr__(self, "total", total)
        object.__setattr__(self, "cut", bool(self.cut) or total > len(kept))


def first_line(message: str | None) -> str | None:
    """A commit message's title: its first non-empty line."""
    for line in (message or "").splitlines():
        if line.strip():
            return line.strip()
    return None


def require_finite(value: float | None, name: str) -> None:
    """Raise ValueError when `value` is an infinite or NaN number (a duration)."""
    if value is not None and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def require_utc(value: datetime | None, name: str) -> None:
    """Raise ValueError unless `value` is None or an aware datetime at UTC offset zero."""
    if value is None:
        return
    if value.tzinfo is None or value.utcoffset() != timedelta(0):
        raise ValueError(f"{name} must be an aware UTC datetime, got {value!r}")


class RunKey(NamedTuple):
    source: str
    project: str
    run_id: str


class RefKey(NamedTuple):
    source: str
    project: str
    ref: str


class JobKey(NamedTuple):
    source: str
    project: str
    run_id: str
    job_id: str


@dataclass(frozen=True, slots=True)
class Run:
    """One pipeline (GitLab), workflow run (GitHub) or build (Jenkins)."""

    source: str
    provider: str
    project: str
    run_id: str
    status: Status
    updated_at: datetime
    number: int | None = None
    workflow: str | None = None
    ref: str | None = None
    sha: str | None = None
    event: str | None = None
    provider_status: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    queued_seconds: float | None = None
    url: str | None = None
    author: str | None = None
    attempt: int = 1
    # The commit the run built (issue 13): its title (first line of the message) and its
    # author's name and e-mail, from the payload (GitHub `head_commit`, GitLab hook `commit`,
    # Jenkins `changeSets`) or one commit read per changed failed run (GitLab API).
    commit_title: str | None = None
    commit_author: str | None = None
    commit_email: str | None = None
    # The run's test report (`tests: true` sources): counts and the first failing tests' names.
    tests_total: int | None = None
    tests_failed: int | None = None
    tests_skipped: int | None = None
    tests_errored: int | None = None
    tests_failing: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Informative text from the CI system: cleaned and cut here rather than refused, so an
        # odd commit message never costs the run itself.
        for name, limit in COMMIT_LIMITS.items():
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, clean_text(value, limit))
        failing = self.tests_failing
        if isinstance(failing, str):
            failing = tuple(name for name in failing.split("\n") if name)
        elif not isinstance(failing, tuple):
            failing = tuple(failing or ())
        object.__setattr__(
            self,
            "tests_failing",
            tuple(clean_text(name, MAX_TEST_NAME) for name in failing[:MAX_FAILING_TESTS]),
        )
        if not isinstance(self.provider, str) or not PROVIDER_NAME.match(self.provider):
            raise ValueError(f"provider must be a provider kind, got {self.provider!r}")
        if not isinstance(self.status, Status):
            object.__setattr__(self, "status", Status(self.status))
        for name in ("updated_at", "created_at", "started_at", "finished_at"):
            require_utc(getattr(self, name), name)
        require_finite(self.duration_seconds, "duration_seconds")
        require_finite(self.queued_seconds, "queued_seconds")
        if self.attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {self.attempt}")

    @property
    def key(self) -> RunKey:
        return RunKey(self.source, self.project, self.run_id)

    @property
    def ref_key(self) -> RefKey:
        return RefKey(self.source, self.project, self.ref or "")


@dataclass(frozen=True, slots=True)
class Job:
    """One job (GitLab job, GitHub workflow job, Jenkins pipeline stage) of a run."""

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

    def __post_init__(self) -> None:
        if not isinstance(self.status, Status):
            object.__setattr__(self, "status", Status(self.status))
        for name in ("updated_at", "created_at", "started_at", "finished_at"):
            require_utc(getattr(self, name), name)
        require_finite(self.duration_seconds, "duration_seconds")
        require_finite(self.queued_seconds, "queued_seconds")

    @property
    def key(self) -> JobKey:
        return JobKey(self.source, self.project, self.run_id, self.job_id)

    @property
    def run_key(self) -> RunKey:
        return RunKey(self.source, self.project, self.run_id)


@dataclass(frozen=True, slots=True)
class Target:
    """One thing a source polls: a GitLab project, a GitHub repo or a Jenkins job."""

    source: str
    provider: str
    project: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.project)


# The project of the target state that records a source's discovery (listing a group's
# projects, an organisation's repositories, a folder's jobs): no CI system has a project with
# an empty name.
DISCOVERY = ""
# The key, in the `extra` of a source's discovery state, of the end of the source's last
# rate-limit pause (ISO 8601 UTC): no target of the source is polled before it.
PAUSED_UNTIL = "paused_until"


@dataclass(frozen=True, slots=True)
class TargetState:
    """What the store keeps per target between polls: sync cursors and health."""

    source: str
    project: str
    cursor: str | None = None
    etag: str | None = None
    healthy: bool = True
    reason: str | None = None
    last_polled_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error_at: datetime | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # When the current unhealthy period began (None while healthy).
    unhealthy_since: datetime | None = None
    # The scheduler's compact record of what its last poll saw (`scheduler/digest.py`): opaque
    # to everything else, never shown.
    digest: str | None = None

    def __post_init__(self) -> None:
        for name in ("last_polled_at", "last_success_at", "last_error_at", "unhealthy_since"):
            require_utc(getattr(self, name), name)

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.project)

    @property
    def is_discovery(self) -> bool:
        """Whether this records the source's discovery rather than one target's polls."""
        return self.project == DISCOVERY

    @property
    def paused_until(self) -> datetime | None:
        """A discovery state's record of the end of the source's last rate-limit pause (past or
        future), or None."""
        value = self.extra.get(PAUSED_UNTIL) if self.is_discovery else None
        try:
            return datetime.fromisoformat(value) if value else None
        except ValueError:
            return None

    @property
    def label(self) -> str:
        """What to call it on a page or in a table: the project, or `(discovery)`."""
        return "(discovery)" if self.is_discovery else self.project


@dataclass(frozen=True, slots=True)
class RefState:
    """The state of one project/ref (docs/architecture.md#state-machine-and-time): its colour, since
    when, and its newest run.

    `status` is the status of the newest run that ended success or failed (by `created_at`);
    while a ref has no such run it is the newest run's status. `since` is when that colour began:
    the finish (else creation) time of the first run of the current success/failed streak.
    A newer queued, running, canceled or skipped run changes neither: a red ref with a new run
    in progress stays red (`failing`) until a run ends success. `last_run` is the newest run,
    whatever its status (what `ci_pipeline_status` shows).
    """

    source: str
    provider: str
    project: str
    ref: str
    status: Status
    since: datetime | None
    last_run: Run

    @property
    def key(self) -> RefKey:
        return RefKey(self.source, self.project, self.ref)

    @property
    def failing(self) -> bool:
        """The ref is red: its newest run that ended success or failed, failed. The one
        definition that the dashboard, `/api/v1/projects` (`failing`), `/cc.xml` (`Failure`)
        and `ci_ref_failing` share; a queued or running run on a red ref keeps it red."""
        return self.status is Status.FAILED

    @property
    def failing_since(self) -> datetime | None:
        """When the current red period began (`since`), None unless the ref is `failing`."""
        return self.since if self.failing else None


class AlertEventKind(enum.StrEnum):
    """Alert events (docs/architecture.md#alerting; the names are part of the contract)."""

    BROKEN = "broken"
    STILL_FAILING = "still_failing"
    RECOVERED = "recovered"
    STUCK = "stuck"
    QUEUED = "queued"
    # ciwatch's own health (alerting/health.py): a target, source, channel or the store.
    UNHEALTHY = "unhealthy"
    HEALTHY = "healthy"

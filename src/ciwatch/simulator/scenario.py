"""What a simulated CI world is made of: projects, their run timelines, faults, tokens, a seed.

Plain frozen dataclasses, built by `load_scenario` (YAML), `demo_scenario` or
`generated_scenario`. Times are seconds relative to the moment the simulator starts (negative
times are history that already exists then); `math.inf` as a duration means "never ends".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ciwatch.config.durations import parse_duration
from ciwatch.providers.registry import SIMULATED
from ciwatch.simulator.faults import Fault

# A provider kind the simulator serves: the registry's kinds whose spec names a simulator module.
Provider = str
PROVIDERS: tuple[Provider, ...] = tuple(SIMULATED)

# The scenario's own result words; each provider module translates them into its vocabulary.
RESULTS = ("success", "failed", "canceled", "skipped", "manual", "unstable", "timed_out")
EVENTS = ("push", "manual", "schedule", "merge_request")
JENKINS_KINDS = ("pipeline", "freestyle", "multibranch")

# The fake server's well-known credentials (they open nothing but the simulator itself).
DEFAULT_GITLAB_TOKEN = "glpat-simulator"  # noqa: S105
DEFAULT_GITHUB_TOKEN = "ghp_simulator"  # noqa: S105
DEFAULT_JENKINS_USER = "admin"
DEFAULT_JENKINS_TOKEN = "simulator-api-token"  # noqa: S105


@dataclass(frozen=True)
class JobSpec:
    """One job (GitLab job, GitHub workflow job, Jenkins stage) of a run."""

    name: str
    stage: str = "test"
    result: str | None = None  # None: derived from the run's result
    duration: float | None = None  # seconds; None: an even share of the run's duration


@dataclass(frozen=True)
class RerunSpec:
    """A re-run `after` seconds past the first attempt's end (GitLab retry, GitHub attempt 2,
    Jenkins replay as a new build)."""

    after: float = 60.0
    result: str = "success"
    queue: float = 0.0
    duration: float | None = None  # None: same as the first attempt


@dataclass(frozen=True)
class RunSpec:
    """One scripted run: created at `at`, queued `queue` s, running `duration` s, then `result`."""

    at: float
    ref: str | None = None  # None: the project's first ref
    queue: float = 5.0
    duration: float | None = None  # None: from the jobs' durations, else 60 s; inf: never ends
    result: str | None = None  # None: from the jobs' results, else success
    jobs: tuple[JobSpec, ...] = ()
    rerun: RerunSpec | None = None
    event: str = "push"
    author: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class GeneratedRerun:
    probability: float
    after: float = 120.0
    result: str = "success"


@dataclass(frozen=True)
class GeneratorSpec:
    """Runs that keep arriving: one every `every` seconds from `since`, each drawn from the seed."""

    every: float
    since: float | None = None  # None: twenty periods of history before the start
    results: tuple[tuple[str, float], ...] = (("success", 1.0),)
    queue: tuple[float, float] = (2.0, 20.0)
    duration: tuple[float, float] = (60.0, 240.0)
    refs: tuple[str, ...] = ()  # empty: the project's refs
    rerun: GeneratedRerun | None = None  # GitLab and GitHub only


@dataclass(frozen=True)
class ProjectSpec:
    """A GitLab project (`group/sub/app`), GitHub repo (`owner/repo`) or Jenkins job
    (`folder/job`, folders created from the path)."""

    provider: Provider
    path: str
    id: int | None = None
    refs: tuple[str, ...] = ("main",)
    kind: str = "pipeline"  # Jenkins: pipeline | freestyle | multibranch
    workflow: str = "CI"  # GitHub workflow name
    jobs: tuple[JobSpec, ...] = ()  # template for runs that list no jobs
    runs: tuple[RunSpec, ...] = ()
    generate: GeneratorSpec | None = None
    retention: int | None = None  # None: the scenario's


@dataclass(frozen=True)
class RateLimitSpec:
    limit: int
    window: float  # seconds


def default_rate_limits() -> dict[str, RateLimitSpec]:
    return {"gitlab": RateLimitSpec(2000, 60.0), "github": RateLimitSpec(5000, 3600.0)}


@dataclass(frozen=True)
class Tokens:
    """Accepted credentials. An empty collection turns authentication off for that provider."""

    gitlab: tuple[str, ...] = (DEFAULT_GITLAB_TOKEN,)
    github: tuple[str, ...] = (DEFAULT_GITHUB_TOKEN,)
    jenkins: tuple[tuple[str, str], ...] = ((DEFAULT_JENKINS_USER, DEFAULT_JENKINS_TOKEN),)


@dataclass
class Scenario:
    """Everything the simulator serves. `retention` bounds the runs kept per project."""

    projects: list[ProjectSpec]
    faults: list[Fault] = field(default_factory=list)
    tokens: Tokens = field(default_factory=Tokens)
    rate_limits: dict[str, RateLimitSpec] = field(default_factory=default_rate_limits)
    seed: int = 1
    retention: int = 100
    name: str = "scenario"


def parse_seconds(value: object, *, signed: bool = False, forever: bool = False) -> float:
    """A duration as the configuration writes it (`90`, `30s`, `5m`, `1h30m`, `250ms`) in
    seconds; `-2h` too when `signed` (scenario times before the start), and `forever`
    (math.inf) when allowed. Raises ValueError describing the value."""
    if isinstance(value, str):
        text = value.strip()
        if forever and text in ("forever", "never", "inf"):
            return math.inf
        if signed and text.startswith("-"):
            return -parse_duration(text[1:]).total_seconds()
    elif signed and isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        return -parse_duration(-value).total_seconds()
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a duration")
    return parse_duration(value).total_seconds()

"""Scenarios that need no file: the lively demo, and N generated targets for benchmarks."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

from ciwatch.simulator.scenario import (
    PROVIDERS,
    GeneratedRerun,
    GeneratorSpec,
    JobSpec,
    ProjectSpec,
    RateLimitSpec,
    RerunSpec,
    RunSpec,
    Scenario,
)
from ciwatch.simulator.timeline import AUTHORS, MESSAGES

_M = 60.0
_H = 3600.0
_D = 86400.0
HISTORY_DAYS = 14
GITLAB_JOBS = (
    JobSpec("compile", "build"),
    JobSpec("unit", "test"),
    JobSpec("lint", "test"),
    JobSpec("deploy", "deploy"),
)
GITHUB_JOBS = (JobSpec("build", "build"), JobSpec("test", "test"))
# An Azure Pipelines YAML pipeline: stages with their jobs (timeline records).
AZURE_JOBS = (JobSpec("Build", "Build"), JobSpec("Test", "Test"), JobSpec("Publish", "Deploy"))
JENKINS_STAGES = (
    JobSpec("Checkout", "Checkout"),
    JobSpec("Build", "Build"),
    JobSpec("Test", "Test"),
    JobSpec("Deploy", "Deploy"),
)


def _every(minutes: float, *results: tuple[str, float], rerun: float = 0.0) -> GeneratorSpec:
    return GeneratorSpec(
        every=minutes * _M,
        results=results or (("success", 0.85), ("failed", 0.15)),
        queue=(2.0, 25.0),
        duration=(90.0, 300.0),
        rerun=GeneratedRerun(rerun, after=90.0) if rerun else None,
    )


@dataclass(frozen=True)
class Habits:
    """How a demo project's history looks: runs a day on its first ref (each other ref gets
    `others` as many), the typical duration of a successful run, how often a green ref breaks."""

    per_day: tuple[int, int]
    duration: float
    breaks: float
    others: float = 0.5
    event: str = "push"


def history(path: str, refs: tuple[str, ...], habits: Habits) -> tuple[RunSpec, ...]:
    """HISTORY_DAYS days of finished runs before the last three hours, drawn from a generator
    seeded with the project's path (the same on every start).

    The demo gets its history as scripted runs that already exist when the simulator starts,
    so `ciwatch demo` fills its store through the real collection path (the first poll's
    backfill of every target), not by writing the store behind the collector's back; a few
    hundred runs over loopback take a few seconds (docs/simulator.md has the figures). Each ref
    has red periods (after a break the next runs fail too, with probability 0.6 each, until a
    fix), durations vary around the typical one (log-normal, sigma 0.18) and drift slower by 2 %
    a day, and a failed run stops early."""
    rng = random.Random(f"demo-history/{path}")
    runs: list[RunSpec] = []
    for position, ref in enumerate(refs):
        share = 1.0 if position == 0 else habits.others
        red = False
        for day in range(HISTORY_DAYS, 0, -1):
            start = -day * _D
            end = min(start + _D, -3 * _H)
            count = round(rng.randint(*habits.per_day) * share)
            for at in sorted(rng.uniform(start, end) for _ in range(count)):
                red = rng.random() < (0.6 if red else habits.breaks)
                result = "failed" if red else "canceled" if rng.random() < 0.03 else "success"
                slower = 1 + 0.02 * (HISTORY_DAYS - day)
                duration = habits.duration * slower * rng.lognormvariate(0.0, 0.18)
                if result != "success":
                    duration *= rng.uniform(0.3, 0.8)
                runs.append(
                    RunSpec(
                        at,
                        ref=ref,
                        queue=round(rng.uniform(2.0, 45.0)),
                        duration=round(duration),
                        result=result,
                        event=habits.event,
                        author=rng.choice(AUTHORS),
                        message=rng.choice(MESSAGES),
                    )
                )
    return tuple(runs)


# Per demo project: its history's habits (GitHub repos stay under 100 runs: a first poll sees
# the newest 100 at most, see docs/collection.md).
DEMO_HABITS = {
    "platform/backend/api": Habits((3, 6), 260.0, 0.12),
    "platform/frontend/web": Habits((2, 6), 180.0, 0.25),
    "platform/infra/terraform": Habits((1, 3), 420.0, 0.08),
    "octo-org/service": Habits((3, 5), 150.0, 0.1),
    "octo-org/docs": Habits((1, 3), 90.0, 0.05),
    "octo-org/mobile": Habits((2, 5), 540.0, 0.3),
    "backend/billing": Habits((2, 5), 300.0, 0.15),
    "backend/gateway": Habits((2, 4), 240.0, 0.1),
    "tools/nightly": Habits((1, 1), 1500.0, 0.2, event="schedule"),
    "tools/deploy": Habits((0, 2), 200.0, 0.1),
    "Fabrikam/web-ci": Habits((2, 5), 330.0, 0.15),
    "Fabrikam/deploy/infra": Habits((1, 2), 480.0, 0.1),
}


def with_history(project: ProjectSpec) -> ProjectSpec:
    """`project` with its HISTORY_DAYS days of history before its scripted runs."""
    habits = DEMO_HABITS.get(project.path)
    if habits is None:
        return project
    past = history(project.path, project.refs, habits)
    return dataclasses.replace(project, runs=(*past, *project.runs))


def demo_scenario() -> Scenario:
    """Twelve projects over GitLab, GitHub, Jenkins and Azure Pipelines with two weeks of
    history (`history`), successes, failures, recoveries, re-runs, a stuck run, long queues, an
    `input` step waiting, and runs that keep arriving."""
    fail_test = (
        JobSpec("compile", "build", "success", 70),
        JobSpec("unit", "test", "failed", 95),
        JobSpec("lint", "test", "success", 40),
        JobSpec("deploy", "deploy"),
    )
    projects = [
        ProjectSpec(
            "gitlab",
            "platform/backend/api",
            refs=("main", "develop"),
            jobs=GITLAB_JOBS,
            runs=(
                RunSpec(-50 * _M),
                RunSpec(-35 * _M, jobs=fail_test),
                RunSpec(-20 * _M, duration=4 * _M),
                RunSpec(-8 * _M, ref="develop"),
            ),
            generate=_every(4),
        ),
        ProjectSpec(
            "gitlab",
            "platform/frontend/web",
            jobs=GITLAB_JOBS,
            runs=(
                RunSpec(-40 * _M),
                # Fails and passes on retry (new job ids, same pipeline) well before the start:
                # the Flaky jobs page's GitLab example.
                RunSpec(-12 * _M, result="failed", rerun=RerunSpec(after=1 * _M)),
                RunSpec(
                    -4 * _M,
                    duration=90,
                    result="failed",
                    rerun=RerunSpec(after=2 * _M, result="success"),
                ),
            ),
            generate=_every(5, ("success", 0.6), ("failed", 0.4), rerun=0.3),
        ),
        ProjectSpec(
            "gitlab",
            "platform/infra/terraform",
            jobs=GITLAB_JOBS,
            runs=(RunSpec(-2 * _H), RunSpec(-75 * _M, duration=float("inf"))),
            generate=_every(6),
        ),
        ProjectSpec(
            "github",
            "octo-org/service",
            jobs=GITHUB_JOBS,
            runs=(
                RunSpec(-45 * _M),
                RunSpec(-25 * _M, result="failed", rerun=RerunSpec(after=3 * _M)),
            ),
            generate=_every(3, ("success", 0.85), ("failed", 0.15), rerun=0.3),
        ),
        ProjectSpec(
            "github",
            "octo-org/docs",
            workflow="Docs",
            jobs=GITHUB_JOBS,
            runs=(RunSpec(-60 * _M), RunSpec(-25 * _M, queue=40 * _M)),
            generate=_every(6),
        ),
        ProjectSpec(
            "github",
            "octo-org/mobile",
            jobs=GITHUB_JOBS,
            runs=(RunSpec(-30 * _M, result="failed"), RunSpec(-15 * _M, result="timed_out")),
            generate=_every(4, ("success", 0.4), ("failed", 0.5), ("canceled", 0.1)),
        ),
        ProjectSpec(
            "jenkins",
            "backend/billing",
            jobs=JENKINS_STAGES,
            # The failed build is rebuilt (a new build of the same commit) and passes: the
            # Flaky jobs page's Jenkins example.
            runs=(
                RunSpec(-30 * _M),
                RunSpec(-10 * _M, result="failed", rerun=RerunSpec(after=2 * _M)),
            ),
            generate=_every(4, ("success", 0.75), ("failed", 0.15), ("unstable", 0.1)),
        ),
        ProjectSpec(
            "jenkins",
            "backend/gateway",
            kind="multibranch",
            jobs=JENKINS_STAGES,
            refs=("main", "feature/login"),
            runs=(RunSpec(-20 * _M), RunSpec(-15 * _M, ref="feature/login", result="failed")),
            generate=_every(5),
        ),
        ProjectSpec(
            "jenkins",
            "tools/nightly",
            kind="freestyle",
            runs=(
                RunSpec(-6 * _H, event="schedule"),
                RunSpec(-30 * _M, event="schedule", result="unstable"),
            ),
            generate=_every(15, ("success", 0.7), ("unstable", 0.3)),
        ),
        ProjectSpec(
            "jenkins",
            "tools/deploy",
            jobs=JENKINS_STAGES,
            runs=(
                RunSpec(-40 * _M, result="manual", event="manual"),
                RunSpec(-20 * _M, queue=35 * _M),
            ),
            generate=_every(8),
        ),
        # Azure Pipelines: builds with stages and jobs from the timeline.
        ProjectSpec(
            "azure",
            "Fabrikam/web-ci",
            refs=("main", "release/1.x"),
            jobs=AZURE_JOBS,
            runs=(
                RunSpec(-45 * _M),
                RunSpec(-25 * _M, jobs=fail_test),
                RunSpec(-12 * _M, ref="release/1.x"),
            ),
            generate=_every(6, ("success", 0.75), ("failed", 0.2), ("canceled", 0.05)),
        ),
        ProjectSpec(
            "azure",
            "Fabrikam/deploy/infra",
            jobs=AZURE_JOBS,
            runs=(RunSpec(-30 * _M), RunSpec(-10 * _M, duration=6 * _M)),
            generate=_every(10),
        ),
    ]
    # Retention above the history's size: the first poll's backfill finds all of it.
    return Scenario(
        projects=[with_history(project) for project in projects],
        seed=7,
        retention=200,
        name="demo",
    )


def generated_scenario(targets: int, *, seed: int = 1) -> Scenario:
    """`targets` projects spread round-robin over GitLab, GitHub and Jenkins (a few multibranch
    and freestyle jobs), each with a seeded generator so runs keep arriving. Grouped 300 to a
    group/org/folder. Rate limits are generous so benchmarks measure the poller, not the quota."""
    if targets < 1:
        raise ValueError(f"targets: {targets} must be 1 or more")
    projects: list[ProjectSpec] = []
    for i in range(targets):
        provider = PROVIDERS[i % 3]
        rng = random.Random(f"{seed}/{i}")
        every = rng.choice((120.0, 180.0, 300.0, 600.0, 900.0, 1800.0))
        generate = GeneratorSpec(
            every=every,
            since=-20 * every + rng.uniform(0, every),
            results=(("success", 0.85), ("failed", 0.12), ("canceled", 0.03)),
            queue=(1.0, 30.0),
            duration=(30.0, 600.0),
            rerun=GeneratedRerun(0.2) if provider != "jenkins" else None,
        )
        group = f"{i // 300:03d}"
        refs: tuple[str, ...] = ("main", "develop") if i % 5 == 0 else ("main",)
        kind = "pipeline"
        if provider == "github":
            path = f"gen-org-{group}/app-{i:05d}"
        else:
            path = f"gen/team-{group}/app-{i:05d}"
            if provider == "jenkins":
                kind = "multibranch" if i % 7 == 0 else "freestyle" if i % 11 == 0 else "pipeline"
        projects.append(ProjectSpec(provider, path, refs=refs, kind=kind, generate=generate))
    limits = {"gitlab": RateLimitSpec(1_000_000, 60.0), "github": RateLimitSpec(10_000_000, _H)}
    return Scenario(
        projects, rate_limits=limits, seed=seed, retention=50, name=f"generated-{targets}"
    )

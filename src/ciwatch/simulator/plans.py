"""Run plans: the whole future of one run, fixed when the run is created.

A run is one or two attempts (the second is a re-run); each attempt is queued, then started, then
finished with a result, and its jobs run stage after stage inside it. Every time is an integer
number of milliseconds since the simulator started, so a run's state at any moment is a pure
function of the clock: nothing runs in the background and a fake clock controls everything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ciwatch.simulator.scenario import JobSpec, RerunSpec

FOREVER = 1 << 62  # ms: a time that never comes
DEFAULT_JOBS = (JobSpec("build", "build"), JobSpec("test", "test"), JobSpec("deploy", "deploy"))
_STOPPING = frozenset({"failed", "canceled", "timed_out", "unstable"})
_DEFAULT_STAGE_MS = 60_000
MAX_JOBS = 50  # job ids leave room for this many jobs per attempt

Phase = Literal["queued", "running", "done"]


def ms(seconds: float) -> int:
    """Seconds as integer milliseconds; infinity as FOREVER."""
    return FOREVER if seconds == float("inf") else round(seconds * 1000)


@dataclass(frozen=True, slots=True)
class JobPlan:
    index: int
    name: str
    stage: str
    result: str
    start: int  # ms after the attempt started
    duration: int  # ms

    def status_at(self, attempt: Attempt, now: int) -> tuple[str, int | None, int | None]:
        """("waiting" | "running" | result, started, finished) at `now`."""
        begin = attempt.started + self.start
        end = min(begin + self.duration, FOREVER)
        if now < attempt.started or now < begin:
            return "waiting", None, None
        if self.result in ("skipped", "manual"):
            return self.result, None, None
        if now < end:
            return "running", begin, None
        return self.result, begin, end


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    queued: int
    started: int
    finished: int
    result: str
    jobs: tuple[JobPlan, ...]

    def phase(self, now: int) -> Phase:
        if now < self.started:
            return "queued"
        return "running" if now < self.finished else "done"

    def events(self) -> tuple[int, int, int]:
        return (self.queued, self.started, self.finished)


@dataclass(frozen=True, slots=True)
class RunPlan:
    n: int  # position in the project's sequence: GitLab iid - 1, run_number - 1, build - 1
    ref: str
    sha: str
    event: str
    author: str
    message: str
    attempts: tuple[Attempt, ...]

    @property
    def created(self) -> int:
        return self.attempts[0].queued

    def attempt_at(self, now: int) -> Attempt:
        """The newest attempt that exists at `now` (the first one always does)."""
        current = self.attempts[0]
        for attempt in self.attempts[1:]:
            if attempt.queued <= now:
                current = attempt
        return current

    def updated(self, now: int) -> int:
        """When something about the run last changed, as of `now`."""
        return max(t for a in self.attempts for t in a.events() if t <= now)

    def last_event(self) -> int:
        return max(t for a in self.attempts for t in a.events() if t < FOREVER)


def sha_for(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=20).hexdigest()


def derive_result(jobs: Sequence[JobSpec]) -> str:
    for job in jobs:
        if job.result in _STOPPING or job.result == "manual":
            return job.result
    return "success"


def schedule(jobs: Sequence[JobSpec], result: str, total: int | None) -> tuple[JobPlan, ...]:
    """Lay jobs out stage after stage; jobs without a result get one from the run's `result`
    (the first job of the second stage takes the blame); stages after a failure are skipped."""
    jobs = list(jobs or DEFAULT_JOBS)[:MAX_JOBS]
    stages = list(dict.fromkeys(job.stage for job in jobs))
    results = _job_results(jobs, stages, result)
    running = _running_stages(jobs, stages, results)
    finite = total is not None and total < FOREVER
    share = total // max(len(running), 1) if total is not None and finite else _DEFAULT_STAGE_MS
    durations = [ms(j.duration) if j.duration is not None else share for j in jobs]
    if total and finite and all(j.duration is not None for j in jobs):
        natural = sum(
            max(durations[i] for i, j in enumerate(jobs) if j.stage == s) for s in running
        )
        if natural:
            durations = [d * total // natural for d in durations]
    plans: list[JobPlan] = []
    clock = 0
    for stage in stages:
        members = [i for i, job in enumerate(jobs) if job.stage == stage]
        is_last = stage == running[-1] if running else False
        if stage not in running:  # after a failed stage
            plans += [JobPlan(i, jobs[i].name, stage, "skipped", clock, 0) for i in members]
            continue
        longest = 0
        for i in members:
            span = 0 if results[i] in ("skipped", "manual") else durations[i]
            if is_last and total is not None and total >= FOREVER and span:
                span = FOREVER
            plans.append(JobPlan(i, jobs[i].name, stage, results[i], clock, span))
            longest = max(longest, span)
        clock = min(clock + longest, FOREVER)
    return tuple(sorted(plans, key=lambda p: p.index))


def _job_results(jobs: list[JobSpec], stages: list[str], result: str) -> list[str]:
    if any(job.result for job in jobs) or result == "success":
        return [job.result or "success" for job in jobs]
    if result == "skipped":
        return ["skipped"] * len(jobs)
    if result == "manual":
        last = stages[-1]
        first_of_last = next(i for i, job in enumerate(jobs) if job.stage == last)
        return ["manual" if i == first_of_last else "success" for i in range(len(jobs))]
    blamed_stage = stages[min(1, len(stages) - 1)]
    blamed = next(i for i, job in enumerate(jobs) if job.stage == blamed_stage)
    return [result if i == blamed else "success" for i in range(len(jobs))]


def _running_stages(jobs: list[JobSpec], stages: list[str], results: list[str]) -> list[str]:
    running: list[str] = []
    for stage in stages:
        stage_results = [r for r, job in zip(results, jobs, strict=True) if job.stage == stage]
        if all(r == "skipped" for r in stage_results):
            continue
        running.append(stage)
        if any(r in _STOPPING for r in stage_results):
            break
    return running


def _finish(jobs: tuple[JobPlan, ...], started: int, total: int | None) -> int:
    if total is not None:
        return min(started + total, FOREVER)
    return min(started + max((j.start + j.duration for j in jobs), default=0), FOREVER)


def build_attempts(
    created: int,
    queue: int,
    duration: int | None,
    result: str,
    jobs: Sequence[JobSpec],
    rerun: RerunSpec | None,
) -> tuple[Attempt, ...]:
    """The first attempt, and the re-run attempt when there is one and the first one ends."""
    if result == "skipped":
        duration = 0
    planned = schedule(jobs, result, duration)
    started = created + queue
    first = Attempt(1, created, started, _finish(planned, started, duration), result, planned)
    if rerun is None or first.finished >= FOREVER:
        return (first,)
    queued = first.finished + ms(rerun.after)
    again = ms(rerun.duration) if rerun.duration is not None else first.finished - first.started
    templates = [JobSpec(j.name, j.stage) for j in (jobs or DEFAULT_JOBS)]
    replanned = schedule(templates, rerun.result, again)
    start2 = queued + ms(rerun.queue)
    second = Attempt(2, queued, start2, _finish(replanned, start2, again), rerun.result, replanned)
    return (first, second)

"""Test reports of simulated runs, the same for every vendor: a pure function of the plan.

Each finished job of a finished attempt ran `CASES_PER_JOB` JUnit cases (class = the job's name,
cases `case_1` …); a failed job failed its first two cases, and the last case of every job is
skipped. A job that never ran (skipped, manual) reported nothing. A running attempt has no report
yet (GitLab answers zero counts, Jenkins has no `testReport` until the build published one).
"""

from __future__ import annotations

from dataclasses import dataclass

from ciwatch.simulator.plans import Attempt

CASES_PER_JOB = 6
FAILED_PER_JOB = 2
_FAILED_JOB = frozenset({"failed", "timed_out", "unstable"})


@dataclass(frozen=True, slots=True)
class Case:
    classname: str
    name: str
    status: str  # "success", "failed", "skipped"


def cases(attempt: Attempt, now: int) -> list[Case] | None:
    """The attempt's test cases at `now`; None while the attempt runs."""
    if attempt.phase(now) != "done":
        return None
    found: list[Case] = []
    for job in attempt.jobs:
        word, _started, finished = job.status_at(attempt, now)
        if finished is None:
            continue
        failed = word in _FAILED_JOB
        for k in range(1, CASES_PER_JOB + 1):
            if k == CASES_PER_JOB:
                status = "skipped"
            elif failed and k <= FAILED_PER_JOB:
                status = "failed"
            else:
                status = "success"
            found.append(Case(job.name, f"case_{k}", status))
    return found


def counts(found: list[Case]) -> dict[str, int]:
    return {
        "total": len(found),
        "success": sum(c.status == "success" for c in found),
        "failed": sum(c.status == "failed" for c in found),
        "skipped": sum(c.status == "skipped" for c in found),
    }

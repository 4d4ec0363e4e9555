"""The state machine of docs/architecture.md#state-machine-and-time as pure functions: forward-only
merge of run updates and the state of a project/ref (its transitions are alert decisions:
`alerting/rules.py`). The store does the same merge in SQL; these functions are the reference
its tests compare against.

Merge rules (a join-semilattice, so any order and any duplication of updates converges):

- Every update has a *version*: ``(attempt, updated_at, status rank, content digest)``, encoded
  as a string that sorts in that order. The newest version wins the lifecycle fields (status,
  provider status, timestamps of the attempt, durations): an older update never reopens a
  finished run, and a re-run attempt (higher ``attempt``, or a newer ``updated_at``) does.
- Identity fields (number, workflow, ref, sha, event, url, created_at) never change for a run
  id; an update that lacks one keeps the value another update supplied, whatever their order.
  ``author`` (who triggered this attempt) is kept the same way within one attempt.
- The digest only breaks ties between different updates carrying the same
  ``(attempt, updated_at, rank)``, so that even those converge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import fields, replace
from datetime import datetime
from typing import Any, TypeVar

from ciwatch.domain import Job, RefState, Run

IDENTITY_FIELDS = (
    "number",
    "workflow",
    "ref",
    "sha",
    "event",
    "url",
    "created_at",
    "commit_title",
    "commit_author",
    "commit_email",
)
# The test report belongs to one attempt (a re-run has its own).
TEST_FIELDS = ("tests_total", "tests_failed", "tests_skipped", "tests_errored", "tests_failing")
ATTEMPT_FIELDS = ("author", *TEST_FIELDS)
DIGEST_FIELDS = (
    "status",
    "provider_status",
    "started_at",
    "finished_at",
    "duration_seconds",
    "queued_seconds",
)
JOB_IDENTITY_FIELDS = ("name", "stage", "runner", "url", "created_at")
JOB_DIGEST_FIELDS = (
    "status",
    "provider_status",
    "started_at",
    "finished_at",
    "duration_seconds",
    "queued_seconds",
    "allow_failure",
)


def _digest(obj: Run | Job, names: Iterable[str]) -> str:
    parts = []
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        parts.append(f"{name}={value!r}")
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def _version(obj: Run | Job, digest_fields: Iterable[str]) -> str:
    stamp = obj.updated_at.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return f"{obj.attempt:06d}|{stamp}|{obj.status.rank}|{_digest(obj, digest_fields)}"


def version_key(run: Run) -> str:
    """The sortable version of a run update: a later string is a newer update."""
    return _version(run, DIGEST_FIELDS)


def progress_key(run: Run) -> tuple[int, datetime, int]:
    """How far a run has got, without the content digest: an update whose progress is not past
    the stored run's brings nothing new from the provider (used to skip fetching details)."""
    return (run.attempt, run.updated_at, run.status.rank)


def job_version_key(job: Job) -> str:
    """The sortable version of a job update, as `version_key` for runs."""
    return _version(job, JOB_DIGEST_FIELDS)


_T = TypeVar("_T", Run, Job)


def _missing(value: object) -> bool:
    # No failing tests' names is stored as NULL, like any other missing value.
    return value is None or value == ()


def _merge(
    stored: _T | None, incoming: _T, version: str, stored_version: str, identity: Iterable[str]
) -> _T:
    if stored is None:
        return incoming
    newer, older = (incoming, stored) if version > stored_version else (stored, incoming)
    changes: dict[str, Any] = {}
    for name in identity:
        if _missing(getattr(newer, name)) and not _missing(getattr(older, name)):
            changes[name] = getattr(older, name)
    if isinstance(newer, Run) and isinstance(older, Run) and newer.attempt == older.attempt:
        for name in ATTEMPT_FIELDS:
            if _missing(getattr(newer, name)) and not _missing(getattr(older, name)):
                changes[name] = getattr(older, name)
    return replace(newer, **changes) if changes else newer


def merge_run(stored: Run | None, incoming: Run) -> Run:
    """The run after applying `incoming` to `stored` (None when the run is new)."""
    if stored is None:
        return incoming
    return _merge(stored, incoming, version_key(incoming), version_key(stored), IDENTITY_FIELDS)


def merge_job(stored: Job | None, incoming: Job) -> Job:
    """The job after applying `incoming` to `stored`, by the same rules as runs."""
    if stored is None:
        return incoming
    return _merge(
        stored, incoming, job_version_key(incoming), job_version_key(stored), JOB_IDENTITY_FIELDS
    )


def fold_runs(updates: Iterable[Run]) -> Run | None:
    """Apply updates in the given order; the result does not depend on that order."""
    state: Run | None = None
    for update in updates:
        state = merge_run(state, update)
    return state


def order_time(run: Run) -> datetime:
    """When a run counts as created, for "newest run" questions."""
    return run.created_at or run.started_at or run.updated_at


def ref_sort_key(run: Run) -> tuple[datetime, str]:
    """Newest-first order of the runs of one ref: creation time, then run id."""
    return (order_time(run), run.run_id)


def ref_state(runs: Iterable[Run]) -> RefState | None:
    """The state of one project/ref from its runs (all of the same source, project and ref)."""
    ordered = sorted(runs, key=ref_sort_key, reverse=True)
    if not ordered:
        return None
    newest = ordered[0]
    decisive = [run for run in ordered if run.status.decisive]
    if not decisive:
        status, since = newest.status, order_time(newest)
    else:
        status = decisive[0].status
        first = decisive[0]
        for run in decisive[1:]:
            if run.status is not status:
                break
            first = run
        since = first.finished_at or order_time(first)
    return RefState(
        source=newest.source,
        provider=newest.provider,
        project=newest.project,
        ref=newest.ref or "",
        status=status,
        since=since,
        last_run=newest,
    )


def decisive_run(runs: Iterable[Run]) -> Run | None:
    """The newest run of a ref that ended success or failed: the one that sets its colour."""
    decisive = [run for run in runs if run.status.decisive]
    return max(decisive, key=ref_sort_key) if decisive else None


RUN_FIELDS = tuple(f.name for f in fields(Run))
JOB_FIELDS = tuple(f.name for f in fields(Job))

"""Conversions between domain objects and table rows.

Reading never fails on a stored value: a row the domain model would refuse (written before the
edge validated its input, or by hand: an infinite or NaN duration, an attempt below 1, an
unknown status word) becomes a Run or Job with that one field repaired (`repaired_run`), so
that every page listing it still renders.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from ciwatch.domain import CommitRange, Job, Run, Status, TargetState
from ciwatch.providers.registry import PUSH, RUN_PROVIDERS
from ciwatch.serialize import commit_range_from_dict, commit_range_to_dict
from ciwatch.state import JOB_FIELDS, RUN_FIELDS, job_version_key, version_key
from ciwatch.store.tables import jobs, runs
from ciwatch.validation import loggable

log = logging.getLogger("ciwatch.store")

TARGET_FIELDS = (
    "source",
    "project",
    "cursor",
    "etag",
    "healthy",
    "reason",
    "last_polled_at",
    "last_success_at",
    "last_error_at",
    "extra",
    "unhealthy_since",
    "digest",
)

# The columns that make up a Run / Job, in the dataclass's field order: `Run(*row)` works.
RUN_COLUMNS = tuple(runs.c[name] for name in RUN_FIELDS)
JOB_COLUMNS = tuple(jobs.c[name] for name in JOB_FIELDS)


def run_values(run: Run) -> dict[str, Any]:
    """The row values for one run update, its version included."""
    values = {name: getattr(run, name) for name in RUN_FIELDS}
    values["status"] = run.status.value
    # One name a line (names are one line each): NULL when there are none, so it coalesces.
    values["tests_failing"] = "\n".join(run.tests_failing) or None
    values["version"] = version_key(run)
    return values


def job_values(job: Job) -> dict[str, Any]:
    """The row values for one job update, its version included."""
    values = {name: getattr(job, name) for name in JOB_FIELDS}
    values["status"] = job.status.value
    values["version"] = job_version_key(job)
    return values


def run_from_row(row: Mapping[Any, Any]) -> Run:
    """A Run from a row holding (at least) the RUN_FIELDS columns."""
    values = {name: row[name] for name in RUN_FIELDS}
    try:
        values["status"] = Status(values["status"])
        run = Run(**values)
    except (ValueError, TypeError):
        return repaired_run(values)
    # The domain checks a provider's shape only; the kinds are the registry's.
    return run if run.provider in RUN_PROVIDERS else repaired_run(values)


def run_from_fields(fields: Sequence[Any]) -> Run:
    """A Run from the RUN_COLUMNS values in order (the fast path of the big reads)."""
    try:
        run = Run(*fields)
    except (ValueError, TypeError):
        return repaired_run(dict(zip(RUN_FIELDS, fields, strict=True)))
    if run.provider not in RUN_PROVIDERS:
        return repaired_run(dict(zip(RUN_FIELDS, fields, strict=True)))
    return run


def job_from_row(row: Mapping[Any, Any]) -> Job:
    """A Job from a row holding the JOB_FIELDS columns."""
    values = {name: row[name] for name in JOB_FIELDS}
    values["allow_failure"] = bool(values["allow_failure"])
    try:
        values["status"] = Status(values["status"])
        return Job(**values)
    except (ValueError, TypeError):
        return Job(**_repaired(values, "job"))


def repaired_run(values: dict[str, Any]) -> Run:
    """A Run from stored values the model refuses, with each bad field repaired."""
    return Run(**_repaired(values, "run"))


def _repaired(values: dict[str, Any], what: str) -> dict[str, Any]:
    fixed = dict(values)
    for name in ("duration_seconds", "queued_seconds"):
        value = fixed.get(name)
        if value is not None and (not isinstance(value, int | float) or not math.isfinite(value)):
            fixed[name] = None
    status = fixed.get("status")
    if not isinstance(status, Status):
        # An unknown word stored by hand: never shown as green.
        fixed["status"] = Status(status) if status in set(Status) else Status.FAILED
    attempt = fixed.get("attempt")
    if not isinstance(attempt, int) or attempt < 1:
        fixed["attempt"] = 1
    if what == "run" and fixed.get("provider") not in RUN_PROVIDERS:
        fixed["provider"] = PUSH
    log.warning(
        "stored %s %s/%s #%s has values the model refuses; shown repaired",
        what,
        loggable(fixed.get("source")),
        loggable(fixed.get("project")),
        loggable(fixed.get("run_id")),
    )
    return fixed


def target_values(state: TargetState) -> dict[str, Any]:
    """The row values of a target state."""
    values = {name: getattr(state, name) for name in TARGET_FIELDS}
    values["extra"] = dict(state.extra)
    return values


def target_from_row(row: Mapping[Any, Any]) -> TargetState:
    """A TargetState from a `targets` row."""
    values = {name: row[name] for name in TARGET_FIELDS}
    values["healthy"] = bool(values["healthy"])
    values["extra"] = {str(k): str(v) for k, v in (values["extra"] or {}).items()}
    return TargetState(**values)


# The stored `runs.commit_range` is read only up to this size: what `range_value` writes is
# well below it (20 bounded commits), a longer value was not written by ciwatch.
MAX_RANGE_VALUE = 64 * 1024


def range_value(found: CommitRange) -> str:
    """The `runs.commit_range` text of a range (compact JSON)."""
    return json.dumps(commit_range_to_dict(found), separators=(",", ":"), ensure_ascii=False)


def range_from_value(value: object) -> CommitRange | None:
    """The range a stored `runs.commit_range` holds; None for none and for a value that is
    not one (too long, not JSON, another shape: logged), so a page never fails on it."""
    if value is None:
        return None
    if isinstance(value, str) and len(value) <= MAX_RANGE_VALUE:
        try:
            found = commit_range_from_dict(json.loads(value))
        except (ValueError, RecursionError):
            found = None
        if found is not None:
            return found
    log.warning("stored commit range is not one; left out")
    return None

"""Conversions between domain objects and table rows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ciwatch.domain import Job, Run, Status, TargetState
from ciwatch.state import JOB_FIELDS, RUN_FIELDS, job_version_key, version_key
from ciwatch.store.tables import jobs, runs

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
)

# The columns that make up a Run / Job, in the dataclass's field order: `Run(*row)` works.
RUN_COLUMNS = tuple(runs.c[name] for name in RUN_FIELDS)
JOB_COLUMNS = tuple(jobs.c[name] for name in JOB_FIELDS)


def run_values(run: Run) -> dict[str, Any]:
    """The row values for one run update, its version included."""
    values = {name: getattr(run, name) for name in RUN_FIELDS}
    values["status"] = run.status.value
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
    values["status"] = Status(values["status"])
    return Run(**values)


def job_from_row(row: Mapping[Any, Any]) -> Job:
    """A Job from a row holding the JOB_FIELDS columns."""
    values = {name: row[name] for name in JOB_FIELDS}
    values["status"] = Status(values["status"])
    values["allow_failure"] = bool(values["allow_failure"])
    return Job(**values)


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

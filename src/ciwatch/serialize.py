"""JSON shapes of the contract (docs/architecture.md#http-and-dashboard, docs/cli.md): runs, jobs
and project/ref states as plain dicts.

Pure: field names are those of the domain model, times ISO 8601 UTC with `Z`.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from enum import Enum
from typing import Any

from ciwatch.domain import Job, RefState, Run
from ciwatch.timeutil import iso_z


def _plain(value: object) -> Any:
    if isinstance(value, datetime):
        return iso_z(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


def run_to_dict(run: Run) -> dict[str, Any]:
    """A run with the field names of docs/architecture.md#the-model."""
    return {f.name: _plain(getattr(run, f.name)) for f in fields(run)}


def job_to_dict(job: Job) -> dict[str, Any]:
    return {f.name: _plain(getattr(job, f.name)) for f in fields(job)}


def ref_state_to_dict(state: RefState) -> dict[str, Any]:
    """One `/api/v1/projects` entry: source, provider, project, ref, status, failing, since,
    last_run (`failing` is `RefState.failing`: the ref is red)."""
    return {
        "source": state.source,
        "provider": state.provider,
        "project": state.project,
        "ref": state.ref,
        "status": state.status.value,
        "failing": state.failing,
        "since": iso_z(state.since),
        "last_run": run_to_dict(state.last_run),
    }

"""JSON shapes of the contract (docs/architecture.md#http-and-dashboard, docs/cli.md): runs, jobs
and project/ref states as plain dicts.

Pure: field names are those of the domain model, times ISO 8601 UTC with `Z`.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from enum import Enum
from typing import Any

from ciwatch.domain import CommitRange, Job, RangeCommit, RefState, Run
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


def commit_range_to_dict(found: CommitRange) -> dict[str, Any]:
    """A range of commits (`Notice.commit_range`, the stored `runs.commit_range`, the API):
    `{"total": 3, "cut": false, "commits": [{"sha", "title", "author", "email", "login"}]}`."""
    return {
        "total": found.total,
        "cut": found.cut,
        "commits": [{f.name: getattr(c, f.name) for f in fields(c)} for c in found.commits],
    }


def commit_range_from_dict(data: object) -> CommitRange | None:
    """The inverse of `commit_range_to_dict`, forgiving: a stored or queued value that is not
    such a dict (hand-edited, truncated) is None, a commit without a SHA is left out and a
    field of the wrong type is dropped, so a bad value can never break a page or a message."""
    if not isinstance(data, dict) or not isinstance(data.get("commits"), list):
        return None
    commits = []
    for item in data["commits"]:
        if not isinstance(item, dict) or not isinstance(item.get("sha"), str) or not item["sha"]:
            continue
        text = {
            name: item[name]
            for name in ("title", "author", "email", "login")
            if isinstance(item.get(name), str)
        }
        commits.append(RangeCommit(item["sha"], **text))
    total = data.get("total")
    if not isinstance(total, int) or isinstance(total, bool) or total < 0:
        total = len(commits)
    return CommitRange(tuple(commits), total, cut=data.get("cut") is True)

"""Pydantic models of the JSON answers, for the OpenAPI document (DESIGN §3, §9).

Handlers answer with the dicts of `ciwatch.serialize` (the single definition of the JSON shapes);
these models describe them, and a test checks that every answer validates against its model and
that the run and job models have exactly the domain model's fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from ciwatch.domain import Status

Provider = Literal["gitlab", "github", "jenkins", "push"]


class RunModel(BaseModel):
    """One pipeline (GitLab), workflow run (GitHub) or build (Jenkins). Times are ISO 8601 UTC
    with `Z`."""

    source: str = Field(description="Name of the configured source, or `push`.")
    provider: Provider
    project: str = Field(description="GitLab group/project, GitHub owner/repo, Jenkins folder/job.")
    run_id: str = Field(description="The provider's id of the run.")
    status: Status = Field(description="Normalised status.")
    updated_at: datetime = Field(description="The provider's last-change time.")
    number: int | None = Field(None, description="GitLab iid, GitHub run_number, Jenkins build.")
    workflow: str | None = None
    ref: str | None = Field(None, description="Branch or tag.")
    sha: str | None = None
    event: str | None = Field(None, description="push, merge_request, schedule, manual, ...")
    provider_status: str | None = Field(None, description="The provider's own status word(s).")
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    queued_seconds: float | None = None
    url: str | None = None
    author: str | None = None
    attempt: int = Field(1, description="Re-run attempt of the same run id (1 for the first).")


class JobModel(BaseModel):
    """One job (GitLab job, GitHub workflow job, Jenkins stage) of a run."""

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


class RunsPage(BaseModel):
    """One page of runs, newest first; pass `next` back as `cursor` for the following page."""

    runs: list[RunModel]
    next: str | None = Field(description="Cursor of the next page; null on the last page.")


class RunDetail(BaseModel):
    """One run and its jobs (in creation order)."""

    run: RunModel
    jobs: list[JobModel]


class RefStateModel(BaseModel):
    """The state of one project/ref: the status of its newest success/failed run (its colour),
    since when, and its newest run."""

    source: str
    provider: Provider
    project: str
    ref: str = Field(description='Branch or tag; "" for runs without one.')
    status: Status
    since: datetime | None = Field(description="When the current colour began.")
    last_run: RunModel


class ProjectsAnswer(BaseModel):
    projects: list[RefStateModel]


class TargetModel(BaseModel):
    """Health of one polled target (a GitLab project, GitHub repo or Jenkins job)."""

    source: str
    provider: str | None = Field(description="The source's type; null if no longer configured.")
    project: str
    healthy: bool
    reason: str | None = Field(None, description="Why the target is unhealthy.")
    last_polled_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error_at: datetime | None = None


class TargetsAnswer(BaseModel):
    targets: list[TargetModel]


class AlertsAnswer(BaseModel):
    alerts: list[dict[str, Any]] = Field(
        description="Firing alerts. Always empty until alerting lands in a later release."
    )


class StatusAnswer(BaseModel):
    status: Literal["ok"]

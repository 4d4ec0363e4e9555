"""The GCPE-compatible family (`metrics.gcpe_compatible`, docs/migrating-from-gcpe.md).

The names, help texts, label names and status words of mvisonneau/gitlab-ci-pipelines-exporter
(its pkg/controller/collectors.go; tests/fixtures/gcpe/, origin in tests/fixtures/SOURCES.md),
for the metrics ciwatch has the data of. Only refs of GitLab sources have these series. The
per-ref families are specs like `METRICS`' (`spec.py`): their samplers and inputs are here.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from datetime import datetime

from ciwatch.domain import Job, RefKey, RefState, Status
from ciwatch.metrics.snapshot import Snapshot
from ciwatch.metrics.spec import Families, Family, Input, MetricSpec, RefView, add, sample
from ciwatch.providers.gitlab import GITLAB_STATUS
from ciwatch.selfmetrics import CollectionMetrics

GITLAB = "gitlab"
GCPE_LABELS = ("project", "topics", "kind", "ref", "source", "variables")
GCPE_JOB_LABELS = (
    *GCPE_LABELS,
    "stage",
    "job_name",
    "runner_description",
    "tag_list",
    "failure_reason",
)
# GCPE's `statusesList`: the `status` label values of its *_status metrics.
GCPE_STATUSES = (
    "created",
    "waiting_for_resource",
    "preparing",
    "pending",
    "running",
    "success",
    "failed",
    "canceled",
    "skipped",
    "manual",
    "scheduled",
    "error",
    "success_with_warnings",
)

# GitLab's merge request refs (`refs/merge-requests/:iid/head`, `/merge` for merged results,
# `/train` for merge trains): GCPE names such a ref by the merge request's iid, kind
# `merge-request` (its RefKindMergeRequest).
_MERGE_REQUEST_REF = re.compile(r"refs/merge-requests/([0-9]+)/(?:head|merge|train)")
# A run stored without GitLab's own word (e.g. by an older ciwatch): the nearest GitLab word.
_GITLAB_WORD = {
    Status.QUEUED: "pending",
    Status.RUNNING: "running",
    Status.MANUAL: "manual",
    Status.SUCCESS: "success",
    Status.FAILED: "failed",
    Status.CANCELED: "canceled",
    Status.SKIPPED: "skipped",
}


def gcpe_kind_ref(ref: str) -> tuple[str, str]:
    """GCPE's `kind` and `ref` labels for a GitLab ref. ciwatch does not record whether a ref
    is a tag: every ref that is not a merge request's is a `branch`."""
    found = _MERGE_REQUEST_REF.fullmatch(ref) if ref.startswith("refs/") else None
    if found is not None:
        return "merge-request", found.group(1)
    return "branch", ref


def _gcpe_labels(view: RefView) -> dict[str, str]:
    state = view.state
    kind, ref = gcpe_kind_ref(state.ref)
    return {
        "project": state.project,
        "topics": "",
        "kind": kind,
        "ref": ref,
        "source": state.last_run.event or "",
        "variables": "",
    }


def _gcpe_job_labels(view: RefView) -> list[tuple[Job, dict[str, str]]]:
    labels = view.derived("gcpe_labels", _gcpe_labels)
    return [
        (
            job,
            {
                **labels,
                "stage": job.stage or "",
                "job_name": job.name,
                "runner_description": job.runner or "",
                "tag_list": "",
                "failure_reason": "",
            },
        )
        for job in view.jobs
    ]


def gcpe_owners(snap: Snapshot) -> frozenset[RefKey]:
    """The GitLab refs that carry the GCPE series: GCPE's labels have no ciwatch source, and a
    merge request's `head` and `merge` refs are one GCPE ref, so of the refs with the same
    (project, kind, ref) labels only the one with the newest run does (a duplicate series would
    make Prometheus reject the scrape)."""
    best: dict[tuple[str, str, str], RefState] = {}
    for state in snap.refs:
        if state.provider != GITLAB:
            continue
        kind, ref = gcpe_kind_ref(state.ref)
        key = (state.project, kind, ref)
        other = best.get(key)
        if other is None or _newer(state, other):
            best[key] = state
    return frozenset(state.key for state in best.values())


def _newer(one: RefState, other: RefState) -> bool:
    def order(state: RefState) -> tuple[datetime, datetime, str, str]:
        run = state.last_run
        created = run.created_at or run.updated_at
        return (created, run.updated_at, state.source, state.ref)

    return order(one) > order(other)


def _gitlab_word(provider_status: str | None, status: Status) -> str:
    """GitLab's own status word, when it is one that gives the stored status."""
    word = provider_status.lower() if provider_status else None
    if word is not None and GITLAB_STATUS.get(word) is status:
        return word
    return _GITLAB_WORD[status]


def _gcpe_status(family: Family, labels: dict[str, str], current: str, sparse: bool) -> None:
    # GCPE's emitStatusMetric: its status words in order, 1 for the current one; sparse keeps
    # only that one. A word GCPE does not list gets no 1 (as in GCPE).
    for word in GCPE_STATUSES:
        if word == current:
            sample(family, {**labels, "status": word}, 1.0)
        elif not sparse:
            sample(family, {**labels, "status": word}, 0.0)


def _numeric_id(value: str) -> float | None:
    return float(value) if value.isascii() and value.isdigit() else None


def _warns(job: Job) -> bool:
    """A failed job allowed to fail: GCPE's `success_with_warnings`."""
    return job.allow_failure and job.status is Status.FAILED


# -- The per-ref samplers: from the ref's newest run (GCPE's "most recent pipeline"), that run's
# jobs and the ref's count of runs that ended.


def _labels(view: RefView) -> dict[str, str]:
    return view.derived("gcpe_labels", _gcpe_labels)


def _jobs(view: RefView) -> list[tuple[Job, dict[str, str]]]:
    return view.derived("gcpe_job_labels", _gcpe_job_labels)


def _pipeline_duration(view: RefView, family: Family) -> None:
    # GCPE reads GitLab's null duration (a pipeline not finished) as 0.
    sample(family, _labels(view), view.state.last_run.duration_seconds or 0.0)


def _pipeline_id(view: RefView, family: Family) -> None:
    pipeline_id = _numeric_id(view.state.last_run.run_id)
    if pipeline_id is not None:
        sample(family, _labels(view), pipeline_id)


def _pipeline_queued(view: RefView, family: Family) -> None:
    sample(family, _labels(view), view.state.last_run.queued_seconds or 0.0)


def _pipeline_status(view: RefView, family: Family) -> None:
    newest = view.state.last_run
    word = _gitlab_word(newest.provider_status, newest.status)
    # GCPE reads GitLab's detailed_status group, `success_with_warnings` for a pipeline that
    # passed with failed allow_failure jobs; ciwatch sees those jobs.
    if word == "success" and any(_warns(job) for job in view.jobs):
        word = "success_with_warnings"
    _gcpe_status(family, _labels(view), word, view.options.gcpe_sparse)


def _pipeline_timestamp(view: RefView, family: Family) -> None:
    sample(family, _labels(view), view.state.last_run.updated_at.timestamp())


def _job_duration(view: RefView, family: Family) -> None:
    for job, labels in _jobs(view):
        sample(family, labels, job.duration_seconds or 0.0)


def _job_id(view: RefView, family: Family) -> None:
    for job, labels in _jobs(view):
        job_id = _numeric_id(job.job_id)
        if job_id is not None:
            sample(family, labels, job_id)


def _job_queued(view: RefView, family: Family) -> None:
    for job, labels in _jobs(view):
        sample(family, labels, job.queued_seconds or 0.0)


def _job_status(view: RefView, family: Family) -> None:
    sparse = view.options.gcpe_sparse
    for job, labels in _jobs(view):
        word = (
            "success_with_warnings"
            if _warns(job)
            else _gitlab_word(job.provider_status, job.status)
        )
        _gcpe_status(family, labels, word, sparse)


def _job_timestamp(view: RefView, family: Family) -> None:
    for job, labels in _jobs(view):
        if job.created_at is not None:
            sample(family, labels, job.created_at.timestamp())


def _run_count(view: RefView, family: Family) -> None:
    ended = view.runs_ended
    if ended is not None:
        sample(family, _labels(view), float(ended))


STATE, JOBS, OPTIONS = Input.STATE, Input.JOBS, Input.OPTIONS

GCPE_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "gitlab_ci_pipeline_duration_seconds",
        "gauge",
        "Duration in seconds of the most recent pipeline",
        GCPE_LABELS,
        (STATE,),
        _pipeline_duration,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_id",
        "gauge",
        "ID of the most recent pipeline",
        GCPE_LABELS,
        (STATE,),
        _pipeline_id,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_queued_duration_seconds",
        "gauge",
        "Duration in seconds the most recent pipeline has been queued before starting",
        GCPE_LABELS,
        (STATE,),
        _pipeline_queued,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_status",
        "gauge",
        "Status of the most recent pipeline",
        (*GCPE_LABELS, "status"),
        (STATE, JOBS, OPTIONS),
        _pipeline_status,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_timestamp",
        "gauge",
        "Timestamp of the last update of the most recent pipeline",
        GCPE_LABELS,
        (STATE,),
        _pipeline_timestamp,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_job_duration_seconds",
        "gauge",
        "Duration in seconds of the most recent job",
        GCPE_JOB_LABELS,
        (STATE, JOBS),
        _job_duration,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_job_id",
        "gauge",
        "ID of the most recent job",
        GCPE_JOB_LABELS,
        (STATE, JOBS),
        _job_id,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_job_queued_duration_seconds",
        "gauge",
        "Duration in seconds the most recent job has been queued before starting",
        GCPE_JOB_LABELS,
        (STATE, JOBS),
        _job_queued,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_job_status",
        "gauge",
        "Status of the most recent job",
        (*GCPE_JOB_LABELS, "status"),
        (STATE, JOBS, OPTIONS),
        _job_status,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_job_timestamp",
        "gauge",
        "Creation date timestamp of the most recent job",
        GCPE_JOB_LABELS,
        (STATE, JOBS),
        _job_timestamp,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_run_count",
        "counter",
        "Number of executions of a pipeline",
        GCPE_LABELS,
        (STATE, Input.RUNS_ENDED),
        _run_count,
    ),
    MetricSpec("gcpe_gitlab_api_requests_count", "gauge", "GitLab API requests count", ()),
    MetricSpec(
        "gcpe_gitlab_api_requests_remaining",
        "gauge",
        "GitLab API requests remaining in the api limit",
        (),
    ),
    MetricSpec(
        "gcpe_gitlab_api_requests_limit",
        "gauge",
        "GitLab API requests available in the api limit",
        (),
    ),
    MetricSpec(
        "gcpe_metrics_count", "gauge", "Number of GitLab pipelines metrics being exported", ()
    ),
    MetricSpec("gcpe_projects_count", "gauge", "Number of GitLab projects being exported", ()),
    MetricSpec("gcpe_refs_count", "gauge", "Number of GitLab refs being exported", ()),
)
GCPE_METRIC_NAMES = frozenset(spec.name for spec in GCPE_METRICS)
GCPE_BARE_COUNTERS = frozenset(spec.name for spec in GCPE_METRICS if spec.type == "counter")
# Derived: the families with one block per GitLab ref (cached by MetricsRenderer).
GCPE_REF_SPECS = tuple(spec for spec in GCPE_METRICS if spec.per_ref is not None)
GCPE_REF_FAMILIES = tuple(spec.name for spec in GCPE_REF_SPECS)
# What gcpe_metrics_count counts: GCPE's metrics store holds its gitlab_ci_* samples.
GCPE_EXPORTED = tuple(spec.name for spec in GCPE_METRICS if spec.name.startswith("gitlab_ci_"))

# GCPE's metrics that ciwatch does not expose, and why (docs/migrating-from-gcpe.md lists them).
GCPE_NOT_PROVIDED: Mapping[str, str] = {
    "gitlab_ci_pipeline_coverage": "ciwatch does not read the pipelines' coverage",
    "gitlab_ci_pipeline_job_artifact_size_bytes": "ciwatch does not read job artifacts",
    "gitlab_ci_pipeline_job_run_count": "ciwatch keeps only the jobs of a ref's newest runs"
    " in its snapshot, not a count of a job's executions across pipelines",
    "gitlab_ci_environment_behind_commits_count": "ciwatch does not read environments",
    "gitlab_ci_environment_behind_duration_seconds": "ciwatch does not read environments",
    "gitlab_ci_environment_deployment_count": "ciwatch does not read deployments",
    "gitlab_ci_environment_deployment_duration_seconds": "ciwatch does not read deployments",
    "gitlab_ci_environment_deployment_job_id": "ciwatch does not read deployments",
    "gitlab_ci_environment_deployment_status": "ciwatch does not read deployments",
    "gitlab_ci_environment_deployment_timestamp": "ciwatch does not read deployments",
    "gitlab_ci_environment_information": "ciwatch does not read environments",
    "gitlab_ci_pipeline_test_report_total_time": "ciwatch does not read test reports",
    "gitlab_ci_pipeline_test_report_total_count": "ciwatch does not read test reports",
    "gitlab_ci_pipeline_test_report_success_count": "ciwatch does not read test reports",
    "gitlab_ci_pipeline_test_report_failed_count": "ciwatch does not read test reports",
    "gitlab_ci_pipeline_test_report_skipped_count": "ciwatch does not read test reports",
    "gitlab_ci_pipeline_test_report_error_count": "ciwatch does not read test reports",
    "gitlab_ci_pipeline_test_suite_total_time": "ciwatch does not read test reports",
    "gitlab_ci_pipeline_test_suite_total_count": "ciwatch does not read test reports",
    "gitlab_ci_pipeline_test_suite_success_count": "ciwatch does not read test reports",
    "gitlab_ci_pipeline_test_suite_failed_count": "ciwatch does not read test reports",
    "gitlab_ci_pipeline_test_suite_skipped_count": "ciwatch does not read test reports",
    "gitlab_ci_pipeline_test_suite_error_count": "ciwatch does not read test reports",
    "gitlab_ci_pipeline_test_case_execution_time": "ciwatch does not read test reports",
    "gitlab_ci_pipeline_test_case_status": "ciwatch does not read test reports",
    "gcpe_currently_queued_tasks_count": "GCPE's task queue; ciwatch schedules polls per target"
    " instead",
    "gcpe_executed_tasks_count": "GCPE's task queue; ciwatch counts polls (ciwatch_polls_total)",
    "gcpe_environments_count": "ciwatch does not read environments",
}


def add_gcpe_self(
    families: Families,
    collection: CollectionMetrics,
    gitlab_sources: Collection[str],
    snap: Snapshot | None,
    owners: frozenset[RefKey],
    exported: int,
) -> None:
    """GCPE's own gcpe_* gauges that ciwatch has figures for, over its GitLab sources."""
    gitlab = set(gitlab_sources)
    projects: set[tuple[str, str]] = set()
    if snap is not None:
        for state in snap.refs:
            if state.provider == GITLAB:
                gitlab.add(state.source)
                projects.add((state.source, state.project))
        for target in snap.targets:
            if target.source in gitlab and not target.is_discovery:
                projects.add((target.source, target.project))
    requests = sum(
        n for (source, _), n in dict(collection.api_requests).items() if source in gitlab
    )
    add(families, "gcpe_gitlab_api_requests_count", (), requests)
    # Summed over the GitLab sources: with one source (GCPE watches one GitLab), its own.
    remaining = dict(collection.rate_limit_remaining)
    limit = dict(collection.rate_limit_limit)
    if gitlab & remaining.keys():
        left = sum(n for source, n in remaining.items() if source in gitlab)
        add(families, "gcpe_gitlab_api_requests_remaining", (), left)
    if gitlab & limit.keys():
        size = sum(n for source, n in limit.items() if source in gitlab)
        add(families, "gcpe_gitlab_api_requests_limit", (), size)
    add(families, "gcpe_metrics_count", (), exported)
    add(families, "gcpe_projects_count", (), len(projects))
    add(families, "gcpe_refs_count", (), len(owners))

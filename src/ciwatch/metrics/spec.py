"""What `/metrics` exposes: one `MetricSpec` per family (docs/metrics.md lists them all).

A spec is a family's name, type, help and labels. A per-ref family (one block of samples per
project/ref) also carries its sampler, `per_ref`, and the `inputs` the sampler reads: which parts
of a ref's data (`Input`). The sampler sees those through a `RefView` holding the declared inputs
only, and `MetricsRenderer` keeps a ref's rendered block while the values of its families'
inputs are unchanged, so the render cache follows the specs: adding a per-ref metric is one
entry in `METRICS` (and its sampler beside it), with nothing else to extend.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import NamedTuple, TypeVar, cast

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.samples import Sample

from ciwatch.domain import Job, RefKey, RefState, Run, Status
from ciwatch.metrics.snapshot import Snapshot

T = TypeVar("T")
Family = CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
Families = dict[str, Family]

REF_LABELS = ("source", "provider", "project", "ref")
JOB_LABELS = (*REF_LABELS, "job", "stage")
# Bounded: no ref (branches come and go), no stage, no SHA.
FLAKY_LABELS = ("source", "provider", "project", "job")
PROJECT_LABELS = ("source", "provider", "project")


class Input(enum.Enum):
    """A part of a ref's data that a per-ref family may read (`MetricSpec.inputs`).

    `READERS` gives each one's value for a ref; the renderer's cache key of a ref's block is the
    values of the inputs its families declare, in this order.
    """

    # The RefState: its colour and red period, and its newest run (status, times, tests).
    STATE = "state"
    # The newest finished run with a known duration (`Snapshot.finished`), None if none.
    FINISHED = "finished"
    # The newest success/failed run (`Snapshot.decisive_run`), None if none.
    DECISIVE = "decisive"
    # The jobs of the newest run (`Snapshot.jobs`).
    JOBS = "jobs"
    # The ref's runs that ended, summed over the statuses of `ci_pipeline_runs_total`'s
    # monotonic counts; None until the first count.
    RUNS_ENDED = "runs_ended"
    # The collector's options that change samples (`RenderOptions`).
    OPTIONS = "options"


@dataclass(frozen=True)
class RenderOptions:
    """The collector's settings a per-ref sampler may read (`Input.OPTIONS`)."""

    # metrics.gcpe_sparse_status_metrics: GCPE's *_status families keep only the current status.
    gcpe_sparse: bool = True


class UndeclaredInput(LookupError):
    """A sampler read an input its spec does not declare: its value would go stale."""


class RefContext:
    """What the readers need besides the ref: the snapshot, the options, and what is derived from
    the whole snapshot once (each ref's count of runs that ended)."""

    def __init__(self, snap: Snapshot, options: RenderOptions) -> None:
        self.snap = snap
        self.options = options

    @cached_property
    def ended(self) -> dict[RefKey, int] | None:
        return runs_ended(self.snap)


def runs_ended(snap: Snapshot) -> dict[RefKey, int] | None:
    """Per ref, its runs that ended (the monotonic counts of ci_pipeline_runs_total, summed over
    the statuses). None until the first count, like that family."""
    if snap.counts is None:
        return None
    ended: dict[RefKey, int] = {}
    for key, n in snap.counts.items():
        ref = RefKey(key.source, key.project, key.ref)
        ended[ref] = ended.get(ref, 0) + n
    return ended


def _runs_ended(ctx: RefContext, state: RefState) -> int | None:
    ended = ctx.ended
    return None if ended is None else ended.get(state.key, 0)


# The key builder: each input's value for one ref. Values compare by equality (frozen model
# dataclasses and tuples of them), so a changed input gives a different key.
READERS: Mapping[Input, Callable[[RefContext, RefState], object]] = {
    Input.STATE: lambda ctx, state: state,
    Input.FINISHED: lambda ctx, state: ctx.snap.finished.get(state.key),
    Input.DECISIVE: lambda ctx, state: ctx.snap.decisive_run(state),
    Input.JOBS: lambda ctx, state: ctx.snap.jobs.get(state.last_run.key, ()),
    Input.RUNS_ENDED: _runs_ended,
    Input.OPTIONS: lambda ctx, state: ctx.options,
}


def inputs_of(specs: Iterable[MetricSpec]) -> tuple[Input, ...]:
    """The inputs the per-ref families of `specs` declare, in `Input` order."""
    declared = {which for spec in specs for which in spec.inputs}
    return tuple(which for which in Input if which in declared)


def read_inputs(inputs: Sequence[Input], ctx: RefContext, state: RefState) -> dict[Input, object]:
    """The values of `inputs` for the ref `state`: the render cache's key, and what its
    samplers may read."""
    return {which: READERS[which](ctx, state) for which in inputs}


class RefView:
    """One ref's data as its samplers see it: only the inputs that were read for its key (an
    undeclared one raises `UndeclaredInput`), and values derived from them, computed once."""

    def __init__(self, values: Mapping[Input, object]) -> None:
        self._values = values
        self._derived: dict[str, object] = {}

    def _get(self, which: Input) -> object:
        try:
            return self._values[which]
        except KeyError:
            raise UndeclaredInput(f"{which.name} is not a declared input") from None

    @property
    def state(self) -> RefState:
        return cast(RefState, self._get(Input.STATE))

    @property
    def finished(self) -> Run | None:
        return cast("Run | None", self._get(Input.FINISHED))

    @property
    def decisive(self) -> Run | None:
        return cast("Run | None", self._get(Input.DECISIVE))

    @property
    def jobs(self) -> tuple[Job, ...]:
        """The newest run's jobs, one per (name, stage): the latest retry of each."""
        return self.derived("jobs", lambda view: tuple(one_per_name(view._raw_jobs)))

    @property
    def _raw_jobs(self) -> tuple[Job, ...]:
        return cast("tuple[Job, ...]", self._get(Input.JOBS))

    @property
    def runs_ended(self) -> int | None:
        return cast("int | None", self._get(Input.RUNS_ENDED))

    @property
    def options(self) -> RenderOptions:
        return cast(RenderOptions, self._get(Input.OPTIONS))

    @property
    def labels(self) -> dict[str, str]:
        """The ref's labels (`REF_LABELS`)."""
        return self.derived("labels", _ref_labels)

    def derived(self, name: str, build: Callable[[RefView], T]) -> T:
        """`build(self)`, computed once per view (labels shared by several families)."""
        if name not in self._derived:
            self._derived[name] = build(self)
        return cast(T, self._derived[name])


RefSampler = Callable[[RefView, Family], None]


class MetricSpec(NamedTuple):
    """One exposed metric family: its full name (counters end in `_total`), type, help, labels;
    for a per-ref family, its sampler and the inputs the sampler reads."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...]
    inputs: tuple[Input, ...] = ()
    per_ref: RefSampler | None = None


def families(specs: Iterable[MetricSpec]) -> Families:
    """An empty family per spec, by name."""
    made: Families = {}
    for spec in specs:
        family: Family
        if spec.type == "counter":
            family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        elif spec.type == "histogram":
            family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
        else:
            family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
        made[spec.name] = family
    return made


def add(families: Families, name: str, labels: Iterable[str], value: float | datetime) -> None:
    number = value.timestamp() if isinstance(value, datetime) else float(value)
    family = families[name]
    assert not isinstance(family, HistogramMetricFamily)
    family.add_metric(list(labels), number)


def sample(family: Family, labels: dict[str, str], value: float) -> None:
    # add_metric() zips names and values for every sample; the ref labels are built once.
    family.samples.append(Sample(family.name, labels, value, None, None))


def add_ref(families: Families, specs: Iterable[MetricSpec], view: RefView) -> None:
    """The samples of one ref for each per-ref family of `specs`."""
    for spec in specs:
        if spec.per_ref is not None:
            spec.per_ref(view, families[spec.name])


def one_per_name(jobs: Iterable[Job]) -> list[Job]:
    """One job per (name, stage): the last created, i.e. the latest retry of a job."""
    latest: dict[tuple[str, str], Job] = {}
    for job in jobs:
        latest[(job.name, job.stage or "")] = job
    return list(latest.values())


def test_counts(run: Run) -> dict[str, int]:
    """A run's test cases by status; passed is what the total leaves."""
    failed, skipped, errored = run.tests_failed or 0, run.tests_skipped or 0, run.tests_errored or 0
    passed = max((run.tests_total or 0) - failed - skipped - errored, 0)
    return {"passed": passed, "failed": failed, "skipped": skipped, "errored": errored}


# -- The per-ref samplers ----------------------------------------------------------------------


def _ref_labels(view: RefView) -> dict[str, str]:
    state = view.state
    return {
        "source": state.source,
        "provider": state.provider,
        "project": state.project,
        "ref": state.ref,
    }


def _job_labels(view: RefView) -> list[tuple[Job, dict[str, str]]]:
    ref = view.labels
    return [(job, {**ref, "job": job.name, "stage": job.stage or ""}) for job in view.jobs]


def _pipeline_status(view: RefView, family: Family) -> None:
    ref, newest = view.labels, view.state.last_run
    for status in Status:
        sample(family, {**ref, "status": status.value}, 1.0 if newest.status is status else 0.0)


def _ref_failing(view: RefView, family: Family) -> None:
    # The ref's colour, as the dashboard, the API and /cc.xml show it (RefState.failing).
    sample(family, view.labels, 1.0 if view.state.failing else 0.0)


def _failing_since(view: RefView, family: Family) -> None:
    since = view.state.failing_since
    if since is not None:
        sample(family, view.labels, since.timestamp())


def _last_duration(view: RefView, family: Family) -> None:
    finished = view.finished
    if finished is not None and finished.duration_seconds is not None:
        sample(family, view.labels, float(finished.duration_seconds))


def _last_queued(view: RefView, family: Family) -> None:
    queued = view.state.last_run.queued_seconds
    if queued is not None:
        sample(family, view.labels, float(queued))


def _last_run_timestamp(view: RefView, family: Family) -> None:
    newest = view.state.last_run
    created = newest.created_at or newest.started_at or newest.updated_at
    sample(family, view.labels, created.timestamp())


def _job_status(view: RefView, family: Family) -> None:
    for job, labels in view.derived("job_labels", _job_labels):
        for status in Status:
            value = 1.0 if job.status is status else 0.0
            sample(family, {**labels, "status": status.value}, value)


def _job_duration(view: RefView, family: Family) -> None:
    for job, labels in view.derived("job_labels", _job_labels):
        if job.duration_seconds is not None:
            sample(family, labels, job.duration_seconds)


def _test_cases(view: RefView, family: Family) -> None:
    newest = view.state.last_run
    reported = newest if newest.tests_total is not None else view.finished
    if reported is not None and reported.tests_total is not None:
        ref = view.labels
        for word, count in test_counts(reported).items():
            sample(family, {**ref, "status": word}, float(count))


STATE, FINISHED, JOBS = Input.STATE, Input.FINISHED, Input.JOBS

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "ci_pipeline_status",
        "gauge",
        "1 for the status of the newest run of the project/ref, 0 for every other status.",
        (*REF_LABELS, "status"),
        (STATE,),
        _pipeline_status,
    ),
    MetricSpec(
        "ci_ref_failing",
        "gauge",
        "1 while the project/ref is red (its newest success/failed run failed; a newer queued or"
        " running run keeps it red), 0 otherwise: the colour of the dashboard and /cc.xml.",
        REF_LABELS,
        (STATE,),
        _ref_failing,
    ),
    MetricSpec(
        "ci_ref_failing_since_timestamp_seconds",
        "gauge",
        "When the current red period of the project/ref began (Unix seconds); failing refs only.",
        REF_LABELS,
        (STATE,),
        _failing_since,
    ),
    MetricSpec(
        "ci_pipeline_last_duration_seconds",
        "gauge",
        "Duration of the newest finished run (with a known duration) of the project/ref.",
        REF_LABELS,
        (STATE, FINISHED),
        _last_duration,
    ),
    MetricSpec(
        "ci_pipeline_last_queued_seconds",
        "gauge",
        "Queue time of the newest run of the project/ref.",
        REF_LABELS,
        (STATE,),
        _last_queued,
    ),
    MetricSpec(
        "ci_pipeline_last_run_timestamp_seconds",
        "gauge",
        "Creation time (Unix seconds) of the newest run of the project/ref.",
        REF_LABELS,
        (STATE,),
        _last_run_timestamp,
    ),
    MetricSpec(
        "ci_pipeline_runs_total",
        "counter",
        "Runs that ended, by final status (success, failed, canceled, skipped).",
        (*REF_LABELS, "status"),
    ),
    MetricSpec(
        "ci_job_status",
        "gauge",
        "1 for the status of each job of the newest run of the project/ref, 0 for every other.",
        (*JOB_LABELS, "status"),
        (STATE, JOBS),
        _job_status,
    ),
    MetricSpec(
        "ci_job_last_duration_seconds",
        "gauge",
        "Duration of each job of the newest run of the project/ref.",
        JOB_LABELS,
        (STATE, JOBS),
        _job_duration,
    ),
    MetricSpec(
        "ci_pipeline_test_cases",
        "gauge",
        "Test cases of the newest run of the project/ref with a test report (tests: true), by"
        " status (passed, failed, skipped, errored).",
        (*REF_LABELS, "status"),
        (STATE, FINISHED),
        _test_cases,
    ),
    MetricSpec(
        "ci_job_flaky_runs_total",
        "counter",
        "Failed attempts of the job on a commit where a later attempt passed (a retry, a re-run"
        " attempt, a rebuild), over the runs created in flaky.window; never decreasing.",
        FLAKY_LABELS,
    ),
    MetricSpec(
        "ci_ref_recovery_seconds",
        "histogram",
        "Completed red periods of the project's refs (failed run's finish to the next success's"
        " finish) in recovery.window, by length; never decreasing.",
        PROJECT_LABELS,
    ),
    MetricSpec(
        "ciwatch_api_requests_total",
        "counter",
        "Requests to the CI servers' APIs, by HTTP code (304 included; timeout, error).",
        ("source", "code"),
    ),
    MetricSpec(
        "ciwatch_rate_limit_remaining",
        "gauge",
        "Requests left in the source's rate-limit window, from the provider's headers.",
        ("source",),
    ),
    MetricSpec(
        "ciwatch_rate_limit_limit",
        "gauge",
        "Size of the source's rate-limit window, from the provider's headers.",
        ("source",),
    ),
    MetricSpec(
        "ciwatch_polls_total",
        "counter",
        "Successful polls of the source's targets by this process.",
        ("source",),
    ),
    MetricSpec(
        "ciwatch_poll_errors_total",
        "counter",
        "Failed polls by source and kind of error.",
        ("source", "kind"),
    ),
    MetricSpec(
        "ciwatch_last_successful_poll_timestamp_seconds",
        "gauge",
        "Time (Unix seconds) of the last successful poll of any target of the source.",
        ("source",),
    ),
    MetricSpec(
        "ciwatch_target_up",
        "gauge",
        "1 when the target's last poll succeeded, 0 when it is marked unhealthy.",
        ("source", "project"),
    ),
    MetricSpec(
        "ciwatch_source_up",
        "gauge",
        "0 while the source cannot discover its targets or none of its targets can be polled.",
        ("source",),
    ),
    MetricSpec(
        "ciwatch_source_paused_until_timestamp_seconds",
        "gauge",
        "When the source's last rate-limit pause ends or ended (Unix seconds; 0 if it never"
        " paused): while it is in the future no target of the source is polled.",
        ("source",),
    ),
    MetricSpec(
        "ciwatch_task_errors_total",
        "counter",
        "Unexpected exceptions in background work (one item, or a loop that died), by task.",
        ("task",),
    ),
    MetricSpec(
        "ciwatch_task_up",
        "gauge",
        "1 while the supervised background loop is running, 0 while it is down (restarting).",
        ("task",),
    ),
    MetricSpec(
        "ciwatch_webhooks_total",
        "counter",
        "Webhooks and reports by source and result (accepted, rejected_signature, ...).",
        ("source", "result"),
    ),
    MetricSpec(
        "ciwatch_notifications_total",
        "counter",
        "Notifications by channel and result (sent, failed, retried).",
        ("channel", "result"),
    ),
    MetricSpec(
        "ciwatch_store_up",
        "gauge",
        "1 when the last metrics refresh read the store and the last write probe committed.",
        (),
    ),
)
METRIC_NAMES = frozenset(spec.name for spec in METRICS)
# Derived: the families written one block per project/ref, in exposition order.
REF_FAMILIES = tuple(spec.name for spec in METRICS if spec.per_ref is not None)

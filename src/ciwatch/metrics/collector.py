"""The Prometheus collector of `/metrics`: every family of its specs, from the cached snapshot
and the in-memory counters (docs/architecture.md#metrics).

Nothing here is module-level state: `create_app` builds a `SnapshotCache`, a `CiwatchCollector`
and a private `CollectorRegistry` per app. The per-ref families are written by their specs'
samplers (`spec.py`); the other families below, from the snapshot (runs that ended, targets,
flaky jobs and red periods) or from the runtime's `CollectionMetrics` (API requests, rate
limits, polls, webhooks), read in memory at scrape time. `ciwatch_notifications_total` reads
its `notifications` counter (by channel and result) once the delivery workers add one; until
then the family is declared with no samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from ciwatch.domain import RefKey
from ciwatch.health import StoreHealth
from ciwatch.metrics.gcpe import GCPE_EXPORTED, GCPE_METRICS, add_gcpe_self, gcpe_owners
from ciwatch.metrics.snapshot import RECOVERY_BUCKETS, Snapshot, SnapshotCache, source_health
from ciwatch.metrics.spec import (
    METRICS,
    Families,
    MetricSpec,
    RefContext,
    RefView,
    RenderOptions,
    add,
    add_ref,
    families,
    inputs_of,
    read_inputs,
)
from ciwatch.selfmetrics import CollectionMetrics


class CiwatchCollector(Collector):
    """Yields every family of `specs` (`METRICS`) from the cached snapshot and the in-memory
    counters, and those of `GCPE_METRICS` when `gcpe` is on.

    `collect()` does no I/O: call `SnapshotCache.get()` before rendering.
    """

    def __init__(
        self,
        cache: SnapshotCache,
        collection: CollectionMetrics,
        *,
        store_health: StoreHealth | None = None,
        gcpe: bool = False,
        gcpe_sparse: bool = True,
        gitlab_sources: Iterable[str] = (),
        specs: Sequence[MetricSpec] = METRICS,
    ) -> None:
        self.cache = cache
        self.collection = collection
        self.store_health = store_health or StoreHealth()
        # The GCPE-compatible family (`metrics.gcpe_compatible`): GCPE_METRICS, GitLab refs only.
        self.gcpe = gcpe
        self.gcpe_sparse = gcpe_sparse
        # The configured GitLab sources, for the gcpe_* totals of a source with no runs yet.
        self.gitlab_sources = frozenset(gitlab_sources)
        # The families, in exposition order; those with a sampler are written per ref.
        self.specs = tuple(specs)
        self.ref_specs = tuple(spec for spec in self.specs if spec.per_ref is not None)

    @property
    def store_up(self) -> bool:
        return self.cache.store_up and self.store_health.writable

    @property
    def options(self) -> RenderOptions:
        return RenderOptions(gcpe_sparse=self.gcpe_sparse)

    def describe(self) -> Iterable[Metric]:
        described = list(families(self.specs).values())
        if self.gcpe:
            described.extend(families(GCPE_METRICS).values())
        return described

    def collect(self) -> Iterable[Metric]:
        own = families(self.specs)
        snap = self.cache.current
        if snap is not None:
            ctx = RefContext(snap, self.options)
            inputs = inputs_of(self.ref_specs)
            for state in snap.refs:
                add_ref(own, self.ref_specs, RefView(read_inputs(inputs, ctx, state)))
            self.add_snapshot(own, snap)
        self.add_self(own, snap)
        collected: list[Metric] = list(own.values())
        if self.gcpe:
            gcpe = families(GCPE_METRICS)
            owners = gcpe_owners(snap) if snap is not None else frozenset()
            if snap is not None:
                ctx = RefContext(snap, self.options)
                inputs = inputs_of(GCPE_METRICS)
                for state in snap.refs:
                    if state.key in owners:
                        add_ref(gcpe, GCPE_METRICS, RefView(read_inputs(inputs, ctx, state)))
            exported = sum(len(gcpe[name].samples) for name in GCPE_EXPORTED)
            self.add_gcpe_self(gcpe, snap, owners, exported)
            collected.extend(gcpe.values())
        return collected

    def add_snapshot(self, families: Families, snap: Snapshot) -> None:
        """The families from the snapshot that are not per ref."""
        _add_counts(families, snap)
        _add_targets(families, snap)
        _add_reliability(families, snap)

    def add_self(self, families: Families, snap: Snapshot | None) -> None:
        """The families from the in-memory counters (and the store's health)."""
        _add_collection(families, self.collection, snap)
        add(families, "ciwatch_store_up", (), 1.0 if self.store_up else 0.0)

    def add_gcpe_self(
        self, families: Families, snap: Snapshot | None, owners: frozenset[RefKey], exported: int
    ) -> None:
        add_gcpe_self(families, self.collection, self.gitlab_sources, snap, owners, exported)


def build_registry(collector: CiwatchCollector) -> CollectorRegistry:
    """A private registry holding only `collector` (no process or platform collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def _add_collection(
    families: Families, collection: CollectionMetrics, snap: Snapshot | None
) -> None:
    # Each dict(...) copy is one C call under the GIL, so this may run in a worker thread
    # while the event loop keeps counting.
    for (source, code), n in sorted(dict(collection.api_requests).items()):
        add(families, "ciwatch_api_requests_total", (source, code), n)
    for source, n in sorted(dict(collection.rate_limit_remaining).items()):
        add(families, "ciwatch_rate_limit_remaining", (source,), n)
    for source, n in sorted(dict(collection.rate_limit_limit).items()):
        add(families, "ciwatch_rate_limit_limit", (source,), n)
    for source, n in sorted(dict(collection.polls).items()):
        add(families, "ciwatch_polls_total", (source,), n)
    for (source, kind), n in sorted(dict(collection.poll_errors).items()):
        add(families, "ciwatch_poll_errors_total", (source, kind), n)
    # This process's polls, and those any replica recorded in the store's target states; 0
    # for a source known to the store that never polled a target successfully (so that a
    # staleness rule fires for it).
    last: dict[str, float] = {
        source: when.timestamp() for source, when in dict(collection.last_successful_poll).items()
    }
    for target in snap.targets if snap is not None else ():
        last.setdefault(target.source, 0.0)
        when = target.last_success_at
        if when is not None and not target.is_discovery:
            last[target.source] = max(last[target.source], when.timestamp())
    for source, seconds in sorted(last.items()):
        add(families, "ciwatch_last_successful_poll_timestamp_seconds", (source,), seconds)
    for task, n in sorted(dict(collection.task_errors).items()):
        add(families, "ciwatch_task_errors_total", (task,), n)
    for task, up in sorted(dict(collection.task_up).items()):
        add(families, "ciwatch_task_up", (task,), 1.0 if up else 0.0)
    for (source, result), n in sorted(dict(collection.webhooks).items()):
        add(families, "ciwatch_webhooks_total", (source, result), n)
    notifications: Mapping[tuple[str, str], int] = getattr(collection, "notifications", {})
    for (channel, result), n in sorted(dict(notifications).items()):
        add(families, "ciwatch_notifications_total", (channel, result), n)


def _add_counts(families: Families, snap: Snapshot) -> None:
    if snap.counts is not None:
        for key, n in sorted(snap.counts.items()):
            add(families, "ci_pipeline_runs_total", key, n)


def _add_reliability(families: Families, snap: Snapshot) -> None:
    """`ci_job_flaky_runs_total` and `ci_ref_recovery_seconds`, from the slow counts."""
    for flaky, n in sorted((snap.flaky or {}).items()):
        add(families, "ci_job_flaky_runs_total", flaky, n)
    histogram = families["ci_ref_recovery_seconds"]
    assert isinstance(histogram, HistogramMetricFamily)
    bounds = [floatToGoString(bound) for bound in RECOVERY_BUCKETS]  # type: ignore[no-untyped-call]
    for key, found in sorted((snap.recovery or {}).items()):
        buckets = list(zip([*bounds, "+Inf"], [float(n) for n in found.buckets], strict=True))
        histogram.add_metric(list(key), buckets, found.total)


def _add_targets(families: Families, snap: Snapshot) -> None:
    for target in snap.targets:
        if not target.is_discovery:
            up = 1.0 if target.healthy else 0.0
            add(families, "ciwatch_target_up", (target.source, target.project), up)
    for source, up in sorted(source_health(snap.targets).items()):
        add(families, "ciwatch_source_up", (source,), 1.0 if up else 0.0)
    for target in snap.targets:
        if target.is_discovery:
            until = target.paused_until
            paused = until.timestamp() if until is not None else 0.0
            add(families, "ciwatch_source_paused_until_timestamp_seconds", (target.source,), paused)

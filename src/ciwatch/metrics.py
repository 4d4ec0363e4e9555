"""`/metrics`: a custom Prometheus collector over a cached snapshot of the store (DESIGN §8).

Nothing here is module-level state: `create_app` builds a `SnapshotCache`, a `CiwatchCollector`
and a private `CollectorRegistry` per app. A scrape reads the snapshot in memory; the snapshot is
refreshed at most every `max_age` seconds (5 s), or sooner after `invalidate()`, by cheap
queries: the ref states, the decisive run of each ref, the jobs of the refs' newest runs (only
those that changed or are still active), the newest finished run of refs whose newest run is not
finished, and the target states. The one query that visits every run, the per-status run count
behind `ci_pipeline_runs_total`, runs in the background at most every `slow_max_age` seconds
(60 s); scrapes never wait for it, except the very first one.

The self-metrics come from the runtime's `CollectionMetrics` (API requests, rate limits, polls,
webhooks), read in memory at scrape time. `ciwatch_notifications_total` reads its
`notifications` counter (by channel and result) once the delivery workers add one; until then the
family is declared with no samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, NamedTuple, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.domain import Job, RefKey, RefState, Run, RunKey, Status, TargetState
from ciwatch.errors import StoreError
from ciwatch.health import StoreHealth
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import reliability
from ciwatch.store import snapshot as queries
from ciwatch.store.base import Store
from ciwatch.store.snapshot import CountKey, Reader

log = logging.getLogger(__name__)
K = TypeVar("K")
Families = dict[str, CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily]

# The classic text format: every name here is a legacy Prometheus name, and Prometheus 2.x
# servers parse it (prometheus_client's default now announces the 1.0.0 text format).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REF_LABELS = ("source", "provider", "project", "ref")
JOB_LABELS = (*REF_LABELS, "job", "stage")
# Bounded: no ref (branches come and go), no stage, no SHA.
FLAKY_LABELS = ("source", "provider", "project", "job")
PROJECT_LABELS = ("source", "provider", "project")
# Bucket bounds (seconds) of ci_ref_recovery_seconds: 5m to a week.
RECOVERY_BUCKETS = (
    300.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    86400.0,
    259200.0,
    604800.0,
)


class MetricSpec(NamedTuple):
    """One exposed metric family: its full name (counters end in `_total`), type, help, labels."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...]


METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "ci_pipeline_status",
        "gauge",
        "1 for the status of the newest run of the project/ref, 0 for every other status.",
        (*REF_LABELS, "status"),
    ),
    MetricSpec(
        "ci_ref_failing",
        "gauge",
        "1 while the project/ref is red (its newest success/failed run failed; a newer queued or"
        " running run keeps it red), 0 otherwise: the colour of the dashboard and /cc.xml.",
        REF_LABELS,
    ),
    MetricSpec(
        "ci_ref_failing_since_timestamp_seconds",
        "gauge",
        "When the current red period of the project/ref began (Unix seconds); failing refs only.",
        REF_LABELS,
    ),
    MetricSpec(
        "ci_pipeline_last_duration_seconds",
        "gauge",
        "Duration of the newest finished run (with a known duration) of the project/ref.",
        REF_LABELS,
    ),
    MetricSpec(
        "ci_pipeline_last_queued_seconds",
        "gauge",
        "Queue time of the newest run of the project/ref.",
        REF_LABELS,
    ),
    MetricSpec(
        "ci_pipeline_last_run_timestamp_seconds",
        "gauge",
        "Creation time (Unix seconds) of the newest run of the project/ref.",
        REF_LABELS,
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
    ),
    MetricSpec(
        "ci_job_last_duration_seconds",
        "gauge",
        "Duration of each job of the newest run of the project/ref.",
        JOB_LABELS,
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


class FlakyKey(NamedTuple):
    """Labels of one `ci_job_flaky_runs_total` series."""

    source: str
    provider: str
    project: str
    job: str


class ProjectKey(NamedTuple):
    """Labels of one `ci_ref_recovery_seconds` series."""

    source: str
    provider: str
    project: str


@dataclass(frozen=True)
class RecoveryHistogram:
    """Cumulative bucket counts (one per `RECOVERY_BUCKETS` bound, then +Inf) and the sum."""

    buckets: tuple[int, ...]
    total: float


def recovery_histograms(
    stats: Mapping[RefKey, reliability.RecoveryStats], providers: Mapping[RefKey, str]
) -> dict[ProjectKey, RecoveryHistogram]:
    """The completed red periods of each project's refs as histograms."""
    lengths: dict[ProjectKey, list[float]] = {}
    for ref, found in stats.items():
        provider = providers.get(ref)
        if provider is None:
            continue
        key = ProjectKey(ref.source, provider, ref.project)
        lengths.setdefault(key, []).extend(found.recoveries)
    result = {}
    for key, values in lengths.items():
        buckets = tuple(sum(1 for v in values if v <= bound) for bound in RECOVERY_BUCKETS)
        result[key] = RecoveryHistogram((*buckets, len(values)), float(sum(values)))
    return result


@dataclass(frozen=True)
class Snapshot:
    """What the store said at `taken_at`, shaped for the collector and `/cc.xml`."""

    taken_at: datetime
    refs: tuple[RefState, ...]
    # The newest success/failed run of each ref, when it is not the newest run itself.
    decisive: Mapping[RefKey, Run]
    # The newest finished run with a duration, per ref (absent when there is none).
    finished: Mapping[RefKey, Run]
    # The jobs of each ref's newest run.
    jobs: Mapping[RunKey, tuple[Job, ...]]
    targets: tuple[TargetState, ...]
    # Runs that ended, by status, made monotonic (see SnapshotCache); None until first counted.
    counts: Mapping[CountKey, int] | None
    # Flaky runs per job and the recovery histogram per project, made monotonic like `counts`.
    flaky: Mapping[FlakyKey, int] | None = None
    recovery: Mapping[ProjectKey, RecoveryHistogram] | None = None

    def decisive_run(self, state: RefState) -> Run | None:
        """The run that set the ref's colour: its newest success/failed run, if any."""
        found = self.decisive.get(state.key)
        if found is not None:
            return found
        return state.last_run if state.last_run.status.decisive else None


def _token(run: Run) -> tuple[str, datetime, Status, int]:
    """Changes whenever the stored run changes."""
    return (run.run_id, run.updated_at, run.status, run.attempt)


def _finished_with_duration(run: Run) -> bool:
    return run.status.terminal and run.duration_seconds is not None


class SnapshotCache:
    """The latest `Snapshot`, refreshed on demand by one task at a time.

    `get()` returns the snapshot, first refreshing it when it is older than `max_age` seconds
    (or was invalidated); it waits for a refresh at most `wait` seconds (`first_wait` while there
    is no snapshot yet) and otherwise answers the previous one. A failed refresh keeps the
    previous snapshot and sets `store_up` to False.
    """

    def __init__(
        self,
        store: Store,
        clock: Callable[[], datetime],
        *,
        max_age: float = 5.0,
        slow_max_age: float = 60.0,
        wait: float = 3.0,
        first_wait: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
        on_error: Callable[[str, BaseException], None] | None = None,
        flaky_window: timedelta = reliability.DEFAULT_WINDOW,
        recovery_window: timedelta = reliability.DEFAULT_WINDOW,
    ) -> None:
        if not isinstance(store, Reader):
            raise TypeError(f"the metrics snapshot needs a store with read(): {store!r}")
        self._store = store
        self._reader: Reader = store
        self._now = clock
        self.max_age = max_age
        self.slow_max_age = slow_max_age
        self.wait = wait
        self.first_wait = first_wait
        self._monotonic = monotonic
        # Told of an unexpected exception (the supervisor's `item_failed`), besides the log.
        self._on_error = on_error
        self.current: Snapshot | None = None
        self.store_up = True
        self._attempted_at: float | None = None
        self._invalid = False
        self._refresh_task: asyncio.Task[None] | None = None
        self._counts_task: asyncio.Task[None] | None = None
        self._counts_at: float | None = None
        self._raw_counts: dict[CountKey, int] = {}
        self._offsets: Counter[CountKey] = Counter()
        self._counts: dict[CountKey, int] | None = None
        self._finished: dict[RefKey, tuple[object, float, Run | None]] = {}
        self._jobs: dict[RunKey, tuple[object, float, tuple[Job, ...]]] = {}
        self.flaky_window = flaky_window
        self.recovery_window = recovery_window
        self._flaky = Monotonic[FlakyKey]()
        self._recovery = Monotonic[tuple[ProjectKey, int]]()
        self._recovery_sums = Monotonic[ProjectKey]()
        self._flaky_counts: dict[FlakyKey, int] | None = None
        self._recovery_counts: dict[ProjectKey, RecoveryHistogram] | None = None

    def invalidate(self) -> None:
        """Make the next `get()` refresh, whatever the snapshot's age."""
        self._invalid = True

    def _fresh(self) -> bool:
        if self._invalid or self._attempted_at is None:
            return False
        return self._monotonic() - self._attempted_at < self.max_age

    async def get(self) -> Snapshot | None:
        """The current snapshot (None while the store has never been read)."""
        if not self._fresh():
            if self._refresh_task is None or self._refresh_task.done():
                self._invalid = False
                self._attempted_at = self._monotonic()
                self._refresh_task = asyncio.create_task(self._refresh(), name="metrics-refresh")
            timeout = self.wait if self.current is not None else self.first_wait
            try:
                await asyncio.wait_for(asyncio.shield(self._refresh_task), timeout)
            except TimeoutError:
                log.warning("metrics: snapshot refresh still running after %.1fs", timeout)
        return self.current

    async def refresh(self) -> Snapshot | None:
        """Refresh now and wait for it, counts included (for tests and the first scrape)."""
        self._counts_at = None
        self.invalidate()
        await self.get()
        if self._counts_task is not None:
            await asyncio.shield(self._counts_task)
        self.invalidate()
        return await self.get()

    async def aclose(self) -> None:
        """Cancel any refresh in flight (on app shutdown)."""
        for task in (self._refresh_task, self._counts_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _refresh(self) -> None:
        try:
            refs = tuple(await self._store.ref_states())
            decisive = await queries.decisive_runs(self._reader)
            finished = await self._newest_finished(refs)
            jobs = await self._newest_jobs(refs)
            targets = tuple(await self._store.target_states())
            counts = await self._run_counts()
        except StoreError as exc:
            if self.store_up:
                log.warning("metrics: cannot refresh the snapshot: %s", exc)
            self.store_up = False
            return
        except Exception as exc:
            self._unexpected("the snapshot refresh", exc)
            self.store_up = False
            return
        self.store_up = True
        self.current = Snapshot(
            taken_at=self._now(),
            refs=refs,
            decisive=decisive,
            finished=finished,
            jobs=jobs,
            targets=targets,
            counts=counts,
            flaky=self._flaky_counts,
            recovery=self._recovery_counts,
        )

    def _unexpected(self, what: str, exc: BaseException) -> None:
        if self._on_error is not None:
            self._on_error(what, exc)
        else:
            log.error("metrics: %s failed", what, exc_info=exc)

    def _stale(self, fetched_at: float) -> bool:
        return self._monotonic() - fetched_at >= self.slow_max_age

    async def _newest_finished(self, refs: tuple[RefState, ...]) -> dict[RefKey, Run]:
        # A ref whose newest run finished is its own answer; the others need an index probe,
        # cached until their newest run changes (or for slow_max_age, as an older run may end).
        found: dict[RefKey, Run] = {}
        wanted: list[RefKey] = []
        cache: dict[RefKey, tuple[object, float, Run | None]] = {}
        for state in refs:
            token = _token(state.last_run)
            if _finished_with_duration(state.last_run):
                found[state.key] = state.last_run
                continue
            cached = self._finished.get(state.key)
            if cached is not None and cached[0] == token and not self._stale(cached[1]):
                cache[state.key] = cached
                if cached[2] is not None:
                    found[state.key] = cached[2]
            else:
                wanted.append(state.key)
        if wanted:
            now = self._monotonic()
            looked_up = await queries.newest_finished_runs(self._reader, wanted)
            tokens = {state.key: _token(state.last_run) for state in refs}
            for key in wanted:
                run = looked_up.get(key)
                cache[key] = (tokens[key], now, run)
                if run is not None:
                    found[key] = run
        self._finished = cache
        return found

    async def _newest_jobs(self, refs: tuple[RefState, ...]) -> dict[RunKey, tuple[Job, ...]]:
        # Jobs of an active or changed run are read on every refresh; those of a finished,
        # unchanged run at most every slow_max_age (a late job webhook may still add to them).
        found: dict[RunKey, tuple[Job, ...]] = {}
        wanted: dict[RunKey, object] = {}
        cache: dict[RunKey, tuple[object, float, tuple[Job, ...]]] = {}
        for state in refs:
            run = state.last_run
            token = _token(run)
            cached = self._jobs.get(run.key)
            if (
                cached is not None
                and cached[0] == token
                and run.status.terminal
                and not self._stale(cached[1])
            ):
                cache[run.key] = cached
                found[run.key] = cached[2]
            else:
                wanted[run.key] = token
        if wanted:
            now = self._monotonic()
            looked_up = await queries.jobs_of_runs(self._reader, list(wanted))
            for key, wanted_token in wanted.items():
                listed = tuple(looked_up.get(key, ()))
                cache[key] = (wanted_token, now, listed)
                found[key] = listed
        self._jobs = cache
        return found

    async def _run_counts(self) -> dict[CountKey, int] | None:
        due = self._counts_at is None or self._stale(self._counts_at)
        if due and (self._counts_task is None or self._counts_task.done()):
            self._counts_task = asyncio.create_task(self._count(), name="metrics-run-counts")
        if self._counts is None and self._counts_task is not None:
            await asyncio.shield(self._counts_task)
        return self._counts

    async def _count(self) -> None:
        # Set before the query, so that a failing count is retried after slow_max_age only.
        self._counts_at = self._monotonic()
        try:
            raw = await queries.run_counts(self._reader)
        except StoreError as exc:
            log.warning("metrics: cannot count runs: %s", exc)
            return
        except Exception as exc:
            self._unexpected("the run count", exc)
            return
        self._counts = self._monotonic_counts(raw)
        try:
            await self._count_reliability()
        except StoreError as exc:
            log.warning("metrics: cannot count flaky jobs and red periods: %s", exc)
        except Exception as exc:
            self._unexpected("the flaky and recovery count", exc)

    async def _count_reliability(self) -> None:
        # Over a window (the two queries read only its runs), so a flaky run or red period
        # leaving it would lower a counter: `Monotonic` keeps each series from going down.
        now = self._now()

        async def work(
            conn: AsyncConnection,
        ) -> tuple[list[reliability.FlakyJob], dict[RefKey, reliability.RecoveryStats]]:
            flaky = await reliability.flaky_jobs(conn, now=now, window=self.flaky_window)
            stats = await reliability.recovery_stats(conn, now=now, window=self.recovery_window)
            return flaky, stats

        flaky, stats = await self._reader.read("flaky and recovery metrics", work)
        raw_flaky = {FlakyKey(f.source, f.provider, f.project, f.job): f.flaky_runs for f in flaky}
        self._flaky_counts = self._flaky.update(raw_flaky)
        current = self.current
        providers = {state.key: state.provider for state in (current.refs if current else ())}
        if not providers:
            providers = {state.key: state.provider for state in await self._store.ref_states()}
        histograms = recovery_histograms(stats, providers)
        raw_buckets = {
            (key, index): count
            for key, histogram in histograms.items()
            for index, count in enumerate(histogram.buckets)
        }
        buckets = self._recovery.update(raw_buckets)
        # Sums in milliseconds: a float sum would drift by rounding against its offsets.
        sums = self._recovery_sums.update(
            {key: round(h.total * 1000) for key, h in histograms.items()}
        )
        width = len(RECOVERY_BUCKETS) + 1
        self._recovery_counts = {
            key: RecoveryHistogram(
                tuple(buckets.get((key, i), 0) for i in range(width)),
                sums.get(key, 0) / 1000,
            )
            for key in sums.keys() | {key for key, _ in buckets}
        }

    def _monotonic_counts(self, raw: dict[CountKey, int]) -> dict[CountKey, int]:
        # A counter must not go down, but stored counts do: `db prune` deletes old runs and a
        # re-run takes a finished run back to queued. Each drop is added to an offset, so within
        # this process the exposed value only grows (a restart is a counter reset, as usual).
        for key, before in self._raw_counts.items():
            now = raw.get(key, 0)
            if now < before:
                self._offsets[key] += before - now
        self._raw_counts = raw
        keys = raw.keys() | self._offsets.keys()
        return {key: raw.get(key, 0) + self._offsets[key] for key in keys}


class Monotonic(Generic[K]):
    """Per key, a stored count made never decreasing within this process: each drop of the
    raw count is added to the key's offset (as `SnapshotCache._monotonic_counts`)."""

    def __init__(self) -> None:
        self._raw: dict[K, int] = {}
        self._offsets: Counter[K] = Counter()

    def update(self, raw: Mapping[K, int]) -> dict[K, int]:
        for key, before in self._raw.items():
            now = raw.get(key, 0)
            if now < before:
                self._offsets[key] += before - now
        self._raw = dict(raw)
        keys = raw.keys() | self._offsets.keys()
        return {key: raw.get(key, 0) + self._offsets[key] for key in keys}


class CiwatchCollector(Collector):
    """Yields every family of `METRICS` from the cached snapshot and the in-memory counters.

    `collect()` does no I/O: call `SnapshotCache.get()` before rendering.
    """

    def __init__(
        self,
        cache: SnapshotCache,
        collection: CollectionMetrics,
        *,
        store_health: StoreHealth | None = None,
    ) -> None:
        self.cache = cache
        self.collection = collection
        self.store_health = store_health or StoreHealth()

    @property
    def store_up(self) -> bool:
        return self.cache.store_up and self.store_health.writable

    def describe(self) -> Iterable[Metric]:
        return list(_families().values())

    def collect(self) -> Iterable[Metric]:
        families = _families()
        snap = self.cache.current
        if snap is not None:
            _add_refs(families, snap)
            _add_targets(families, snap)
            _add_reliability(families, snap)
        self._add_self(families, snap)
        _add(families, "ciwatch_store_up", (), 1.0 if self.store_up else 0.0)
        return list(families.values())

    def _add_self(self, families: Families, snap: Snapshot | None) -> None:
        # Each dict(...) copy is one C call under the GIL, so this may run in a worker thread
        # while the event loop keeps counting.
        collection = self.collection
        for (source, code), n in sorted(dict(collection.api_requests).items()):
            _add(families, "ciwatch_api_requests_total", (source, code), n)
        for source, n in sorted(dict(collection.rate_limit_remaining).items()):
            _add(families, "ciwatch_rate_limit_remaining", (source,), n)
        for source, n in sorted(dict(collection.rate_limit_limit).items()):
            _add(families, "ciwatch_rate_limit_limit", (source,), n)
        for source, n in sorted(dict(collection.polls).items()):
            _add(families, "ciwatch_polls_total", (source,), n)
        for (source, kind), n in sorted(dict(collection.poll_errors).items()):
            _add(families, "ciwatch_poll_errors_total", (source, kind), n)
        # This process's polls, and those any replica recorded in the store's target states; 0
        # for a source known to the store that never polled a target successfully (so that a
        # staleness rule fires for it).
        last: dict[str, float] = {
            source: when.timestamp()
            for source, when in dict(collection.last_successful_poll).items()
        }
        for target in snap.targets if snap is not None else ():
            last.setdefault(target.source, 0.0)
            when = target.last_success_at
            if when is not None and not target.is_discovery:
                last[target.source] = max(last[target.source], when.timestamp())
        for source, seconds in sorted(last.items()):
            _add(families, "ciwatch_last_successful_poll_timestamp_seconds", (source,), seconds)
        for task, n in sorted(dict(collection.task_errors).items()):
            _add(families, "ciwatch_task_errors_total", (task,), n)
        for task, up in sorted(dict(collection.task_up).items()):
            _add(families, "ciwatch_task_up", (task,), 1.0 if up else 0.0)
        for (source, result), n in sorted(dict(collection.webhooks).items()):
            _add(families, "ciwatch_webhooks_total", (source, result), n)
        notifications: Mapping[tuple[str, str], int] = getattr(collection, "notifications", {})
        for (channel, result), n in sorted(dict(notifications).items()):
            _add(families, "ciwatch_notifications_total", (channel, result), n)


def _families() -> Families:
    families: Families = {}
    for spec in METRICS:
        family: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily
        if spec.type == "counter":
            family = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
        elif spec.type == "histogram":
            family = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
        else:
            family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
        families[spec.name] = family
    return families


def _add(families: Families, name: str, labels: Iterable[str], value: float | datetime) -> None:
    number = value.timestamp() if isinstance(value, datetime) else float(value)
    family = families[name]
    assert not isinstance(family, HistogramMetricFamily)
    family.add_metric(list(labels), number)


def _ref_labels(state: RefState) -> tuple[str, str, str, str]:
    return (state.source, state.provider, state.project, state.ref)


def _sample(
    family: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily,
    labels: dict[str, str],
    value: float,
) -> None:
    # add_metric() zips names and values for every sample; the ref labels are built once here.
    family.samples.append(Sample(family.name, labels, value, None, None))


def _add_refs(families: Families, snap: Snapshot) -> None:
    for state in snap.refs:
        _add_ref(families, snap, state)
    _add_counts(families, snap)


def _add_ref(families: Families, snap: Snapshot, state: RefState) -> None:
    """The samples of one project/ref (the families of `REF_FAMILIES`)."""
    status_family = families["ci_pipeline_status"]
    job_family = families["ci_job_status"]
    labels = _ref_labels(state)
    ref = dict(zip(REF_LABELS, labels, strict=True))
    newest = state.last_run
    for status in Status:
        value = 1.0 if newest.status is status else 0.0
        _sample(status_family, {**ref, "status": status.value}, value)
    # The ref's colour, as the dashboard, the API and /cc.xml show it (RefState.failing).
    _sample(families["ci_ref_failing"], ref, 1.0 if state.failing else 0.0)
    failing_since = state.failing_since
    if failing_since is not None:
        since_family = families["ci_ref_failing_since_timestamp_seconds"]
        _sample(since_family, ref, failing_since.timestamp())
    finished = snap.finished.get(state.key)
    if finished is not None and finished.duration_seconds is not None:
        _add(families, "ci_pipeline_last_duration_seconds", labels, finished.duration_seconds)
    if newest.queued_seconds is not None:
        _add(families, "ci_pipeline_last_queued_seconds", labels, newest.queued_seconds)
    created = newest.created_at or newest.started_at or newest.updated_at
    _add(families, "ci_pipeline_last_run_timestamp_seconds", labels, created)
    for job in _one_per_name(snap.jobs.get(newest.key, ())):
        job_labels = {**ref, "job": job.name, "stage": job.stage or ""}
        for status in Status:
            value = 1.0 if job.status is status else 0.0
            _sample(job_family, {**job_labels, "status": status.value}, value)
        if job.duration_seconds is not None:
            duration = families["ci_job_last_duration_seconds"]
            _sample(duration, job_labels, job.duration_seconds)


def _add_reliability(families: Families, snap: Snapshot) -> None:
    """`ci_job_flaky_runs_total` and `ci_ref_recovery_seconds`, from the slow counts."""
    for flaky, n in sorted((snap.flaky or {}).items()):
        _add(families, "ci_job_flaky_runs_total", flaky, n)
    histogram = families["ci_ref_recovery_seconds"]
    assert isinstance(histogram, HistogramMetricFamily)
    bounds = [floatToGoString(bound) for bound in RECOVERY_BUCKETS]  # type: ignore[no-untyped-call]
    for key, found in sorted((snap.recovery or {}).items()):
        buckets = list(zip([*bounds, "+Inf"], [float(n) for n in found.buckets], strict=True))
        histogram.add_metric(list(key), buckets, found.total)


def _add_counts(families: Families, snap: Snapshot) -> None:
    if snap.counts is not None:
        for key, n in sorted(snap.counts.items()):
            _add(families, "ci_pipeline_runs_total", key, n)


def _one_per_name(jobs: Iterable[Job]) -> Iterator[Job]:
    """One job per (name, stage): the last created, i.e. the latest retry of a job."""
    latest: dict[tuple[str, str], Job] = {}
    for job in jobs:
        latest[(job.name, job.stage or "")] = job
    return iter(latest.values())


def _add_targets(families: Families, snap: Snapshot) -> None:
    for target in snap.targets:
        if not target.is_discovery:
            up = 1.0 if target.healthy else 0.0
            _add(families, "ciwatch_target_up", (target.source, target.project), up)
    for source, up in sorted(source_health(snap.targets).items()):
        _add(families, "ciwatch_source_up", (source,), 1.0 if up else 0.0)
    for target in snap.targets:
        if target.is_discovery:
            until = target.paused_until
            paused = until.timestamp() if until is not None else 0.0
            _add(
                families, "ciwatch_source_paused_until_timestamp_seconds", (target.source,), paused
            )


def source_health(targets: Iterable[TargetState]) -> dict[str, bool]:
    """Per source: False while its discovery fails, or while it has targets and none of them
    polls successfully; True otherwise."""
    discovery_ok: dict[str, bool] = {}
    any_healthy: dict[str, bool] = {}
    for target in targets:
        if target.is_discovery:
            discovery_ok[target.source] = target.healthy
        else:
            any_healthy[target.source] = any_healthy.get(target.source, False) or target.healthy
    sources = discovery_ok.keys() | any_healthy.keys()
    return {
        source: discovery_ok.get(source, True) and any_healthy.get(source, True)
        for source in sources
    }


def build_registry(collector: CiwatchCollector) -> CollectorRegistry:
    """A private registry holding only `collector` (no process or platform collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def _number(value: float) -> str:
    """A sample value as Prometheus writes it (`+Inf`, `NaN`, Go's float formatting)."""
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _header(family: Metric) -> str:
    if family.type not in ("gauge", "counter", "histogram"):
        raise ValueError(f"cannot render a {family.type} ({family.name})")
    name = family.name + "_total" if family.type == "counter" else family.name
    doc = family.documentation.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {family.type}\n"


def _samples(family: Metric, escape: Callable[[str], str] = _escape) -> str:
    out: list[str] = []
    for sample in family.samples:
        if sample.labels:
            pairs = ",".join(f'{k}="{escape(v)}"' for k, v in sample.labels.items())
            out.append(f"{sample.name}{{{pairs}}} {_number(sample.value)}\n")
        else:
            out.append(f"{sample.name} {_number(sample.value)}\n")
    return "".join(out)


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition (format 0.0.4, see CONTENT_TYPE) of `registry`'s gauges
    and counters.

    `prometheus_client.generate_latest` writes the same text, but re-validates every label name
    of every sample: over 5,000 refs with 5 jobs each (260,000 samples) it took seconds. Here the
    label names are ours (valid by construction) and each distinct label value is escaped once.
    Safe to run in a worker thread: it reads the immutable snapshot and copies of the counters.
    `MetricsRenderer` writes the same text and keeps the lines of unchanged refs.
    """
    escaped: dict[str, str] = {}

    def escape(value: str) -> str:
        found = escaped.get(value)
        if found is None:
            found = escaped[value] = _escape(value)
        return found

    return "".join(
        _header(family) + _samples(family, escape) for family in registry.collect()
    ).encode("utf-8")


# The families whose samples come one block per project/ref (`_add_ref`).
REF_FAMILIES = (
    "ci_pipeline_status",
    "ci_ref_failing",
    "ci_ref_failing_since_timestamp_seconds",
    "ci_pipeline_last_duration_seconds",
    "ci_pipeline_last_queued_seconds",
    "ci_pipeline_last_run_timestamp_seconds",
    "ci_job_status",
    "ci_job_last_duration_seconds",
)


class MetricsRenderer:
    """`/metrics` as `render(build_registry(collector))` writes it, with the text of each
    project/ref kept between scrapes while its inputs (ref state, newest finished run, jobs of
    the newest run) are unchanged, so a scrape renders only the refs that changed: most of the
    samples at thousands of refs. Thread-safe (scrapes render in worker threads, one at a time).
    """

    def __init__(self, collector: CiwatchCollector) -> None:
        self.collector = collector
        self._lock = threading.Lock()
        self._refs: dict[RefKey, tuple[tuple[object, ...], tuple[str, ...]]] = {}
        self.rendered_refs = 0  # how many ref blocks were (re)rendered, for tests

    def render(self) -> bytes:
        with self._lock:
            return self._render()

    def _render(self) -> bytes:
        collector = self.collector
        snap = collector.cache.current
        families = _families()
        blocks: list[tuple[str, ...]] = []
        if snap is not None:
            blocks = self._ref_blocks(snap)
            _add_counts(families, snap)
            _add_targets(families, snap)
            _add_reliability(families, snap)
        collector._add_self(families, snap)
        _add(families, "ciwatch_store_up", (), 1.0 if collector.store_up else 0.0)
        out: list[str] = []
        for spec in METRICS:
            family = families[spec.name]
            out.append(_header(family))
            if spec.name in REF_FAMILIES:
                index = REF_FAMILIES.index(spec.name)
                out.extend(block[index] for block in blocks)
            else:
                out.append(_samples(family))
        return "".join(out).encode("utf-8")

    def _ref_blocks(self, snap: Snapshot) -> list[tuple[str, ...]]:
        kept: dict[RefKey, tuple[tuple[object, ...], tuple[str, ...]]] = {}
        blocks: list[tuple[str, ...]] = []
        for state in snap.refs:
            key = state.key
            newest = state.last_run
            # Every sample of `_add_ref` comes from these: the state (its status and since give
            # ci_ref_failing and its since, its newest run ci_pipeline_status and the times),
            # the newest finished run and the newest run's jobs.
            inputs = (state, snap.finished.get(key), snap.jobs.get(newest.key, ()))
            cached = self._refs.get(key)
            if cached is not None and cached[0] == inputs:
                block = cached[1]
            else:
                families = _families()
                _add_ref(families, snap, state)
                block = tuple(_samples(families[name]) for name in REF_FAMILIES)
                self.rendered_refs += 1
            kept[key] = (inputs, block)
            blocks.append(block)
        self._refs = kept
        return blocks

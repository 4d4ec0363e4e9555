"""`/metrics`: a custom Prometheus collector over a cached snapshot of the store
(docs/architecture.md#metrics).

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
import gzip
import logging
import re
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
from ciwatch.providers.gitlab import GITLAB_STATUS
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
        "ci_pipeline_test_cases",
        "gauge",
        "Test cases of the newest run of the project/ref with a test report (tests: true), by"
        " status (passed, failed, skipped, errored).",
        (*REF_LABELS, "status"),
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
        gcpe: bool = False,
        gcpe_sparse: bool = True,
        gitlab_sources: Iterable[str] = (),
    ) -> None:
        self.cache = cache
        self.collection = collection
        self.store_health = store_health or StoreHealth()
        # The GCPE-compatible family (`metrics.gcpe_compatible`): GCPE_METRICS, GitLab refs only.
        self.gcpe = gcpe
        self.gcpe_sparse = gcpe_sparse
        # The configured GitLab sources, for the gcpe_* totals of a source with no runs yet.
        self.gitlab_sources = frozenset(gitlab_sources)

    @property
    def store_up(self) -> bool:
        return self.cache.store_up and self.store_health.writable

    def describe(self) -> Iterable[Metric]:
        described = list(_families().values())
        if self.gcpe:
            described.extend(_families(GCPE_METRICS).values())
        return described

    def collect(self) -> Iterable[Metric]:
        families = _families()
        snap = self.cache.current
        if snap is not None:
            _add_refs(families, snap)
            _add_targets(families, snap)
            _add_reliability(families, snap)
        self._add_self(families, snap)
        _add(families, "ciwatch_store_up", (), 1.0 if self.store_up else 0.0)
        collected: list[Metric] = list(families.values())
        if self.gcpe:
            gcpe = _families(GCPE_METRICS)
            owners = gcpe_owners(snap) if snap is not None else frozenset()
            if snap is not None:
                ended = gcpe_ended(snap)
                for state in snap.refs:
                    if state.key in owners:
                        n = None if ended is None else ended.get(state.key, 0)
                        _add_gcpe_ref(gcpe, snap, state, self.gcpe_sparse, n)
            exported = sum(len(gcpe[name].samples) for name in GCPE_EXPORTED)
            self._add_gcpe_self(gcpe, snap, owners, exported)
            collected.extend(gcpe.values())
        return collected

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

    def _add_gcpe_self(
        self, families: Families, snap: Snapshot | None, owners: frozenset[RefKey], exported: int
    ) -> None:
        """GCPE's own gcpe_* gauges that ciwatch has figures for, over its GitLab sources."""
        collection = self.collection
        gitlab = set(self.gitlab_sources)
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
        _add(families, "gcpe_gitlab_api_requests_count", (), requests)
        # Summed over the GitLab sources: with one source (GCPE watches one GitLab), its own.
        remaining = dict(collection.rate_limit_remaining)
        limit = dict(collection.rate_limit_limit)
        if gitlab & remaining.keys():
            left = sum(n for source, n in remaining.items() if source in gitlab)
            _add(families, "gcpe_gitlab_api_requests_remaining", (), left)
        if gitlab & limit.keys():
            size = sum(n for source, n in limit.items() if source in gitlab)
            _add(families, "gcpe_gitlab_api_requests_limit", (), size)
        _add(families, "gcpe_metrics_count", (), exported)
        _add(families, "gcpe_projects_count", (), len(projects))
        _add(families, "gcpe_refs_count", (), len(owners))


def _families(specs: Iterable[MetricSpec] = METRICS) -> Families:
    families: Families = {}
    for spec in specs:
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
    reported = newest if newest.tests_total is not None else finished
    if reported is not None and reported.tests_total is not None:
        tests = families["ci_pipeline_test_cases"]
        for word, count in test_counts(reported).items():
            _sample(tests, {**ref, "status": word}, float(count))


def test_counts(run: Run) -> dict[str, int]:
    """A run's test cases by status; passed is what the total leaves."""
    failed, skipped, errored = run.tests_failed or 0, run.tests_skipped or 0, run.tests_errored or 0
    passed = max((run.tests_total or 0) - failed - skipped - errored, 0)
    return {"passed": passed, "failed": failed, "skipped": skipped, "errored": errored}


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
    # GCPE's counters have no `_total` (its dashboards query the bare names).
    bare = family.name in GCPE_BARE_COUNTERS
    name = family.name + "_total" if family.type == "counter" and not bare else family.name
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


# Fast: a /metrics body is megabytes at thousands of refs, compressed once per body.
GZIP_LEVEL = 1

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
    "ci_pipeline_test_cases",
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
        self._owners: frozenset[RefKey] = frozenset()
        self._gcpe_lines: dict[RefKey, int] = {}  # GCPE samples per ref block
        self._gcpe_parts: dict[str, bytes] = {}  # per snapshot: each per-ref GCPE family's text
        self.rendered_refs = 0  # how many ref blocks were (re)rendered, for tests
        # Per snapshot (by identity: the cache swaps in a new object on every refresh), each
        # family's header and snapshot-derived samples as bytes; per scrape only the in-memory
        # counters are written. The whole body, and its gzip, are kept while neither changed.
        self._snap: Snapshot | None = None
        self._parts: tuple[bytes, ...] = ()
        self._body: tuple[Snapshot | None, tuple[bytes, ...], bytes] | None = None
        self._gzipped: tuple[bytes, bytes] | None = None
        self.snapshot_renders = 0  # snapshots rendered, for tests
        self.body_renders = 0  # bodies assembled (a counter moved or a new snapshot), for tests

    def render(self) -> bytes:
        with self._lock:
            return self._render_cached()

    def render_gzip(self) -> bytes:
        """`render()` compressed with gzip, compressed once per distinct body."""
        with self._lock:
            body = self._render_cached()
            if self._gzipped is None or self._gzipped[0] is not body:
                self._gzipped = (body, gzip.compress(body, compresslevel=GZIP_LEVEL))
            return self._gzipped[1]

    def _render_cached(self) -> bytes:
        collector = self.collector
        snap = collector.cache.current
        if snap is None or snap is not self._snap:
            self._parts = self._snapshot_parts(snap)
            self._snap = snap
            self.snapshot_renders += 1
        own = _families()
        collector._add_self(own, snap)
        _add(own, "ciwatch_store_up", (), 1.0 if collector.store_up else 0.0)
        counters = tuple(_samples(own[spec.name]).encode("utf-8") for spec in METRICS)
        if collector.gcpe:
            counters += (self._gcpe(snap),)
        if self._body is not None and self._body[0] is snap and self._body[1] == counters:
            return self._body[2]
        body = b"".join(
            part + mine for part, mine in zip(self._parts, counters[: len(METRICS)], strict=True)
        )
        body += b"".join(counters[len(METRICS) :])
        self._body = (snap, counters, body)
        self.body_renders += 1
        return body

    def _snapshot_parts(self, snap: Snapshot | None) -> tuple[bytes, ...]:
        families = _families()
        blocks: list[tuple[str, ...]] = []
        if snap is not None:
            blocks = self._ref_blocks(snap)
            _add_counts(families, snap)
            _add_targets(families, snap)
            _add_reliability(families, snap)
        self._gcpe_parts = self._gcpe_ref_parts(blocks) if self.collector.gcpe else {}
        parts: list[bytes] = []
        for spec in METRICS:
            family = families[spec.name]
            if spec.name in REF_FAMILIES:
                index = REF_FAMILIES.index(spec.name)
                text = "".join(block[index] for block in blocks)
            else:
                text = _samples(family)
            parts.append((_header(family) + text).encode("utf-8"))
        return tuple(parts)

    def _gcpe_ref_parts(self, blocks: list[tuple[str, ...]]) -> dict[str, bytes]:
        """Per snapshot: the text of each per-ref GCPE family (its header and every ref's part)."""
        start = len(REF_FAMILIES)
        gcpe = _families(GCPE_METRICS)
        return {
            name: (_header(gcpe[name]) + "".join(block[start + index] for block in blocks)).encode(
                "utf-8"
            )
            for index, name in enumerate(GCPE_REF_FAMILIES)
        }

    def _gcpe(self, snap: Snapshot | None) -> bytes:
        """Per scrape: the text of GCPE_METRICS, the per-ref families kept per snapshot and the
        gcpe_* gauges (API requests and budget move between snapshots) written anew."""
        collector = self.collector
        gcpe = _families(GCPE_METRICS)
        owners = self._owners if snap is not None else frozenset()
        exported = sum(self._gcpe_lines.values()) if snap is not None else 0
        collector._add_gcpe_self(gcpe, snap, owners, exported)
        out: list[bytes] = []
        for spec in GCPE_METRICS:
            cached = self._gcpe_parts.get(spec.name)
            if cached is not None:
                out.append(cached)
            else:
                family = gcpe[spec.name]
                out.append((_header(family) + _samples(family)).encode("utf-8"))
        return b"".join(out)

    def _ref_blocks(self, snap: Snapshot) -> list[tuple[str, ...]]:
        kept: dict[RefKey, tuple[tuple[object, ...], tuple[str, ...]]] = {}
        blocks: list[tuple[str, ...]] = []
        gcpe, sparse = self.collector.gcpe, self.collector.gcpe_sparse
        # Which GitLab refs carry the GCPE series depends on the other refs (two refs may map
        # to one GCPE ref): decided for the whole snapshot, then an input of each block.
        self._owners = owners = gcpe_owners(snap) if gcpe else frozenset()
        ended = gcpe_ended(snap) if gcpe else None
        lines: dict[RefKey, int] = {}
        for state in snap.refs:
            key = state.key
            newest = state.last_run
            # Every sample of `_add_ref` comes from these: the state (its status and since give
            # ci_ref_failing and its since, its newest run ci_pipeline_status and the times),
            # the newest finished run and the newest run's jobs. Those of `_add_gcpe_ref` come
            # from the state's newest run and its jobs, its count of runs that ended (None
            # until counted), and the GCPE options.
            owner = key in owners
            count = None if ended is None or not owner else ended.get(key, 0)
            inputs = (
                state,
                snap.finished.get(key),
                snap.jobs.get(newest.key, ()),
                owner,
                sparse,
                count,
            )
            cached = self._refs.get(key)
            cached_block = cached[1] if cached is not None else None
            if cached is not None and cached[0] == inputs:
                block = cached[1]
            else:
                families = _families()
                _add_ref(families, snap, state)
                block = tuple(_samples(families[name]) for name in REF_FAMILIES)
                if owner:
                    gcpe_families = _families(GCPE_REF_SPECS)
                    _add_gcpe_ref(gcpe_families, snap, state, sparse, count)
                    block += tuple(_samples(gcpe_families[name]) for name in GCPE_REF_FAMILIES)
                else:
                    block += _NO_GCPE_BLOCK
                self.rendered_refs += 1
            if owner:
                counted = self._gcpe_lines.get(key) if block is cached_block else None
                if counted is None:
                    counted = sum(part.count("\n") for part in block[len(REF_FAMILIES) :])
                lines[key] = counted
            kept[key] = (inputs, block)
            blocks.append(block)
        self._refs = kept
        self._gcpe_lines = lines
        return blocks


# -- The GCPE-compatible family (`metrics.gcpe_compatible`, docs/migrating-from-gcpe.md) --------
#
# The names, help texts, label names and status words of mvisonneau/gitlab-ci-pipelines-exporter
# (its pkg/controller/collectors.go; tests/fixtures/gcpe/, origin in tests/fixtures/SOURCES.md),
# for the metrics ciwatch has the data of. Only refs of GitLab sources have these series.

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

GCPE_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "gitlab_ci_pipeline_duration_seconds",
        "gauge",
        "Duration in seconds of the most recent pipeline",
        GCPE_LABELS,
    ),
    MetricSpec("gitlab_ci_pipeline_id", "gauge", "ID of the most recent pipeline", GCPE_LABELS),
    MetricSpec(
        "gitlab_ci_pipeline_queued_duration_seconds",
        "gauge",
        "Duration in seconds the most recent pipeline has been queued before starting",
        GCPE_LABELS,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_status",
        "gauge",
        "Status of the most recent pipeline",
        (*GCPE_LABELS, "status"),
    ),
    MetricSpec(
        "gitlab_ci_pipeline_timestamp",
        "gauge",
        "Timestamp of the last update of the most recent pipeline",
        GCPE_LABELS,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_job_duration_seconds",
        "gauge",
        "Duration in seconds of the most recent job",
        GCPE_JOB_LABELS,
    ),
    MetricSpec("gitlab_ci_pipeline_job_id", "gauge", "ID of the most recent job", GCPE_JOB_LABELS),
    MetricSpec(
        "gitlab_ci_pipeline_job_queued_duration_seconds",
        "gauge",
        "Duration in seconds the most recent job has been queued before starting",
        GCPE_JOB_LABELS,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_job_status",
        "gauge",
        "Status of the most recent job",
        (*GCPE_JOB_LABELS, "status"),
    ),
    MetricSpec(
        "gitlab_ci_pipeline_job_timestamp",
        "gauge",
        "Creation date timestamp of the most recent job",
        GCPE_JOB_LABELS,
    ),
    MetricSpec(
        "gitlab_ci_pipeline_run_count",
        "counter",
        "Number of executions of a pipeline",
        GCPE_LABELS,
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
# The families with one block per GitLab ref (`_add_gcpe_ref`, cached by MetricsRenderer).
GCPE_REF_FAMILIES = (
    "gitlab_ci_pipeline_duration_seconds",
    "gitlab_ci_pipeline_id",
    "gitlab_ci_pipeline_queued_duration_seconds",
    "gitlab_ci_pipeline_status",
    "gitlab_ci_pipeline_timestamp",
    "gitlab_ci_pipeline_job_duration_seconds",
    "gitlab_ci_pipeline_job_id",
    "gitlab_ci_pipeline_job_queued_duration_seconds",
    "gitlab_ci_pipeline_job_status",
    "gitlab_ci_pipeline_job_timestamp",
    "gitlab_ci_pipeline_run_count",
)
GCPE_REF_SPECS = tuple(spec for spec in GCPE_METRICS if spec.name in GCPE_REF_FAMILIES)
_NO_GCPE_BLOCK = ("",) * len(GCPE_REF_FAMILIES)
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


def _gcpe_labels(state: RefState) -> dict[str, str]:
    kind, ref = gcpe_kind_ref(state.ref)
    return {
        "project": state.project,
        "topics": "",
        "kind": kind,
        "ref": ref,
        "source": state.last_run.event or "",
        "variables": "",
    }


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


def _gcpe_status(
    family: CounterMetricFamily | GaugeMetricFamily | HistogramMetricFamily,
    labels: dict[str, str],
    current: str,
    sparse: bool,
) -> None:
    # GCPE's emitStatusMetric: its status words in order, 1 for the current one; sparse keeps
    # only that one. A word GCPE does not list gets no 1 (as in GCPE).
    for word in GCPE_STATUSES:
        if word == current:
            _sample(family, {**labels, "status": word}, 1.0)
        elif not sparse:
            _sample(family, {**labels, "status": word}, 0.0)


def _numeric_id(value: str) -> float | None:
    return float(value) if value.isascii() and value.isdigit() else None


def _add_gcpe_ref(
    families: Families, snap: Snapshot, state: RefState, sparse: bool, ended: int | None
) -> None:
    """The GCPE samples of one GitLab ref (the families of `GCPE_REF_FAMILIES`), from its newest
    run (GCPE's "most recent pipeline"), that run's jobs and `ended`, its count of runs that
    ended (None until the first count)."""
    newest = state.last_run
    labels = _gcpe_labels(state)
    jobs = list(_one_per_name(snap.jobs.get(newest.key, ())))
    # GCPE reads GitLab's null duration (a pipeline not finished) as 0.
    _sample(families["gitlab_ci_pipeline_duration_seconds"], labels, newest.duration_seconds or 0.0)
    pipeline_id = _numeric_id(newest.run_id)
    if pipeline_id is not None:
        _sample(families["gitlab_ci_pipeline_id"], labels, pipeline_id)
    queued = newest.queued_seconds or 0.0
    _sample(families["gitlab_ci_pipeline_queued_duration_seconds"], labels, queued)
    word = _gitlab_word(newest.provider_status, newest.status)
    # GCPE reads GitLab's detailed_status group, `success_with_warnings` for a pipeline that
    # passed with failed allow_failure jobs; ciwatch sees those jobs.
    if word == "success" and any(_warns(job) for job in jobs):
        word = "success_with_warnings"
    _gcpe_status(families["gitlab_ci_pipeline_status"], labels, word, sparse)
    _sample(families["gitlab_ci_pipeline_timestamp"], labels, newest.updated_at.timestamp())
    if ended is not None:
        _sample(families["gitlab_ci_pipeline_run_count"], labels, float(ended))
    for job in jobs:
        job_labels = {
            **labels,
            "stage": job.stage or "",
            "job_name": job.name,
            "runner_description": job.runner or "",
            "tag_list": "",
            "failure_reason": "",
        }
        duration = job.duration_seconds or 0.0
        _sample(families["gitlab_ci_pipeline_job_duration_seconds"], job_labels, duration)
        job_id = _numeric_id(job.job_id)
        if job_id is not None:
            _sample(families["gitlab_ci_pipeline_job_id"], job_labels, job_id)
        job_queued = job.queued_seconds or 0.0
        _sample(families["gitlab_ci_pipeline_job_queued_duration_seconds"], job_labels, job_queued)
        job_word = (
            "success_with_warnings"
            if _warns(job)
            else _gitlab_word(job.provider_status, job.status)
        )
        _gcpe_status(families["gitlab_ci_pipeline_job_status"], job_labels, job_word, sparse)
        if job.created_at is not None:
            created = job.created_at.timestamp()
            _sample(families["gitlab_ci_pipeline_job_timestamp"], job_labels, created)


def _warns(job: Job) -> bool:
    """A failed job allowed to fail: GCPE's `success_with_warnings`."""
    return job.allow_failure and job.status is Status.FAILED


def gcpe_ended(snap: Snapshot) -> dict[RefKey, int] | None:
    """Per ref, its runs that ended (the monotonic counts of ci_pipeline_runs_total, summed over
    the statuses): gitlab_ci_pipeline_run_count. None until the first count, like that family."""
    if snap.counts is None:
        return None
    ended: Counter[RefKey] = Counter()
    for key, n in snap.counts.items():
        ended[RefKey(key.source, key.project, key.ref)] += n
    return dict(ended)

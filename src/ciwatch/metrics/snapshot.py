"""The `/metrics` snapshot: what the store said at one time, refreshed in the background
(docs/architecture.md#metrics).

A scrape reads the snapshot in memory; the snapshot is refreshed at most every `max_age` seconds
(5 s), or sooner after `invalidate()`, by cheap queries: the ref states, the decisive run of each
ref, the jobs of the refs' newest runs (only those that changed or are still active), the newest
finished run of refs whose newest run is not finished, and the target states. The one query that
visits every run, the per-status run count behind `ci_pipeline_runs_total`, runs in the
background at most every `slow_max_age` seconds (60 s); scrapes never wait for it, except the
very first one. The counts, flaky jobs and red periods are made monotonic here (`Monotonic`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Generic, NamedTuple, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.domain import Job, RefKey, RefState, Run, RunKey, Status, TargetState
from ciwatch.errors import StoreError
from ciwatch.filters import Match
from ciwatch.store import reliability
from ciwatch.store import snapshot as queries
from ciwatch.store.base import Store
from ciwatch.store.snapshot import CountKey, Reader

log = logging.getLogger("ciwatch.metrics")
K = TypeVar("K")

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


# Windows of `SnapshotCache.recovery` kept at once (the configured one and a few asked for).
MAX_RECOVERY_WINDOWS = 4


def _order(state: RefState) -> tuple[str, str, str]:
    # The database's order too: the key columns compare byte by byte (`coltypes.key_text`).
    return (state.source, state.project, state.ref)


def _spread(key: RunKey) -> float:
    """A fraction in [0.5, 1) fixed per run: when its kept jobs are read again."""
    return 0.5 + zlib.crc32("\0".join(key).encode("utf-8", "surrogatepass")) / 2**33


def _same(before: Snapshot, after: Snapshot) -> bool:
    """Whether two snapshots say the same (`taken_at` aside); identical objects compare fast."""
    return (
        len(before.refs) == len(after.refs)
        and all(a is b for a, b in zip(before.refs, after.refs, strict=True))
        and before.decisive == after.decisive
        and before.finished == after.finished
        and before.jobs == after.jobs
        and before.targets == after.targets
        and before.counts == after.counts
        and before.flaky == after.flaky
        and before.recovery == after.recovery
    )


@dataclass
class _Recovery:
    """The time to recovery over one window, as of `snapshot` (None: of a background full
    read, not yet brought up to a snapshot); `pending`: the refs changed in the snapshots
    since; `full_at`: when the last full read of it began."""

    snapshot: Snapshot | None
    stats: dict[RefKey, reliability.RecoveryStats] | None
    full_at: float
    pending: set[RefKey] = field(default_factory=set)


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
        # This process's run writes (`RunStore.changes`): a changed ref makes the snapshot stale
        # at once, and between full reads (every `max_age`) only the changed refs are read.
        self._changes = store.changes.subscribe()
        self._rows: dict[RefKey, tuple[object, ...]] = {}  # each ref's raw row at the last read
        self._full_at: float | None = None  # when the last full read of the ref states began
        self._read_at: float | None = None  # when the read behind `current` began
        self._read_mark = -1  # `self._changes.added` when the read behind `current` began
        self._windows: dict[timedelta, _Recovery] = {}  # time to recovery per window asked for
        self._recovery_lock = asyncio.Lock()
        # Full reads of a window's time to recovery running in the background, and the refs
        # changed since each began (applied to its result when it ends).
        self._recovery_tasks: dict[timedelta, asyncio.Task[None]] = {}
        self._collecting: dict[timedelta, set[RefKey]] = {}
        self.full_reads = 0  # full reads of the ref states, for tests
        self.recovery_reads: Counter[str] = Counter()  # "full" / "partial", for tests

    def invalidate(self) -> None:
        """Make the next `get()` refresh, whatever the snapshot's age."""
        self._invalid = True

    def _fresh(self) -> bool:
        if self._invalid or self._attempted_at is None or self._changes.pending:
            return False
        return self._monotonic() - self._attempted_at < self.max_age

    def _start_refresh(self) -> asyncio.Task[None]:
        """The refresh running, or a new one."""
        task = self._refresh_task
        if task is None or task.done():
            full = self._invalid or self._full_at is None or self._stale_full()
            self._invalid = False
            self._attempted_at = self._monotonic()
            task = self._refresh_task = asyncio.create_task(
                self._refresh(full), name="metrics-refresh"
            )
        return task

    async def get(self) -> Snapshot | None:
        """The current snapshot (None while the store has never been read)."""
        task = self._refresh_task
        if not self._fresh():
            task = self._start_refresh()
        elif self.current is not None or task is None or task.done():
            return self.current
        # A refresh is due, or the first one (which `get_current` may have started) is running.
        timeout = self.wait if self.current is not None else self.first_wait
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            log.warning("metrics: snapshot refresh still running after %.1fs", timeout)
        return self.current

    async def get_current(self) -> Snapshot | None:
        """The snapshot if it holds every run write this process committed before the call and
        was read less than `max_age + wait` seconds ago (a refresh that outlasts `wait` leaves
        an older one) with the store up; otherwise None (the caller reads the store itself).
        While a refresh is running, a snapshot within those bounds is answered at once;
        otherwise this refreshes first, as `get()`, waiting for a slow refresh up to
        `first_wait` seconds more. Before the first snapshot exists, starts it and answers
        None."""
        mark = self._changes.added
        if self.current is None:
            # The first refresh also counts every run (seconds over millions): not on this
            # request's time; it starts now, and the caller reads the store meanwhile.
            self._start_refresh()
            return None
        running = self._refresh_task is not None and not self._refresh_task.done()
        if running and self._usable(mark):
            # Another request started a refresh: within the bounds, no need to wait for it.
            return self.current
        found = await self.get()
        if found is not None and self._read_mark < mark:
            # A refresh that began before the write was running: one more.
            found = await self.get()
        task = self._refresh_task
        if not self._usable(mark) and task is not None and not task.done():
            # A slow refresh (a loaded machine): reading the store here too would only add to
            # the load, so wait for it a while longer.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), self.first_wait)
            found = self.current
        if found is None or found is not self.current or not self._usable(mark):
            return None
        return found

    def _usable(self, mark: int) -> bool:
        """Whether `current` holds the writes published up to `mark`, was read less than
        `max_age + wait` ago, and the store was up at the last refresh."""
        return (
            self.current is not None
            and self._read_mark >= mark
            and self.store_up
            and self._read_at is not None
            and self._monotonic() - self._read_at < self.max_age + self.wait
        )

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
        for task in (self._refresh_task, self._counts_task, *self._recovery_tasks.values()):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _stale_full(self) -> bool:
        return self._full_at is None or self._monotonic() - self._full_at >= self.max_age

    async def _refresh(self, full: bool = True) -> None:
        mark = self._changes.added
        local = self._changes.take()
        began = self._monotonic()
        try:
            if full or self.current is None:
                refs, rows, changed = await self._read_all()
            else:
                refs, rows, changed = await self._read_changed(self.current, local)
            decisive = await queries.decisive_runs(self._reader)
            finished = await self._newest_finished(refs)
            jobs = await self._newest_jobs(refs)
            targets = tuple(await self._store.target_states())
            counts = await self._run_counts()
        except StoreError as exc:
            self._changes.add(local)
            if self.store_up:
                log.warning("metrics: cannot refresh the snapshot: %s", exc)
            self.store_up = False
            return
        except Exception as exc:
            self._changes.add(local)
            self._unexpected("the snapshot refresh", exc)
            self.store_up = False
            return
        self.store_up = True
        self._rows = rows
        if full or self._full_at is None:
            self._full_at = began
        self._read_at = began
        self._read_mark = mark
        changed |= local
        snapshot = Snapshot(
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
        previous = self.current
        if previous is not None and not changed and _same(previous, snapshot):
            # Nothing moved: keep the object, so what is kept per snapshot (the rendered
            # /metrics, the encoded /api/v1/projects) stays valid.
            return
        for kept in self._windows.values():
            kept.pending |= changed
        for collecting in self._collecting.values():
            collecting.update(changed)
        self.current = snapshot

    async def _read_all(
        self,
    ) -> tuple[tuple[RefState, ...], dict[RefKey, tuple[object, ...]], set[RefKey]]:
        """Every ref state, building only those whose row changed since the last read."""
        self.full_reads += 1
        previous = {state.key: state for state in self.current.refs} if self.current else {}
        known = {key: row for key, row in self._rows.items() if key in previous}
        found = await queries.changed_ref_states(self._reader, known)
        refs = []
        changed = previous.keys() - found.rows.keys()
        for key in found.rows:
            before = previous.get(key)
            state = found.changed.get(key)
            if state is None or state == before:
                state = before  # unchanged (or a row read again after a partial refresh)
            else:
                changed.add(key)
            if state is not None:  # None: a row that appeared between the two statements
                refs.append(state)
        return tuple(refs), found.rows, changed

    async def _read_changed(
        self, current: Snapshot, local: set[RefKey]
    ) -> tuple[tuple[RefState, ...], dict[RefKey, tuple[object, ...]], set[RefKey]]:
        """The previous snapshot's ref states with those of `local` (this process changed
        them) read again; their rows are forgotten, so the next full read builds them again."""
        states = {state.key: state for state in current.refs}
        fresh = await queries.ref_states_of(self._reader, sorted(local))
        for key in local:
            states.pop(key, None)
        added = any(state.key not in states for state in fresh)
        states.update((state.key, state) for state in fresh)
        ordered = (
            sorted(states.values(), key=_order)
            if added
            else [states[state.key] for state in current.refs if state.key in states]
        )
        rows = {key: row for key, row in self._rows.items() if key not in local}
        return tuple(ordered), rows, set(local)

    async def recovery(
        self, snapshot: Snapshot, window: timedelta
    ) -> Mapping[RefKey, reliability.RecoveryStats] | None:
        """The time to recovery of every ref over `window`, for `snapshot`, the window ending
        at the clock's time of the read (a kept snapshot may be older); the same object while
        nothing was read again. Kept per window: a new snapshot reads again only the refs that
        changed in it, and every ref again `slow_max_age` after the last full read (in the
        background: meanwhile the kept numbers are answered)."""
        async with self._recovery_lock:
            kept = self._windows.get(window)
            if kept is not None and kept.stats is not None and self._stale(kept.full_at):
                self._start_full_recovery(window, self._now())
            if kept is not None and kept.snapshot is snapshot:
                return kept.stats
            began = self._monotonic()
            full = kept is None or kept.stats is None
            # Registered before reading, so refs changed by a refresh meanwhile are pending in it.
            entry = _Recovery(snapshot, None, began if kept is None or full else kept.full_at)
            self._windows.pop(window, None)
            self._windows[window] = entry
            while len(self._windows) > MAX_RECOVERY_WINDOWS:
                del self._windows[next(iter(self._windows))]
            try:
                entry.stats = await self._recovery_of(self._now(), window, kept, full)
            except BaseException:
                self._windows.pop(window, None)
                raise
            return entry.stats

    def _start_full_recovery(self, window: timedelta, now: datetime) -> None:
        running = self._recovery_tasks.get(window)
        if running is None or running.done():
            self._recovery_tasks[window] = asyncio.create_task(
                self._full_recovery(window, now), name="metrics-recovery"
            )

    async def _full_recovery(self, window: timedelta, now: datetime) -> None:
        began = self._monotonic()
        changed: set[RefKey] = set()
        self._collecting[window] = changed
        try:
            stats = dict(await self._store.recovery_stats(now=now, window=window))
        except StoreError as exc:
            log.warning("metrics: cannot read the time to recovery: %s", exc)
            return
        except Exception as exc:
            self._unexpected("the time to recovery", exc)
            return
        finally:
            self._collecting.pop(window, None)
        self.recovery_reads["full"] += 1
        async with self._recovery_lock:
            if window in self._windows:
                self._windows[window] = _Recovery(None, stats, began, changed)

    async def _recovery_of(
        self, now: datetime, window: timedelta, kept: _Recovery | None, full: bool
    ) -> dict[RefKey, reliability.RecoveryStats] | None:
        if full or kept is None or kept.stats is None:
            self.recovery_reads["full"] += 1
            return dict(await self._store.recovery_stats(now=now, window=window))
        stats = kept.stats
        pending = kept.pending
        if not pending:
            return stats
        if len(pending) > queries.KEYS_PER_QUERY:
            self.recovery_reads["full"] += 1
            return dict(await self._store.recovery_stats(now=now, window=window))
        self.recovery_reads["partial"] += 1
        found = await self._store.recovery_stats(
            now=now,
            window=window,
            source=Match(values=tuple(sorted({ref.source for ref in pending}))),
            project=Match(values=tuple(sorted({ref.project for ref in pending}))),
        )
        stats = dict(stats)
        for ref in pending:
            stats.pop(ref, None)
        stats.update((ref, found[ref]) for ref in pending if ref in found)
        return stats

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
        # unchanged run again after 50 to 100 % of slow_max_age (a late job webhook may still
        # add to them), spread by run so that no refresh reads every ref's jobs at once.
        found: dict[RunKey, tuple[Job, ...]] = {}
        wanted: dict[RunKey, object] = {}
        cache: dict[RunKey, tuple[object, float, tuple[Job, ...]]] = {}
        now = self._monotonic()
        for state in refs:
            run = state.last_run
            token = _token(run)
            cached = self._jobs.get(run.key)
            if (
                cached is not None
                and cached[0] == token
                and run.status.terminal
                and now - cached[1] < self.slow_max_age * _spread(run.key)
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

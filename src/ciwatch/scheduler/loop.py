"""The collection loop (docs/architecture.md#collection): a due-time heap over every target, jitter,
a global concurrency limit, adaptive intervals, per-source pauses on rate limits, and a drain on
stop.

One slow or failing target never delays the others: every poll is its own task, bounded only
by the global semaphore, and a failure only moves that target's next due time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ciwatch.clock import Clock, SystemClock
from ciwatch.domain import DISCOVERY, PAUSED_UNTIL, Target, TargetState
from ciwatch.errors import (
    AuthFailed,
    InternalError,
    NotFound,
    ProviderError,
    RateLimited,
    StoreError,
)
from ciwatch.providers.base import Provider
from ciwatch.scheduler.book import TargetBook
from ciwatch.scheduler.tasks import Cadence, KnownRuns, PollOutcome, poll_target
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import Store
from ciwatch.store.base import LeaseStore
from ciwatch.supervisor import Supervisor
from ciwatch.timeutil import iso_z

log = logging.getLogger("ciwatch.scheduler")

# An unhealthy target (bad token, missing project) is retried this much less often.
UNHEALTHY_FACTOR = 10
MAX_BACKOFF = timedelta(hours=1)


@dataclass
class _Entry:
    target: Target
    due: datetime
    failures: int = 0
    active_runs: set[str] = field(default_factory=set)
    # The runs of the previous poll at the progress they were stored with (tasks.py).
    known: KnownRuns = field(default_factory=KnownRuns)
    in_flight: bool = False
    polls: int = 0
    # Whether `known` was filled from the stored digest (once, before the first poll).
    digest_read: bool = False
    # Until when this replica's lease on the target is known to hold (partition mode), and
    # whether another replica held it since this process last read the target's state.
    held_until: datetime | None = None
    lost: bool = False


# A replica holds a target's poll lease for this many of the target's polling intervals after
# its last poll: how long a dead replica's targets wait before another replica takes them.
LEASE_INTERVALS = 3


@dataclass
class PollLeases:
    """Divides the targets between replicas sharing a database (`collection.partition`): a
    target is polled only by the replica holding its lease (`store/leases.py`)."""

    store: LeaseStore
    holder: str
    intervals: Mapping[str, float]  # each source's polling interval, seconds

    def name(self, target: Target) -> str:
        return f"poll:{target.source}:{target.project}"

    def ttl(self, target: Target) -> timedelta:
        return timedelta(seconds=LEASE_INTERVALS * self.intervals.get(target.source, 60.0))

    async def hold(
        self, target: Target, now: datetime, *, next_poll: datetime | None = None
    ) -> bool:
        """Take or renew the target's lease, until `LEASE_INTERVALS` intervals after now (or
        after `next_poll`, when the holder will not poll it before then); False while another
        replica holds it."""
        ttl = self.ttl(target)
        if next_poll is not None and next_poll > now:
            ttl += next_poll - now
        return await self.store.acquire_lease(self.name(target), self.holder, now, ttl)

    async def release(self) -> int:
        """Give up this replica's poll leases (on stop), so others take its targets at once."""
        return await self.store.release_leases(self.holder, prefix="poll:")


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one full cycle (`poll --once`) did."""

    outcomes: list[PollOutcome]
    discovery_errors: dict[str, str]
    requests: int

    @property
    def failed(self) -> list[PollOutcome]:
        return [o for o in self.outcomes if not o.ok]


class Scheduler:
    """Polls every target of every source, forever (`run`) or once (`run_once`)."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        store: Store,
        *,
        cadence: Mapping[str, Cadence],
        concurrency: int = 16,
        jitter: float = 0.1,
        discovery_interval: float = 600.0,
        clock: Clock | None = None,
        metrics: CollectionMetrics | None = None,
        rng: random.Random | None = None,
        leases: PollLeases | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.providers = dict(providers)
        self.store = store
        self.cadence = dict(cadence)
        self.concurrency = concurrency
        self.jitter = jitter
        self.discovery_interval = discovery_interval
        self.clock = clock or SystemClock()
        self.metrics = metrics or CollectionMetrics()
        self.rng = rng or random.Random()
        self.entries: dict[tuple[str, str], _Entry] = {}
        self.discovery_errors: dict[str, str] = {}
        self.paused_until: dict[str, datetime] = {}
        # Sources whose discovery a rate-limit pause put off, and when it ends.
        self.undiscovered: dict[str, datetime] = {}
        self._semaphore = asyncio.Semaphore(concurrency)
        # With leases, `run` polls a target only while this replica holds its lease; `run_once`
        # (`ciwatch poll --once`) polls every target regardless.
        self.leases = leases
        self.skipped = 0  # polls left to the replica holding the lease
        # Unexpected exceptions of single polls and discoveries are logged and counted here.
        self.supervisor = supervisor or Supervisor(self.metrics)
        # Each source's discovery health as last stored (the target state of project
        # `DISCOVERY`), so that it is read from the store once per process.
        self._discovery: dict[str, TargetState | None] = {}
        # Every target's state in memory while `run` or `run_once` runs (`book.py`).
        self.book: TargetBook | None = None
        # Leases to renew in the next batch (partition mode, while `run` renews in batches).
        self._renew: dict[tuple[str, str], None] = {}
        self._renewing = False

    # -- discovery -------------------------------------------------------------------------

    async def discover(self, sources: Iterable[str] | None = None) -> list[Target]:
        """Expand every source (or those named) into targets; a source that fails keeps its
        previous targets. Each source's discovery health is stored as the target state of
        project `DISCOVERY`, so that a source that cannot list its projects shows on every
        surface. A source paused by a rate limit is not listed; `run` lists it again when the
        pause ends (`undiscovered`)."""
        chosen = list(self.providers) if sources is None else list(sources)
        results = await asyncio.gather(
            *(self._discover_one(source, self.providers[source]) for source in chosen),
        )
        now = self.clock.now()
        listed: dict[str, set[str]] = {}
        for source, result in zip(chosen, results, strict=True):
            if result is None:
                continue  # paused by a rate limit: keeps its targets, listed again later
            if isinstance(result, RateLimited) and result.retry_after:
                # Listed again when the pause ends, not a whole discovery interval later.
                self.undiscovered[source] = await self._pause(source, result.retry_after)
            if isinstance(result, ProviderError):
                # Name what could not be listed (`folder team`, `group platform`).
                error = f"{result.target}: {result}" if result.target else str(result)
                if self.discovery_errors.get(source) != error:
                    log.warning("discovery of source %s failed: %s", source, error)
                self.discovery_errors[source] = error
                self.metrics.poll_error(source, "discovery")
                await self._record_discovery(source, now, error=error)
                continue
            if source in self.discovery_errors:
                log.info("discovery of source %s works again", source)
            self.discovery_errors.pop(source, None)
            await self._record_discovery(source, now, found=len(result))
            fresh = {target.key for target in result}
            listed[source] = {target.project for target in result}
            for key in [k for k in self.entries if k[0] == source and k not in fresh]:
                log.info("target %s/%s is no longer watched", *key)
                del self.entries[key]
            for target in result:
                if target.key not in self.entries:
                    spread = self._interval(target.source, False) * self.jitter
                    due = now + timedelta(seconds=self.rng.uniform(0, spread))
                    self.entries[target.key] = _Entry(target, due)
        await self._forget_unwatched(listed)
        return [entry.target for entry in self.entries.values()]

    async def _forget_unwatched(self, listed: Mapping[str, set[str]]) -> None:
        """Drop the stored health of targets no longer watched: of a source whose discovery
        just listed them no more, and of sources no longer configured (discovery included), so
        that a removed target or source is not shown, exported or alerted on as unhealthy for
        ever. Their runs stay. One read of the target states per discovery, but for the first
        after the book was loaded: that one uses what the load read."""
        try:
            loaded = self.book.take_loaded() if self.book is not None else None
            states = await self.store.target_states() if loaded is None else loaded
            stale = [
                state.key
                for state in states
                if state.source not in self.providers
                or (
                    not state.is_discovery
                    and state.source in listed
                    and state.project not in listed[state.source]
                )
            ]
            if stale:
                forgotten = await self.store.forget_targets(stale)
                log.info("forgot the health of %d targets no longer watched", forgotten)
        except StoreError as exc:
            log.warning("could not forget the targets no longer watched: %s", exc)

    async def _discover_one(
        self, source: str, provider: Provider
    ) -> list[Target] | ProviderError | None:
        """The source's targets, its error, or None while it is paused by a rate limit."""
        await self._load_pause(source)
        until = self.paused(source)
        if until is not None:
            self.undiscovered[source] = until
            return None
        self.undiscovered.pop(source, None)
        try:
            return await provider.discover()
        except ProviderError as exc:
            return exc
        except Exception as exc:
            # A bug must not end the scheduler: counted, logged, and shown as this source's
            # discovery error until a discovery succeeds.
            self.supervisor.item_failed("discovery", f"source {source}", exc)
            return InternalError(f"internal error: {type(exc).__name__}: {exc}"[:500])

    async def _record_discovery(
        self, source: str, now: datetime, *, error: str | None = None, found: int = 0
    ) -> None:
        """Store the source's discovery health (written when it changes, and at least once
        per process so that `last_polled_at` says discovery runs)."""
        try:
            before = await self._discovery_state(source)
            if error is None:
                state = TargetState(
                    source,
                    DISCOVERY,
                    healthy=True,
                    last_polled_at=now,
                    last_success_at=now,
                    last_error_at=before.last_error_at if before else None,
                    extra={"targets": str(found), **_pause_of(before)},
                )
            else:
                state = TargetState(
                    source,
                    DISCOVERY,
                    healthy=False,
                    reason=error,
                    last_polled_at=now,
                    last_success_at=before.last_success_at if before else None,
                    last_error_at=now,
                    extra=dict(before.extra) if before else {},
                    unhealthy_since=(before.unhealthy_since if before else None) or now,
                )
            await self.store.save_target_state(state)
            self._discovery[source] = state
        except StoreError as exc:
            log.warning("could not record the discovery of source %s: %s", source, exc)

    # -- rate-limit pauses ------------------------------------------------------------------

    def paused(self, source: str, now: datetime | None = None) -> datetime | None:
        """When the source's rate-limit pause ends, while it lasts; else None."""
        until = self.paused_until.get(source)
        if until is None or until <= (now or self.clock.now()):
            return None
        return until

    async def _pause(self, source: str, seconds: float) -> datetime:
        """Pause the whole source for `seconds` (a pause already lasting longer stands): none of
        its targets is polled and it is not discovered until then. Recorded on the source's
        discovery state (`PAUSED_UNTIL`), so that `/api/v1/targets` and `/metrics` show it."""
        now = self.clock.now()
        until = now + timedelta(seconds=seconds)
        current = self.paused(source, now)
        if current is not None and current >= until:
            return current
        self.paused_until[source] = until
        log.warning(
            "source %s is rate-limited: none of its targets is polled until %s",
            source,
            iso_z(until),
        )
        try:
            before = await self._discovery_state(source) or TargetState(source, DISCOVERY)
            state = replace(before, extra={**before.extra, PAUSED_UNTIL: iso_z(until) or ""})
            await self.store.save_target_state(state)
            self._discovery[source] = state
        except StoreError as exc:
            log.warning("could not record the pause of source %s: %s", source, exc)
        return until

    async def _discovery_state(self, source: str) -> TargetState | None:
        """The source's stored discovery state, read from the store once per process."""
        if source not in self._discovery:
            self._discovery[source] = await self.store.get_target_state(source, DISCOVERY)
        return self._discovery[source]

    async def _load_pause(self, source: str) -> None:
        """Honour a pause recorded before this process started (a restart, another replica):
        read once per process with the source's discovery state."""
        if source in self._discovery:
            return
        try:
            stored = await self._discovery_state(source)
        except StoreError as exc:
            log.warning("could not read the discovery of source %s: %s", source, exc)
            return
        self._honour_pause(source, stored)

    def _honour_pause(self, source: str, stored: TargetState | None) -> None:
        until = stored.paused_until if stored is not None else None
        if until is not None and until > self.clock.now():
            self.paused_until[source] = max(self.paused_until.get(source, until), until)

    def _deferred(self, entry: _Entry, until: datetime) -> PollOutcome:
        """A target of a paused source is not polled: it falls due when the pause ends (spread
        by the jitter, so that the source's targets do not all ask at once)."""
        spread = self._interval(entry.target.source, False) * self.jitter
        entry.due = until + timedelta(seconds=self.rng.uniform(0, spread))
        left = max((until - self.clock.now()).total_seconds(), 0.0)
        error = RateLimited(
            f"not polled: source {entry.target.source} is rate-limited until {iso_z(until)}",
            retry_after=left,
        )
        return PollOutcome(entry.target, ok=False, error=error)

    # -- one cycle -------------------------------------------------------------------------

    async def run_once(
        self, on_done: Callable[[PollOutcome, int, int], None] | None = None
    ) -> CycleReport:
        """Discover, then poll every target once, concurrently. `on_done(outcome, done, total)`
        is called as each target finishes (the CLI's progress bar)."""
        before = self.metrics.requests_total()
        await self._open_book()
        try:
            return await self._run_once(before, on_done)
        finally:
            await self._close_book()

    async def _run_once(
        self, before: int, on_done: Callable[[PollOutcome, int, int], None] | None
    ) -> CycleReport:
        await self.discover()
        entries = list(self.entries.values())
        total = len(entries)
        outcomes: list[PollOutcome] = []

        pending = iter(entries)

        async def worker() -> None:
            for entry in pending:
                outcome = await self._poll(entry)
                outcomes.append(outcome)
                if on_done is not None:
                    on_done(outcome, len(outcomes), total)

        # As many workers as polls may be in flight, each taking the next target: not one task
        # per target all queued on the semaphore (10,000 tasks alive at once, each woken in turn,
        # and old enough by the end to cost the cyclic collector full collections).
        await asyncio.gather(*(worker() for _ in range(max(1, min(self.concurrency, total)))))
        outcomes.sort(key=lambda o: o.target.key)
        errors = dict(self.discovery_errors)
        for source, until in self.undiscovered.items():
            errors.setdefault(source, f"not listed: rate-limited until {iso_z(until)}")
        return CycleReport(outcomes, errors, self.metrics.requests_total() - before)

    # -- forever ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll targets as they fall due until `stop` is set; in-flight polls then finish, and
        the target states not yet written are written."""
        book = await self._open_book()
        background = [asyncio.create_task(book.run(stop))]
        if self.leases is not None:
            self._renewing = True
            background.append(asyncio.create_task(self._lease_loop(stop, book.flush_interval)))
        try:
            await self._run(stop)
        finally:
            stop.set()
            await asyncio.gather(*background, return_exceptions=True)
            self._renewing = False
            self._renew.clear()
            await self._close_book()
            if self.leases is not None:
                try:
                    await self.leases.release()
                except StoreError as exc:
                    log.warning("stopping: could not release the poll leases: %s", exc)

    async def _lease_loop(self, stop: asyncio.Event, seconds: float) -> None:
        """Renew the leases of the targets polled meanwhile, one transaction per batch."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=seconds)
            try:
                await self._renew_leases()
            except StoreError as exc:
                log.warning("could not renew %d poll leases: %s", len(self._renew), exc)

    async def _renew_leases(self) -> None:
        if self.leases is None or not self._renew:
            return
        keys = [key for key in self._renew if key in self.entries]
        self._renew.clear()
        now = self.clock.now()
        by_ttl: dict[timedelta, list[_Entry]] = {}
        for key in keys:
            entry = self.entries[key]
            by_ttl.setdefault(self.leases.ttl(entry.target), []).append(entry)
        for ttl, entries in by_ttl.items():
            names = [self.leases.name(entry.target) for entry in entries]
            renewed = await self.leases.store.renew_leases(names, self.leases.holder, now + ttl)
            for entry, name in zip(entries, names, strict=True):
                if name in renewed:
                    entry.held_until = max(entry.held_until or now, now + ttl)
                else:
                    entry.held_until = None  # taken by another replica: the next poll asks

    async def _open_book(self) -> TargetBook:
        """Read every target state in one query and let the store's readers see this view."""
        book = self.book = TargetBook(self.store)
        discovery = {state.source: state for state in await book.load()}
        for source in self.providers:
            if source not in self._discovery:
                # Read with the rest, so that discovery needs no read of its own.
                self._discovery[source] = discovery.get(source)
                self._honour_pause(source, discovery.get(source))
        self.store.overlay = book
        _freeze_long_lived()
        return book

    async def _close_book(self) -> None:
        """Write what is not written yet (on every way out: a clean stop loses nothing)."""
        book, self.book = self.book, None
        if book is None:
            return
        try:
            await book.flush(final=True)
        except StoreError as exc:
            log.warning("stopping: could not write %d target states: %s", book.dirty, exc)
        finally:
            if self.store.overlay is book:
                self.store.overlay = None

    async def _run(self, stop: asyncio.Event) -> None:
        await self.discover()
        next_discovery = self.clock.now() + timedelta(seconds=self.discovery_interval)
        tasks: set[asyncio.Task[None]] = set()
        wake = asyncio.Event()
        heap = [(entry.due, key) for key, entry in self.entries.items()]
        heapq.heapify(heap)

        def finished(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            wake.set()

        # `stop` wakes the loop too: one waiter for the whole run, not two tasks per wait.
        stopping = asyncio.ensure_future(stop.wait())
        stopping.add_done_callback(lambda _: wake.set())
        while not stop.is_set():
            now = self.clock.now()
            if now >= next_discovery:
                known = set(self.entries)
                await self.discover()
                for key in set(self.entries) - known:
                    heapq.heappush(heap, (self.entries[key].due, key))
                next_discovery = now + timedelta(seconds=self.discovery_interval)
            retry = [source for source, until in self.undiscovered.items() if until <= now]
            if retry:
                known = set(self.entries)
                await self.discover(retry)
                for key in set(self.entries) - known:
                    heapq.heappush(heap, (self.entries[key].due, key))
            while heap and heap[0][0] <= now and len(tasks) < self.concurrency:
                due, key = heapq.heappop(heap)
                entry = self.entries.get(key)
                if entry is None or entry.in_flight or entry.due != due:
                    continue  # dropped by discovery, or a stale heap item
                task = asyncio.create_task(self._poll_and_reschedule(entry, heap))
                tasks.add(task)
                task.add_done_callback(finished)
            wait = self.discovery_interval
            if heap:
                wait = min(wait, max((heap[0][0] - now).total_seconds(), 0.0))
            if self.undiscovered:
                soonest = min(self.undiscovered.values())
                wait = min(wait, max((soonest - now).total_seconds(), 0.0))
            if len(tasks) >= self.concurrency:
                wait = self.discovery_interval
            wake.clear()
            await _wait_for(wake, max(wait, 0.01))
        stopping.cancel()
        if tasks:
            log.info("stopping: letting %d in-flight polls finish", len(tasks))
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _held(self, entry: _Entry) -> bool:
        """Whether this replica may poll the target now (always, without leases). When not,
        the target is due again after its interval, in case its holder has gone."""
        if self.leases is None:
            return True
        now = self.clock.now()
        interval = timedelta(seconds=self._interval(entry.target.source, False))
        if self._renewing and entry.held_until is not None and entry.held_until > now + interval:
            # Held for more than an interval yet: renewed with the next batch, not now.
            self._renew[entry.target.key] = None
            return True
        try:
            if await self.leases.hold(entry.target, now):
                entry.held_until = now + self.leases.ttl(entry.target)
                if entry.lost:
                    await self._reload(entry)
                return True
        except StoreError as exc:
            log.warning("poll lease of %s/%s: %s", *entry.target.key, exc)
            entry.failures += 1
            entry.due = now + self._backoff(entry)
            return False
        self.skipped += 1
        entry.held_until = None
        entry.lost = True
        entry.due = now + interval * self._jitter_factor()
        return False

    async def _reload(self, entry: _Entry) -> None:
        """The lease came back from another replica, which polled the target meanwhile: its
        cursor, ETag and digest are read again (its runs, seen by the other, then need no
        reads either)."""
        entry.lost = False
        entry.digest_read = False
        entry.known = KnownRuns()
        if self.book is not None:
            await self.book.reload(entry.target.key)

    async def _poll_and_reschedule(
        self, entry: _Entry, heap: list[tuple[datetime, tuple[str, str]]]
    ) -> None:
        try:
            if await self._held(entry):
                await self._poll(entry)
                await self._keep(entry)
        except StoreError as exc:
            log.warning("poll of %s/%s: %s", *entry.target.key, exc)
            entry.failures += 1
            entry.due = self.clock.now() + self._backoff(entry)
        except Exception as exc:
            self.supervisor.item_failed("poll", "target {}/{}".format(*entry.target.key), exc)
            entry.failures += 1
            entry.due = self.clock.now() + self._backoff(entry)
        if entry.target.key in self.entries:
            heapq.heappush(heap, (entry.due, entry.target.key))

    async def _keep(self, entry: _Entry) -> None:
        """After a poll that backs off (a failing, unhealthy or rate-limited target) the lease
        would lapse before the next poll, and another replica would take the target and poll
        it on its own schedule: extend the lease past the next poll, so that the back-off holds
        across replicas."""
        if self.leases is None:
            return
        now = self.clock.now()
        ttl = self.leases.ttl(entry.target)
        if entry.due + timedelta(seconds=self._interval(entry.target.source, False)) <= now + ttl:
            return  # the usual case: the lease taken before this poll outlasts the next one
        try:
            if await self.leases.hold(entry.target, now, next_poll=entry.due):
                entry.held_until = now + ttl + (entry.due - now)
        except StoreError as exc:
            log.warning("poll lease of %s/%s: %s", *entry.target.key, exc)

    # -- one poll --------------------------------------------------------------------------

    async def _poll(self, entry: _Entry) -> PollOutcome:
        source = entry.target.source
        paused = self.paused(source)
        if paused is not None:
            return self._deferred(entry, paused)
        entry.in_flight = True
        try:
            async with self._semaphore:
                paused = self.paused(source)  # it may have begun while this poll waited
                if paused is None:
                    if not entry.digest_read and self.book is not None:
                        state = self.book.get(entry.target.key)
                        if state is not None:
                            entry.known = KnownRuns.decode(state.digest)
                        entry.digest_read = True
                    outcome = await poll_target(
                        self.providers[source],
                        self.store,
                        entry.target,
                        now=self.clock.now(),
                        metrics=self.metrics,
                        active_runs=entry.active_runs,
                        known=entry.known,
                        supervisor=self.supervisor,
                        book=self.book,
                    )
        finally:
            entry.in_flight = False
            if paused is None:
                entry.polls += 1
        if paused is not None:
            return self._deferred(entry, paused)
        now = self.clock.now()
        if outcome.ok:
            entry.failures = 0
            base = self._interval(source, outcome.active)
            entry.due = now + timedelta(seconds=base * self._jitter_factor())
        else:
            entry.failures += 1
            if isinstance(outcome.error, RateLimited) and outcome.error.retry_after:
                entry.due = await self._pause(source, outcome.error.retry_after)
            else:
                entry.due = now + self._backoff(entry, outcome.error)
        return outcome

    def _interval(self, source: str, active: bool) -> float:
        cadence = self.cadence.get(source, Cadence())
        return cadence.active_interval if active else cadence.interval

    def _jitter_factor(self) -> float:
        return 1.0 + self.rng.uniform(-self.jitter, self.jitter)

    def _backoff(self, entry: _Entry, error: ProviderError | None = None) -> timedelta:
        interval = self._interval(entry.target.source, False)
        if isinstance(error, AuthFailed | NotFound):
            seconds = interval * UNHEALTHY_FACTOR
        else:
            seconds = min(interval * 2 ** (entry.failures - 1), MAX_BACKOFF.total_seconds())
            seconds = max(seconds, interval / 4)
        return min(timedelta(seconds=seconds * self._jitter_factor()), MAX_BACKOFF)


_frozen = False


def _freeze_long_lived() -> None:
    """Once per process, when the first book is loaded: what exists then (modules, settings,
    the schema, the target states) lives as long as the process, so it is moved out of the
    cyclic collector's sight (`gc.freeze`). Otherwise every full collection, two or so per
    cycle at 3,000 targets, walks all of it again: 18 % of a steady cycle's CPU, measured
    (docs/performance.md)."""
    global _frozen
    if not _frozen:
        _frozen = True
        gc.collect()
        gc.freeze()


def _pause_of(state: TargetState | None) -> dict[str, str]:
    """The recorded pause of a discovery state, to keep across its updates."""
    if state is None or PAUSED_UNTIL not in state.extra:
        return {}
    return {PAUSED_UNTIL: state.extra[PAUSED_UNTIL]}


async def _wait_for(wake: asyncio.Event, seconds: float) -> None:
    """Until `wake` is set or `seconds` have passed: a timer, not a task per wait (the loop
    waits once per finished poll)."""
    timer = asyncio.get_running_loop().call_later(seconds, wake.set)
    try:
        await wake.wait()
    finally:
        timer.cancel()

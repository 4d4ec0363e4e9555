"""Every target's sync state in memory, written back to the store in batches.

The scheduler reads a target's state (cursor, ETag, health, digest) from here, not from the
store, and writes it here after each poll. An unchanged poll changes nothing but the target's
timestamps, and those alone are written at most once per `HEARTBEAT`: so an unchanged poll
touches no database at all. Every other change (a new cursor, ETag or digest, a health change)
marks the target dirty; dirty targets are written together, one transaction per batch, every
`flush_interval` seconds, at once when a target's health changed or `batch` targets are dirty,
and on stop (then with every timestamp too, in one transaction).

What a crash loses: the changes of at most one flush window (about a second). Runs are stored
before the poll that found them updates the state here, so what is lost is only cursors, ETags
and digests that moved on: the next process re-fetches from the older ones and finds the runs
already stored. Never wrong data, only a repeated request.

In-process readers (`/api/v1/targets`, `/readyz`, `/metrics`, the unhealthy alert) see this
view at once: the store overlays it on what it reads (`RunStore.overlay`). Other processes see
changes within a flush window, and the timestamps of unchanged polls within `HEARTBEAT`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import fields
from datetime import datetime, timedelta
from operator import attrgetter

from ciwatch.domain import TargetState
from ciwatch.errors import StoreError
from ciwatch.store import Store

log = logging.getLogger("ciwatch.scheduler")

Key = tuple[str, str]

# Timestamps alone (an unchanged poll) reach the store at most this often per target.
HEARTBEAT = timedelta(minutes=5)
FLUSH_INTERVAL = 1.0  # seconds between flushes of dirty targets
FLUSH_BATCH = 1000  # this many dirty targets are flushed without waiting for the interval

_TIMES = ("last_polled_at", "last_success_at", "last_error_at")
# Every field but the timestamps, read as one tuple: comparing two of them is what an unchanged
# poll costs here (no copy of the state).
_timeless = attrgetter(*(f.name for f in fields(TargetState) if f.name not in _TIMES))


def _health(state: TargetState) -> tuple[bool, str | None]:
    return (state.healthy, state.reason)


class TargetBook:
    """The scheduler's in-memory target states and their write-behind to the store."""

    def __init__(
        self,
        store: Store,
        *,
        flush_interval: float = FLUSH_INTERVAL,
        batch: int = FLUSH_BATCH,
        heartbeat: timedelta = HEARTBEAT,
    ) -> None:
        self.store = store
        self.flush_interval = flush_interval
        self.batch = batch
        self.heartbeat = heartbeat
        self.states: dict[Key, TargetState] = {}
        # Each target's state as the store last had it from us (or as read).
        self._stored: dict[Key, TargetState] = {}
        self._dirty: dict[Key, None] = {}
        self._loaded: list[TargetState] | None = None
        # Set when a flush should not wait for the interval (a health change, a full batch).
        self.urgent = asyncio.Event()
        self.written = 0

    # -- loading -----------------------------------------------------------------------------

    async def load(self) -> list[TargetState]:
        """Read every target state in one query; the sources' discovery states, which stay
        with the scheduler's own record, are returned."""
        discovery = []
        self._loaded = await self.store.target_states()
        for state in self._loaded:
            if state.is_discovery:
                discovery.append(state)
            else:
                self.states[state.key] = self._stored[state.key] = state
        return discovery

    def take_loaded(self) -> list[TargetState] | None:
        """Every state `load` read (discovery states included), once: the scheduler's first
        discovery after the load checks them for targets no longer watched instead of reading
        them all again (`poll --once` reads the target states once). None after that."""
        loaded, self._loaded = self._loaded, None
        return loaded

    async def reload(self, key: Key) -> TargetState | None:
        """Read one target's state again (its lease came back from another replica, which may
        have moved its cursor on). A change of ours not yet flushed is kept."""
        if key in self._dirty:
            return self.states.get(key)
        state = await self.store.get_target_state(*key)
        if state is None:
            self.states.pop(key, None)
            self._stored.pop(key, None)
        else:
            self.states[key] = self._stored[key] = state
        return state

    # -- the view ------------------------------------------------------------------------------

    def get(self, key: Key) -> TargetState | None:
        return self.states.get(key)

    def put(self, state: TargetState) -> None:
        """Record a poll's state; marked for writing when anything but its timestamps changed,
        or its timestamps are a `HEARTBEAT` older in the store."""
        key = state.key
        self.states[key] = state
        if key in self._dirty:
            return
        stored = self._stored.get(key)
        if stored is None or _timeless(stored) != _timeless(state):
            self._dirty[key] = None
            if stored is None or _health(stored) != _health(state):
                self.urgent.set()  # health surfaces of other processes learn it at once
        elif self._stale(stored, state):
            self._dirty[key] = None
        if len(self._dirty) >= self.batch:
            self.urgent.set()

    def _stale(self, stored: TargetState, state: TargetState) -> bool:
        for name in _TIMES:
            new: datetime | None = getattr(state, name)
            old: datetime | None = getattr(stored, name)
            if new is not None and (old is None or new - old >= self.heartbeat):
                return True
        return False

    def live(self) -> Mapping[Key, TargetState]:
        """The current view, for the store's overlay."""
        return self.states

    def forget(self, keys: Iterable[Key]) -> None:
        """Targets whose stored state was deleted (no longer watched)."""
        for key in keys:
            self.states.pop(key, None)
            self._stored.pop(key, None)
            self._dirty.pop(key, None)

    @property
    def dirty(self) -> int:
        return len(self._dirty)

    # -- writing -----------------------------------------------------------------------------

    async def flush(self, *, final: bool = False) -> int:
        """Write every dirty target, `batch` per transaction; how many. `final` (on stop, at
        the end of `poll --once`) also writes the targets whose timestamps alone moved, all in
        one transaction, so that a clean stop leaves the store exactly this view. On a store
        error the unwritten targets stay dirty (tried again at the next flush) and the error
        propagates."""
        if final:
            for key, state in self.states.items():
                if key not in self._dirty and self._stored.get(key) != state:
                    self._dirty[key] = None
        size = max(len(self._dirty), 1) if final else self.batch
        written = 0
        self.urgent.clear()
        while self._dirty:
            keys = list(self._dirty)[:size]
            states = [self.states[key] for key in keys if key in self.states]
            for key in keys:
                del self._dirty[key]
            try:
                await self.store.save_target_states(states)
            except BaseException:
                for key in keys:
                    self._dirty.setdefault(key, None)
                raise
            for state in states:
                # A poll may have put a newer state meanwhile: it is dirty again by itself.
                self._stored[state.key] = state
            written += len(states)
        self.written += written
        return written

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every `flush_interval` seconds (at once when urgent) until `stop` is set."""
        while not stop.is_set():
            waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(self.urgent.wait())]
            try:
                await asyncio.wait(
                    waiters, timeout=self.flush_interval, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waiters:
                    waiter.cancel()
            if self.urgent.is_set() and not stop.is_set():
                # Let the polls finishing at the same moment join this batch.
                await asyncio.sleep(0)
            try:
                await self.flush()
            except StoreError as exc:
                log.warning("could not write %d target states: %s", self.dirty, exc)
                await _sleep_unless(stop, self.flush_interval)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)

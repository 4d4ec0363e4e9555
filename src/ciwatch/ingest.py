"""Storing what webhooks and push reports carry, and the slow follow-up work they trigger.

A webhook answers fast: the run it carries is stored at once, and anything slow (fetching the
jobs of a GitHub run, reading a Jenkins build the store has never seen) runs in the background.
Replays are cheap twice over: a bounded in-memory set of delivery ids answers "duplicate"
without touching the store, and the store's forward-only merge makes any replay that gets past
it (after a restart) a no-op.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Coroutine, Sequence
from dataclasses import replace
from typing import Any

from ciwatch.domain import Job, Run
from ciwatch.errors import CiwatchError
from ciwatch.runtime import Runtime

log = logging.getLogger("ciwatch.ingest")

DEDUP_SIZE = 10_000


class Deliveries:
    """The ids of recent deliveries (per source), oldest forgotten first."""

    def __init__(self, size: int = DEDUP_SIZE) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def seen(self, source: str, delivery: str) -> bool:
        """Whether this delivery was seen; records it when not."""
        key = (source, delivery)
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        self._seen[key] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return False

    def forget(self, source: str, delivery: str) -> None:
        """A delivery that failed to store must be retried by the sender, not called a duplicate."""
        self._seen.pop((source, delivery), None)


# Background work (job fetches) running at once, and waiting at most: beyond that a webhook's
# follow-up is dropped with a warning (the next poll of its target catches up). Unbounded, a
# slow or unreachable CI server let retried fetches take the CPU that ingest needs.
BACKGROUND_RUNNING = 16
BACKGROUND_WAITING = 5_000


class Ingest:
    """Store runs and jobs from webhooks and reports; run follow-up work in the background,
    at most `running` pieces at once and `waiting` more queued."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        running: int = BACKGROUND_RUNNING,
        waiting: int = BACKGROUND_WAITING,
    ) -> None:
        self.runtime = runtime
        self.deliveries = Deliveries()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(running)
        self.limit = running + waiting
        self.dropped = 0

    async def store(self, run: Run | None, jobs: Sequence[Job] = ()) -> bool:
        """Upsert a run and its jobs, in one transaction; True when the run changed."""
        runs = [run] if run is not None else []
        return await self.runtime.store.upsert_runs(runs, list(jobs)) > 0

    def later(self, what: str, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` in the background; its failure is logged, never raised to the sender.
        When `limit` pieces are already running or waiting, it is dropped with a warning."""
        if len(self._tasks) >= self.limit:
            coro.close()
            self.dropped += 1
            log.warning("%s: dropped, %d background tasks are already queued", what, self.limit)
            return

        async def guarded() -> None:
            try:
                async with self._slots:
                    await coro
            except CiwatchError as exc:
                log.warning("%s: %s", what, exc)
            except Exception:
                log.exception("%s failed", what)
            finally:
                coro.close()  # never started (cancelled while waiting for a slot): no warning

        task = asyncio.create_task(guarded(), name=what)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def fetch_details_later(self, run: Run) -> None:
        """Fetch a run's details and jobs through its source's provider, when one is polling."""
        provider = self.runtime.providers.get(run.source)
        if provider is None:
            return

        async def fetch() -> None:
            full, jobs = await provider.details(run)
            await self.store(full, jobs)

        self.later(f"fetching the jobs of {run.source}/{run.project} run {run.run_id}", fetch())

    async def align_to_stored(self, run: Run) -> Run:
        """A Jenkins notification without a timestamp is dated when it arrived; a stored build
        carries Jenkins' own constant `timestamp`. Re-date the notification to the stored build
        so that the status rank alone orders them (see providers/jenkins.py)."""
        stored = await self.runtime.store.get_run(run.key)
        if stored is None or run.updated_at <= stored.updated_at:
            return run
        return replace(
            run,
            updated_at=stored.updated_at,
            created_at=stored.created_at or run.created_at,
            started_at=stored.started_at or run.started_at,
        )

    async def drain(self, seconds: float = 10.0) -> None:
        """Wait (bounded) for background work, on shutdown."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=seconds)

    @property
    def pending(self) -> int:
        return len(self._tasks)

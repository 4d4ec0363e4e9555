"""Storing what webhooks and push reports carry, and the slow follow-up work they trigger.

202 means durable: a receiver answers "accepted" only once what it accepted is committed in the
store, so a crash right after the answer loses nothing. Only slow follow-up work runs in the
background (fetching the jobs of a GitHub run, reading a Jenkins build from its API for the
build's own times); it makes stored runs richer, never makes them durable, and a poll of the
target redoes whatever of it was dropped or cut off by a shutdown.

Replays are cheap twice over: a bounded in-memory set of stored delivery ids answers
"duplicate" without touching the store, and the store's forward-only merge makes any replay that
gets past it (after a restart) a no-op.

A CI system whose notifications may lack the run's own times (Jenkins' Notification plugin)
stores them through `store_notification`: its provider module gives the `merge` that aligns a
notification with the stored run, and the date a run never seen is stored at when the payload
has no time of its own; the run is then read from the API in the background through its
provider (a `RunReader`), and that read never lowers the stored status. The notifications and
the read of one run are serialized in this process (`_exclusive`), so that the check and the
write see the same stored run. providers/jenkins.py says why Jenkins needs this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ciwatch.domain import Job, Run, RunKey
from ciwatch.errors import CiwatchError
from ciwatch.providers.base import RunReader

if TYPE_CHECKING:  # the runtime owns its ingest (`Runtime.ingest`)
    from ciwatch.runtime import Runtime

log = logging.getLogger("ciwatch.ingest")

# `merge(notification, stored)`: the notification aligned with the stored run (None: it brings
# nothing to write).
Merge = Callable[[Run, Run], Run | None]

DEDUP_SIZE = 10_000


class Deliveries:
    """The ids of recent deliveries that were stored (per source), oldest forgotten first."""

    def __init__(self, size: int = DEDUP_SIZE) -> None:
        self.size = size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    def seen(self, source: str, delivery: str) -> bool:
        """Whether this delivery was stored before (a replay)."""
        key = (source, delivery)
        if key in self._seen:
            self._seen.move_to_end(key)
            return True
        return False

    def stored(self, source: str, delivery: str) -> None:
        """Record a delivery once it is committed: only then is a resend a duplicate. A
        delivery that failed to store is never recorded, so the sender's retry is stored."""
        self._seen[(source, delivery)] = None
        self._seen.move_to_end((source, delivery))
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)

    def forget(self, source: str, delivery: str) -> None:
        """Drop a delivery id (a resend of it is then stored again)."""
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
        self.cut_off = 0  # background tasks cancelled by `drain` at shutdown
        self._locks: dict[RunKey, tuple[asyncio.Lock, list[int]]] = {}
        self._runs_fetched: set[RunKey] = set()  # runs of orphan jobs being fetched

    async def store(self, run: Run | None, jobs: Sequence[Job] = ()) -> bool:
        """Upsert a run and its jobs, in one transaction; True when the run changed."""
        runs = [run] if run is not None else []
        return await self.runtime.store.upsert_runs(runs, list(jobs)) > 0

    def later(self, what: str, coro: Coroutine[Any, Any, None]) -> bool:
        """Run `coro` in the background; its failure is logged, never raised to the sender.
        When `limit` pieces are already running or waiting, it is dropped with a warning (and
        False is returned)."""
        if len(self._tasks) >= self.limit:
            coro.close()
            self.dropped += 1
            log.warning("%s: dropped, %d background tasks are already queued", what, self.limit)
            return False

        async def guarded() -> None:
            try:
                async with self._slots:
                    await coro
            except CiwatchError as exc:
                log.warning("%s: %s", what, exc)
            except Exception as exc:
                self.runtime.supervisor.item_failed("webhook-followup", what, exc)
            finally:
                coro.close()  # never started (cancelled while waiting for a slot): no warning

        task = asyncio.create_task(guarded(), name=what)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def fetch_details_later(self, run: Run) -> None:
        """Fetch a run's details and jobs through its source's provider, when one is polling."""
        provider = self.runtime.providers.get(run.source)
        if provider is None:
            return

        async def fetch() -> None:
            full, jobs = await provider.details(run)
            await self.store(full, jobs)

        self.later(f"fetching the jobs of {run.source}/{run.project} run {run.run_id}", fetch())

    def fetch_run_of_job_later(self, job: Job) -> None:
        """A job's webhook can arrive before its run is stored (GitHub's `workflow_job` with its
        `workflow_run` lost, late, or filtered out): when the source is polled by a provider that
        reads single runs (a `RunReader`), read the run and its jobs from the API in the
        background, unless the store has the run by then. Otherwise the job waits for the run's
        webhook or the next poll. One read per run at a time."""
        provider = self.runtime.providers.get(job.source)
        if not isinstance(provider, RunReader) or job.run_key in self._runs_fetched:
            return
        key = job.run_key
        self._runs_fetched.add(key)

        async def fetch() -> None:
            try:
                if await self.runtime.store.get_run(key) is not None:
                    return
                run = await provider.run(job.project, job.run_id)
                full, jobs = await provider.details(run)
                await self.store(full, jobs)
            finally:
                self._runs_fetched.discard(key)

        what = f"fetching run {job.run_id} of {job.source}/{job.project} for job {job.job_id}"
        if not self.later(what, fetch()):
            self._runs_fetched.discard(key)

    @contextlib.asynccontextmanager
    async def _exclusive(self, key: RunKey) -> AsyncIterator[None]:
        """One read-then-write of run `key` at a time in this process."""
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

    async def store_notification(
        self, run: Run, *, dated: bool, merge: Merge, undated: datetime
    ) -> bool:
        """Store a notification now (see the module's doc); True when the run changed. `dated`:
        the payload carried the run's own time; else a run never stored is stored at `undated`
        (earlier than any real time, so the API's answer wins the merge). Reading the run from
        the API, when the store has not had it from there yet, is left to the background."""
        provider = self.runtime.providers.get(run.source)
        reader = provider if isinstance(provider, RunReader) else None
        async with self._exclusive(run.key):
            stored = await self.runtime.store.get_run(run.key)
            write: Run | None = run
            if stored is not None:
                write = merge(run, stored)
            elif reader is not None and not dated:
                write = replace(run, updated_at=undated)
            if write is None:
                return False
            run = write
            changed = await self.store(run)
        if reader is not None and (stored is None or stored.updated_at == undated):
            what = f"reading {run.source}/{run.project} #{run.run_id} from its API"
            self.later(what, self._read_from_api(reader, run))
        elif changed and run.status.terminal:
            self.fetch_details_later(run)
        return changed

    async def _read_from_api(self, reader: RunReader, run: Run) -> None:
        """The run as the CI system's API has it, merged over the stored notifications: it
        brings the run's own timestamp (and author, queue time, ref and sha), never a lower
        status."""
        read = await reader.run(run.project, run.run_id)
        async with self._exclusive(run.key):
            stored = await self.runtime.store.get_run(run.key)
            if (
                stored is not None
                and stored.attempt == read.attempt
                and stored.status.rank > read.status.rank
            ):
                read = replace(
                    read,
                    status=stored.status,
                    provider_status=stored.provider_status,
                    finished_at=stored.finished_at or read.finished_at,
                    duration_seconds=(
                        read.duration_seconds
                        if stored.duration_seconds is None
                        else stored.duration_seconds
                    ),
                )
            await self.store(read)
        if read.status.terminal:
            self.fetch_details_later(read)

    async def drain(self, seconds: float = 10.0) -> int:
        """On shutdown: wait up to `seconds` for background work (and the work it starts), then
        cancel what is left, so that nothing runs on a closed store. Returns how many tasks were
        cancelled. What webhooks accepted is already stored: the cut only loses enrichment."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        rest = set(self._tasks)
        for task in rest:
            task.cancel()
        if rest:
            await asyncio.gather(*rest, return_exceptions=True)
            self.cut_off += len(rest)
            log.warning(
                "shutdown: %d background follow-ups (API reads, job fetches) cut off after %g s; "
                "the runs are stored, the next polls catch up",
                len(rest),
                seconds,
            )
        return len(rest)

    @property
    def pending(self) -> int:
        return len(self._tasks)

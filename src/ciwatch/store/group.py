"""Group commit: concurrent run writes of one process share one transaction.

Most of a small write is fixed cost: a connection, BEGIN and COMMIT (on PostgreSQL a wait for
the WAL flush; on SQLite, with one writer at a time, the turn and a thread hop per statement).
Under a burst of webhooks each one paid all of it, and on SQLite waited for every write queued
before it. Here a writer that arrives while a write is in progress joins the next batch; each
batch is one transaction with one statement for all its jobs and one (per wave) for all its
runs. The merge is order-independent (`state.version_key`), so a batch stores exactly what the
writes one by one would have stored. On PostgreSQL the refs of a batch are locked in sorted
order, as for any write, so batches and other writers cannot deadlock each other for long: a
deadlock is detected and the transaction retried.

A batch that fails because of what it holds (`isolates(error)`: a constraint or a value the
database refused) is retried item by item, so one bad write fails alone and the others are
stored. Any other failure (the database unreachable, a timeout, a lock) fails the whole batch at
once: retrying its items one by one would only make every write behind them wait for each
timeout in turn. A caller cancelled while its batch is being written does not stop the write.

Run lookups are grouped the same way (`GroupRead`): the polls of a cycle that find changed runs
ask at about the same time which of them are stored, and each read transaction costs far more
than one more key in it (on SQLite a connection, BEGIN, the statement and the end, each a hop
to the driver's thread). Lookups that arrive while a read is in progress share the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from ciwatch.domain import Job, Run, RunKey


@dataclass
class Pending:
    """One caller's write: its runs and jobs, and the future of its changed-run count."""

    runs: Sequence[Run]
    jobs: Sequence[Job]
    future: asyncio.Future[int] | None = field(default=None, repr=False)


WriteBatch = Callable[[Sequence[Pending]], Awaitable[list[int]]]


class GroupCommit:
    """Coalesces the writes submitted while a batch is being written into the next batch.
    `write_batch(items)` writes items in one transaction and returns each one's count."""

    def __init__(
        self,
        write_batch: WriteBatch,
        *,
        max_items: int = 500,
        isolates: Callable[[Exception], bool] = lambda exc: True,
    ) -> None:
        self._write_batch = write_batch
        self.max_items = max_items
        self.isolates = isolates
        self._pending: list[Pending] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # transactions written (for tests and benchmarks)

    async def submit(self, runs: Sequence[Run], jobs: Sequence[Job]) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append(Pending(runs, jobs, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="store-group-commit")
        # Shielded: a caller cancelled mid-write leaves the write to finish for the others.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._pending:
            batch = self._pending[: self.max_items]
            del self._pending[: len(batch)]
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                for item in batch + self._pending:
                    if item.future is not None:
                        item.future.cancel()
                self._pending.clear()
                raise

    async def _write(self, batch: list[Pending]) -> None:
        self.batches += 1
        try:
            counts = await self._write_batch(batch)
        except Exception as exc:
            if len(batch) == 1 or not self.isolates(exc):
                for item in batch:
                    _fail(item, exc)
                return
            # Someone's write may be the cause: each alone, so only it fails.
            for item in batch:
                await self._write([item])
            return
        for item, count in zip(batch, counts, strict=True):
            if item.future is not None and not item.future.done():
                item.future.set_result(count)


def _fail(item: Pending, exc: Exception) -> None:
    if item.future is None:
        return
    if not item.future.done():
        item.future.set_exception(exc)
    # A caller that went away never retrieves it: do not warn about that.
    with contextlib.suppress(asyncio.CancelledError, Exception):
        item.future.exception()


ReadRuns = Callable[[Sequence[RunKey]], Awaitable[dict[RunKey, Run]]]


class GroupRead:
    """Coalesces the run lookups submitted while a lookup is in progress into the next one.
    `read_runs(keys)` returns the stored runs among `keys` in one read transaction. A failed
    read fails every lookup of its batch (nothing in a lookup can be one caller's fault)."""

    def __init__(self, read_runs: ReadRuns, *, max_keys: int = 2000) -> None:
        self._read_runs = read_runs
        self.max_keys = max_keys
        self._pending: list[tuple[Sequence[RunKey], asyncio.Future[dict[RunKey, Run]]]] = []
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # read transactions (for tests and benchmarks)

    async def submit(self, keys: Sequence[RunKey]) -> dict[RunKey, Run]:
        future: asyncio.Future[dict[RunKey, Run]] = asyncio.get_running_loop().create_future()
        self._pending.append((keys, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="store-group-read")
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._pending:
            count = 0
            taken = 0
            for keys, _ in self._pending:
                if taken and count + len(keys) > self.max_keys:
                    break
                count += len(keys)
                taken += 1
            batch = self._pending[:taken]
            del self._pending[:taken]
            try:
                await self._read(batch)
            except asyncio.CancelledError:
                for _, future in batch + self._pending:
                    future.cancel()
                self._pending.clear()
                raise

    async def _read(
        self, batch: list[tuple[Sequence[RunKey], asyncio.Future[dict[RunKey, Run]]]]
    ) -> None:
        self.batches += 1
        wanted = list(dict.fromkeys(key for keys, _ in batch for key in keys))
        try:
            found = await self._read_runs(wanted)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    future.exception()
            return
        for keys, future in batch:
            if not future.done():
                future.set_result({key: found[key] for key in keys if key in found})

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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from ciwatch.domain import Job, Run


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

"""One supervisor for every long-running task of a process (`serve`, `demo`).

Two kinds of failure, two answers:

- **One item fails** (a poll, a discovery, an alert evaluation, one notice, one webhook
  follow-up, one metrics refresh): the loop that ran it calls `item_failed`, which logs the
  exception with its traceback and the item's identity and counts it in
  `ciwatch_task_errors_total{task}`; the loop goes on with the next item.
- **A loop dies anyway** (a bug outside any item, or it returns before `stop`): `run` logs and
  counts it, marks the loop down (`ciwatch_task_up{task} 0`, `/readyz` 503 naming it), waits
  with exponential backoff (1 s doubling to 60 s, full jitter) and starts it again; once it has
  run for a while without dying the backoff starts over.

A loop is a coroutine function taking the process's `stop` event; it must return when `stop` is
set. Cancelling the supervisor's task cancels the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ciwatch.http import Backoff
from ciwatch.selfmetrics import CollectionMetrics

log = logging.getLogger("ciwatch.supervisor")

Loop = Callable[[asyncio.Event], Awaitable[None]]

# A loop that ran this long before dying starts its restart backoff from the beginning.
STABLE_SECONDS = 60.0


@dataclass
class LoopState:
    """What the supervisor knows of one loop."""

    name: str
    up: bool = False
    restarts: int = 0
    error: str | None = None  # why it last died


class Supervisor:
    """Runs loops, restarting those that die, and counts the errors of single items."""

    def __init__(
        self,
        metrics: CollectionMetrics,
        *,
        backoff: Backoff | None = None,
        stable_seconds: float = STABLE_SECONDS,
    ) -> None:
        self.metrics = metrics
        self.backoff = backoff or Backoff(base=1.0, cap=60.0)
        self.stable_seconds = stable_seconds
        self.loops: dict[str, LoopState] = {}

    # -- items -----------------------------------------------------------------------------

    def item_failed(self, task: str, item: str, exc: BaseException) -> None:
        """One item of `task` raised something unexpected: log it with its traceback and the
        item's identity, and count it. The caller goes on with the next item."""
        log.error("%s: %s failed unexpectedly", task, item, exc_info=exc)
        self.metrics.task_error(task)

    # -- loops -----------------------------------------------------------------------------

    def down(self) -> dict[str, str]:
        """The loops that are not running now (crashed and waiting to restart), with why."""
        return {
            name: state.error or "not running"
            for name, state in sorted(self.loops.items())
            if not state.up
        }

    def register(self, name: str) -> LoopState:
        """Declare a loop before it starts (so that it is reported down until it runs)."""
        state = self.loops.get(name)
        if state is None:
            state = self.loops[name] = LoopState(name)
            self.metrics.task_state(name, up=False)
        return state

    def start(self, name: str, loop: Loop, stop: asyncio.Event) -> asyncio.Task[None]:
        """Run `loop(stop)` under supervision in a new task (named `name`)."""
        self.register(name)
        return asyncio.create_task(self.run(name, loop, stop), name=name)

    async def run(self, name: str, loop: Loop, stop: asyncio.Event) -> None:
        """Run `loop(stop)` until it returns with `stop` set; restart it whenever it dies."""
        state = self.register(name)
        attempt = 0
        while not stop.is_set():
            started = time.monotonic()
            state.up = True
            self.metrics.task_state(name, up=True)
            try:
                await loop(stop)
            except asyncio.CancelledError:
                self._mark(state, "cancelled")
                raise
            except Exception as exc:
                log.error("task %s died; restarting it", name, exc_info=exc)
                self.metrics.task_error(name)
                self._mark(state, f"{type(exc).__name__}: {exc}"[:500])
            else:
                if stop.is_set():
                    return
                log.error("task %s returned before ciwatch stopped; restarting it", name)
                self.metrics.task_error(name)
                self._mark(state, "returned before stop")
            if time.monotonic() - started >= self.stable_seconds:
                attempt = 0
            delay = self.backoff.delay(attempt)
            attempt += 1
            state.restarts += 1
            try:
                await asyncio.wait_for(stop.wait(), timeout=max(delay, 0.05))
            except TimeoutError:
                continue
        state.up = False

    def _mark(self, state: LoopState, error: str) -> None:
        state.up = False
        state.error = error
        self.metrics.task_state(state.name, up=False)

"""Collection scheduling: per-target due times, bounded concurrency, and the poll task.

The names below load lazily (`ciwatch.lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ciwatch.lazy import exports

if TYPE_CHECKING:
    from ciwatch.scheduler.loop import Scheduler
    from ciwatch.scheduler.tasks import Cadence, PollOutcome, poll_target

__all__ = ["Cadence", "PollOutcome", "Scheduler", "poll_target"]
__getattr__ = exports(
    __name__,
    {"Cadence": "tasks", "PollOutcome": "tasks", "Scheduler": "loop", "poll_target": "tasks"},
)

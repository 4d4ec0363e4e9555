"""Collection scheduling: per-target due times, bounded concurrency, and the poll task."""

from ciwatch.scheduler.loop import Scheduler
from ciwatch.scheduler.tasks import Cadence, PollOutcome, poll_target

__all__ = ["Cadence", "PollOutcome", "Scheduler", "poll_target"]

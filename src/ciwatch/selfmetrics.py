"""What ciwatch measures about itself while collecting: API requests by source and HTTP code,
the providers' rate-limit budget, poll errors and the last successful poll per source, and the
health of its own background tasks (errors per task, whether each supervised loop is up).

Plain in-memory counters owned by the runtime (no module-level state); the metrics exporter
reads them at scrape time.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class CollectionMetrics:
    api_requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    rate_limit_remaining: dict[str, int] = field(default_factory=dict)
    rate_limit_limit: dict[str, int] = field(default_factory=dict)
    poll_errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    polls: Counter[str] = field(default_factory=Counter)
    last_successful_poll: dict[str, datetime] = field(default_factory=dict)
    webhooks: Counter[tuple[str, str]] = field(default_factory=Counter)
    notifications: Counter[tuple[str, str]] = field(default_factory=Counter)
    task_errors: Counter[str] = field(default_factory=Counter)
    task_up: dict[str, bool] = field(default_factory=dict)

    def api_request(self, source: str, code: str) -> None:
        self.api_requests[(source, code)] += 1

    def rate_limit(self, source: str, remaining: int, limit: int | None) -> None:
        self.rate_limit_remaining[source] = remaining
        if limit is not None:
            self.rate_limit_limit[source] = limit

    def poll_error(self, source: str, kind: str) -> None:
        self.poll_errors[(source, kind)] += 1

    def poll_ok(self, source: str, when: datetime) -> None:
        self.polls[source] += 1
        previous = self.last_successful_poll.get(source)
        if previous is None or when > previous:
            self.last_successful_poll[source] = when

    def webhook(self, source: str, result: str) -> None:
        """A webhook or report by its result: accepted, duplicate, ignored, rejected_signature,
        bad_payload, too_large, unknown_source."""
        self.webhooks[(source, result)] += 1

    def notification(self, channel: str, result: str) -> None:
        """A notification attempt by its result: sent, failed (permanently), retried."""
        self.notifications[(channel, result)] += 1

    def task_error(self, task: str) -> None:
        """An unexpected exception in one item of a background task, or a loop that died."""
        self.task_errors[task] += 1

    def task_state(self, task: str, *, up: bool) -> None:
        """Whether the supervised loop `task` is running (see supervisor.py)."""
        self.task_up[task] = up

    def requests_total(self, source: str | None = None) -> int:
        return sum(n for (src, _), n in self.api_requests.items() if source in (None, src))

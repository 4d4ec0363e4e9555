"""What every notification channel is: the `Channel` protocol, the `Message` it sends, and the
pacing helper that keeps a channel under its service's rate limit.

A `Notice` is one alert event about one project/ref; a `Message` carries one notice, or several
when the alert engine grouped them. Channels render a message with `render.py` and deliver it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, timedelta, tzinfo
from typing import Protocol

from ciwatch.alerting import kinds
from ciwatch.clock import Clock, SystemClock
from ciwatch.domain import CommitRange, Run

# Every alert event, and `test` (`ciwatch alerts test`): alerting/kinds.py.
NOTICE_KINDS = tuple(kinds.WORDING)
# The events about ciwatch's own health: no run, a subject and an error instead.
HEALTH_KINDS = kinds.HEALTH_EVENTS


@dataclass(frozen=True)
class Person:
    """Someone a notice mentions (`people:`): their handle on each kind of channel."""

    name: str
    slack: str | None = None
    dingtalk: str | None = None
    wecom: str | None = None
    feishu: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Notice:
    """One alert event about one project/ref.

    `red_for` is how long the ref was red (recovered) or how long the run has been running or
    queued (stuck, queued). `flaky` marks a recovery on the same SHA as the failure.
    `fingerprint` is `rule:source:project:ref`; `dashboard_url` links to the ciwatch project
    page when `server.base_url` is set. `run` is None only for a `test` notice. `at_start`
    marks a `broken` notice about a ref that was already failing when ciwatch first saw it
    (`alerts.on_start: summary`): a message of such notices is rendered as one summary.
    """

    kind: str
    source: str
    project: str
    ref: str
    run: Run | None
    failing_jobs: tuple[str, ...] = ()
    red_for: timedelta | None = None
    flaky: bool = False
    fingerprint: str = ""
    dashboard_url: str | None = None
    at_start: bool = False
    # What is wrong (an `unhealthy` notice: the CI server's answer, the store's error).
    detail: str | None = None
    # A `broken` notice: the SHA of the ref's last green run, so the commits that broke it are
    # `green_sha..run.sha`.
    green_sha: str | None = None
    # A `broken` notice: the commits `green_sha..run.sha` as the CI system listed them (newest
    # first, bounded), when the provider can list them and answered in time; else None.
    commit_range: CommitRange | None = None
    # A `broken` notice: the people (`people:`) the breaking run names (its commit author, its
    # triggering login), mentioned by each channel in its own syntax.
    people: tuple[Person, ...] = ()
    # A break whose failing jobs are all known-flaky: the sentence saying so (alerts.flaky);
    # `flaky_label` marks the title too (`alerts.flaky: label`).
    likely_flaky: str | None = None
    flaky_label: bool = False

    def __post_init__(self) -> None:
        if self.kind not in NOTICE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(NOTICE_KINDS)}, got {self.kind!r}")
        if self.at_start and self.kind != "broken":
            raise ValueError(f"only a broken notice can be at_start, not {self.kind!r}")


@dataclass(frozen=True)
class Message:
    """What a channel sends: one notice, or several grouped under a route/group label."""

    notices: tuple[Notice, ...]
    group: str | None = None
    # The configured `timezone`: the zone the message's times are written in.
    zone: tzinfo = UTC

    def __post_init__(self) -> None:
        if not self.notices:
            raise ValueError("a message needs at least one notice")

    @property
    def grouped(self) -> bool:
        return len(self.notices) > 1

    @property
    def people(self) -> tuple[Person, ...]:
        """Everyone the notices mention, each once, in order."""
        seen: dict[Person, None] = {}
        for notice in self.notices:
            seen.update(dict.fromkeys(notice.people))
        return tuple(seen)

    @property
    def at_start(self) -> bool:
        """Whether this is the summary of refs already failing when ciwatch started: every
        notice is `at_start` (one alone too)."""
        return all(notice.at_start for notice in self.notices)


@dataclass(frozen=True)
class Delivery:
    """What the service answered to a successful send (shown by `ciwatch alerts test`)."""

    answer: str


class Channel(Protocol):
    """A configured notification channel.

    `send` delivers one message or raises `ChannelError`: `permanent=True` when retrying the
    same message cannot help (bad token, payload refused, address unknown), `permanent=False`
    otherwise, with `retry_after` (seconds) when the service said how long to wait. `send` is
    not idempotent: the service may have shown a message whose answer was lost, so a retry can
    show it twice. `min_interval` is the pause (seconds) the caller leaves between two sends to
    stay under the service's rate limit (see `Throttle`). `close` releases what the channel
    opened itself (never a session it was given); it may be called more than once.
    """

    name: str
    kind: str
    min_interval: float

    async def send(self, message: Message) -> Delivery: ...

    async def close(self) -> None: ...


def make_test_message(*, dashboard_url: str | None = None) -> Message:
    """The message `ciwatch alerts test` sends through a channel."""
    notice = Notice(
        kind="test",
        source="ciwatch",
        project="ciwatch",
        ref="test",
        run=None,
        fingerprint="test:ciwatch:ciwatch:test",
        dashboard_url=dashboard_url,
    )
    return Message((notice,))


class Throttle:
    """Spaces calls at least `min_interval` seconds apart: `await throttle.wait()` before each
    send. One per channel; concurrent waiters are served in turn."""

    def __init__(self, min_interval: float, *, clock: Clock | None = None) -> None:
        self.min_interval = max(min_interval, 0.0)
        self._clock = clock or SystemClock()
        self._last: float | None = None

    def _seconds(self) -> float:
        return self._clock.now().timestamp()

    async def wait(self) -> None:
        # Reserve the next slot before sleeping so concurrent callers queue up behind it.
        now = self._seconds()
        slot = now if self._last is None else max(now, self._last + self.min_interval)
        self._last = slot
        if slot > now:
            await self._clock.sleep(slot - now)

"""The `unhealthy` alert (issue 10): ciwatch's own ill health, through the same routes,
grouping, de-duplication, silences and recovery messages as CI alerts.

Subjects, each with the fingerprint `("unhealthy", source, project, "")`:

- a **target** whose polls fail: `(source, project)`;
- a **source** whose discovery fails: `(source, "")` (shown as `(discovery)`);
- a **channel** that fails to deliver: `("ciwatch", "channel:<name>")`, reported through the
  *other* channels (a channel is never told about itself);
- the **store** refusing writes: `("ciwatch", "store")`. Its alert cannot go through the outbox
  (which lives in the store), so `StoreAlarm` sends it straight to the channels from memory.

A subject fires once it has been unhealthy for `alerts.unhealthy_after` (default 10 minutes),
notifies `unhealthy` again every `repeat_interval` while it lasts, and resolves with a `healthy`
notice when it is healthy again (or no longer exists: a target dropped from the configuration).
The decisions are level-based like the CI rules: made from the stored target states, the outbox
and the stored alert rows, so a restart or a second replica decides nothing new.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from ciwatch.alerting.rules import (
    FIRING,
    AlertRow,
    Decision,
    Fingerprint,
)
from ciwatch.channels.base import Channel, Message, Notice
from ciwatch.domain import AlertEventKind, TargetState
from ciwatch.errors import ChannelError

log = logging.getLogger(__name__)

RULE = AlertEventKind.UNHEALTHY.value
# The `source` of ciwatch's own parts (its store, its channels) in alerts and routes.
SELF = "ciwatch"
STORE = "store"
CHANNEL_PREFIX = "channel:"


@dataclass(frozen=True)
class Condition:
    """Something unhealthy now: what, since when, the error, and (for a channel) which channel
    must not be told."""

    source: str
    project: str
    since: datetime
    error: str
    channel: str | None = None

    @property
    def fingerprint(self) -> Fingerprint:
        return (RULE, self.source, self.project, "")


@dataclass(frozen=True)
class ChannelFailure:
    """A channel whose deliveries fail: since its first failure after its last success."""

    channel: str
    since: datetime
    error: str


def target_conditions(targets: Iterable[TargetState]) -> list[Condition]:
    """The unhealthy targets and discoveries."""
    found = []
    for target in targets:
        if target.healthy:
            continue
        since = target.unhealthy_since or target.last_error_at or target.last_polled_at
        if since is None:
            continue
        found.append(Condition(target.source, target.project, since, target.reason or "failing"))
    return found


def channel_conditions(failures: Iterable[ChannelFailure]) -> list[Condition]:
    return [
        Condition(SELF, CHANNEL_PREFIX + f.channel, f.since, f.error, channel=f.channel)
        for f in failures
    ]


def health_decisions(
    conditions: Iterable[Condition],
    alerts: Mapping[Fingerprint, AlertRow],
    now: datetime,
    *,
    unhealthy_after: timedelta,
    repeat_interval: timedelta,
) -> list[Decision]:
    """Fire, repeat or resolve the `unhealthy` alert of every subject (see the module doc)."""
    due = {c.fingerprint: c for c in conditions if now - c.since >= unhealthy_after}
    decisions: list[Decision] = []
    for key, condition in due.items():
        row = alerts.get(key)
        payload = {
            "error": condition.error,
            "since": condition.since.isoformat(),
            **({"channel": condition.channel} if condition.channel else {}),
        }
        lasted = now - condition.since
        if row is None or row.state != FIRING:
            decisions.append(
                Decision(key, "fire", row, AlertEventKind.UNHEALTHY, None, payload, red_for=lasted)
            )
        elif row.last_notified is None or now - row.last_notified >= repeat_interval:
            decisions.append(
                Decision(
                    key, "repeat", row, AlertEventKind.UNHEALTHY, None, payload, red_for=lasted
                )
            )
    for key, row in alerts.items():
        if row.rule == RULE and row.state == FIRING and key not in due:
            since = _since(row)
            payload = dict(row.payload)
            decisions.append(
                Decision(
                    key,
                    "resolve",
                    row,
                    AlertEventKind.HEALTHY,
                    None,
                    payload,
                    red_for=max(now - since, timedelta(0)),
                )
            )
    return decisions


def _since(row: AlertRow) -> datetime:
    value = row.payload.get("since")
    return datetime.fromisoformat(value) if isinstance(value, str) else row.first_seen


class StoreAlarm:
    """The store's `unhealthy` alert, sent straight to the channels (the outbox is in the store).

    `check(now, writable, error, since)` is called after every write probe. Once the store has
    refused writes for `unhealthy_after`, every channel of the routes that select `unhealthy`
    for source `ciwatch`, project `store` is sent one `unhealthy` notice naming this process and
    the error; when writes work again, one `healthy` notice. A send that fails is tried again at
    the next check. Per process and in memory (the store cannot be asked): each replica reports
    its own view, and silences do not apply to this one alert.
    """

    def __init__(
        self,
        channels: Mapping[str, Channel],
        routed: Iterable[str],
        *,
        instance: str,
        unhealthy_after: timedelta,
    ) -> None:
        self.channels = {name: channels[name] for name in routed if name in channels}
        self.instance = instance
        self.unhealthy_after = unhealthy_after
        self.firing = False
        self._pending: dict[str, Notice] = {}

    async def check(
        self, now: datetime, *, writable: bool, error: str | None, since: datetime | None
    ) -> None:
        if not writable and since is not None and now - since >= self.unhealthy_after:
            if not self.firing:
                self.firing = True
                self._queue("unhealthy", now - since, error or "writes are refused")
        elif writable and self.firing:
            self.firing = False
            self._queue("healthy", None, "writes work again")
        await self._flush()

    def _queue(self, kind: str, lasted: timedelta | None, error: str) -> None:
        notice = Notice(
            kind=kind,
            source=SELF,
            project=STORE,
            ref="",
            run=None,
            red_for=lasted,
            fingerprint=f"{RULE}:{SELF}:{STORE}:",
            detail=f"{self.instance}: {error}",
        )
        self._pending = dict.fromkeys(self.channels, notice)

    async def _flush(self) -> None:
        for name, notice in list(self._pending.items()):
            try:
                await self.channels[name].send(Message((notice,)))
            except ChannelError as exc:
                log.warning("store alarm: channel %s: %s", name, exc)
                if exc.permanent:
                    del self._pending[name]
            except Exception:
                log.exception("store alarm: channel %s failed", name)
                del self._pending[name]
            else:
                del self._pending[name]

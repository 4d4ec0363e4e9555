"""Delivery workers (docs/architecture.md#alerting): drain the outbox, one task per channel.

Each round a worker claims its channel's due rows (`next_attempt_at` passed: the end of their
group's `group_wait` window, or a retry time), sends the rows of each group (route) as one
`Message` (grouped when several), and records
the outcome on every claimed row: `sent`; `failed` with the error text when the channel says
retrying cannot help (`ChannelError.permanent`) or after `max_attempts`; otherwise `retry` at
now + backoff (exponential, full jitter, at least the channel's `retry_after`). Sends are paced by
the channel's `min_interval` (`Throttle`).

Exactly-once, and its one window: a claim is a conditional UPDATE, so two workers (in one
process or on two replicas) never hold the same row, and a row recorded `sent` is never claimed
again. A worker that dies *after* the channel accepted a message and *before* recording it
leaves the row claimed; when its lease (`lease`, default 5 minutes) expires another worker sends
it again. No channel offers an idempotency key, so that window cannot be closed; it is as short
as one store write.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, fields, replace
from datetime import UTC, timedelta, tzinfo
from typing import Any

from ciwatch.channels.base import Channel, Message, Notice, Person, Throttle
from ciwatch.clock import Clock, SystemClock
from ciwatch.domain import Run, Status
from ciwatch.errors import ChannelError, StoreError
from ciwatch.http import Backoff
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.serialize import commit_range_from_dict, commit_range_to_dict, run_to_dict
from ciwatch.store.alerting import OutboxRow
from ciwatch.store.base import AlertStore
from ciwatch.supervisor import Supervisor
from ciwatch.timeutil import parse_time

log = logging.getLogger(__name__)

_RUN_TIMES = ("updated_at", "created_at", "started_at", "finished_at")


def notice_to_payload(notice: Notice) -> dict[str, Any]:
    """A notice as the JSON kept in an outbox row."""
    return {
        "kind": notice.kind,
        "source": notice.source,
        "project": notice.project,
        "ref": notice.ref,
        "run": run_to_dict(notice.run) if notice.run is not None else None,
        "failing_jobs": list(notice.failing_jobs),
        "red_for_seconds": notice.red_for.total_seconds() if notice.red_for is not None else None,
        "flaky": notice.flaky,
        "fingerprint": notice.fingerprint,
        "dashboard_url": notice.dashboard_url,
        "at_start": notice.at_start,
        "detail": notice.detail,
        "green_sha": notice.green_sha,
        "commit_range": (
            commit_range_to_dict(notice.commit_range) if notice.commit_range is not None else None
        ),
        "people": [asdict(person) for person in notice.people],
        "likely_flaky": notice.likely_flaky,
        "flaky_label": notice.flaky_label,
    }


def _run_from_dict(data: Mapping[str, Any]) -> Run:
    names = {f.name for f in fields(Run)}
    values = {key: value for key, value in data.items() if key in names}
    for name in _RUN_TIMES:
        values[name] = parse_time(values.get(name))
    values["status"] = Status(values["status"])
    return Run(**values)


def notice_from_payload(payload: Mapping[str, Any]) -> Notice:
    """The notice an outbox row's payload holds (inverse of `notice_to_payload`)."""
    red = payload.get("red_for_seconds")
    run = payload.get("run")
    return Notice(
        kind=payload["kind"],
        source=payload["source"],
        project=payload["project"],
        ref=payload["ref"],
        run=_run_from_dict(run) if run is not None else None,
        failing_jobs=tuple(payload.get("failing_jobs") or ()),
        red_for=timedelta(seconds=red) if red is not None else None,
        flaky=bool(payload.get("flaky")),
        fingerprint=payload.get("fingerprint", ""),
        dashboard_url=payload.get("dashboard_url"),
        at_start=bool(payload.get("at_start")),
        detail=payload.get("detail"),
        green_sha=payload.get("green_sha"),
        commit_range=commit_range_from_dict(payload.get("commit_range")),
        people=tuple(Person(**person) for person in payload.get("people") or ()),
        likely_flaky=payload.get("likely_flaky"),
        flaky_label=bool(payload.get("flaky_label")),
    )


class DeliveryWorkers:
    """Sends the outbox through `channels` (name → Channel). `run(stop)` runs one task per
    channel until `stop` is set; `deliver_once(name)` does one claim-send-record round (for
    tests). Several instances, in one process or several, may share a store."""

    def __init__(
        self,
        store: AlertStore,
        channels: Mapping[str, Channel],
        clock: Clock | None = None,
        *,
        metrics: CollectionMetrics | None = None,
        backoff: Backoff | None = None,
        worker_id: str | None = None,
        poll_interval: float = 1.0,
        lease: timedelta = timedelta(minutes=5),
        batch: int = 50,
        max_attempts: int = 12,
        supervisor: Supervisor | None = None,
        zone: tzinfo = UTC,
    ) -> None:
        self.store = store
        self.channels = dict(channels)
        self.clock = clock or SystemClock()
        self.metrics = metrics
        self.backoff = backoff or Backoff(base=2.0, cap=600.0)
        self.worker_id = worker_id or f"delivery-{secrets.token_hex(6)}"
        self.poll_interval = poll_interval
        self.lease = lease
        self.batch = batch
        self.max_attempts = max_attempts
        self.supervisor = supervisor
        self.zone = zone
        self._throttles = {
            name: Throttle(channel.min_interval, clock=self.clock)
            for name, channel in self.channels.items()
        }
        self._wakeups = {name: asyncio.Event() for name in self.channels}

    async def deliver_once(self, name: str) -> int:
        """Claim the due rows of channel `name`, send them (one message per group: the rows of
        one route, grouped when there are several) and record each outcome; returns how many rows
        were handled (0 when nothing was due)."""
        rows = await self.store.claim_outbox(
            name, self.worker_id, self.clock.now(), lease=self.lease, limit=self.batch
        )
        groups: dict[str, list[OutboxRow]] = {}
        for row in rows:
            # Rows queued before groups existed (revision 0002) are grouped by channel.
            groups.setdefault(row.group_key or name, []).append(row)
        for label, members in groups.items():
            await self._send(name, label, members)
        return len(rows)

    async def _send(self, name: str, label: str, rows: list[OutboxRow]) -> None:
        channel = self.channels[name]
        try:
            notices = await self._with_jobs([notice_from_payload(row.payload) for row in rows])
            message = Message(notices, group=label if len(notices) > 1 else None, zone=self.zone)
            await self._throttles[name].wait()
            await channel.send(message)
        except ChannelError as exc:
            await self._failed(name, rows, exc)
        except (StoreError, asyncio.CancelledError):
            raise
        except Exception as exc:
            # A notice the channel cannot render or send (a bug, or a value it cannot encode):
            # recorded as failed with the error, so it is shown (`/alerts`, `ciwatch alerts
            # list`) and never claimed again, and the channel goes on with the next notices.
            ids = ", ".join(str(row.id) for row in rows)
            self._item_failed(f"channel {name}, outbox rows {ids}", exc)
            error = f"internal error: {type(exc).__name__}: {exc}"[:1000]
            await self._failed(name, rows, ChannelError(error, permanent=True))
        else:
            await self.store.record_outbox(
                [r.id for r in rows], self.worker_id, self.clock.now(), outcome="sent"
            )
            self._count(name, "sent")
            log.info("alert delivery: channel=%s rows=%d sent", name, len(rows))

    async def _with_jobs(self, notices: Sequence[Notice]) -> tuple[Notice, ...]:
        """The notices with the failing jobs known now, for those that named none: a webhook
        can break a ref before the run's jobs are stored (GitHub's are fetched after its
        `workflow_run` event when no `workflow_job` events came first). A notice that names
        some is sent as decided, without a read."""
        keys = [
            n.run.key
            for n in notices
            if n.run is not None and n.run.status is Status.FAILED and not n.failing_jobs
        ]
        try:
            known = await self.store.failing_jobs_of(keys)
        except StoreError as exc:
            log.info("alert delivery: failing jobs unknown: %s", exc)
            return tuple(notices)
        fresh = []
        for notice in notices:
            names = known.get(notice.run.key, ()) if notice.run is not None else ()
            if len(names) > len(notice.failing_jobs):
                notice = replace(notice, failing_jobs=names)
            fresh.append(notice)
        return tuple(fresh)

    async def _failed(self, name: str, rows: list[OutboxRow], exc: ChannelError) -> None:
        ids = [row.id for row in rows]
        now = self.clock.now()
        attempts = max(row.attempts for row in rows) + 1
        if exc.permanent or attempts >= self.max_attempts:
            await self.store.record_outbox(
                ids, self.worker_id, now, outcome="failed", error=str(exc)
            )
            self._count(name, "failed")
            log.warning("alert delivery: channel=%s rows=%d failed: %s", name, len(rows), exc)
            return
        delay = self.backoff.delay(attempts, exc.retry_after)
        retry_at = now + timedelta(seconds=delay)
        await self.store.record_outbox(
            ids, self.worker_id, now, outcome="retry", error=str(exc), retry_at=retry_at
        )
        self._count(name, "retried")
        log.info(
            "alert delivery: channel=%s rows=%d retry in %.1fs: %s", name, len(rows), delay, exc
        )

    def _item_failed(self, item: str, exc: BaseException) -> None:
        if self.supervisor is not None:
            self.supervisor.item_failed("delivery", item, exc)
        else:
            log.error("alert delivery: %s failed unexpectedly", item, exc_info=exc)

    def _count(self, name: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.notification(name, result)

    async def drain(self) -> int:
        """One round on every channel concurrently; returns the rows handled."""
        counts = await asyncio.gather(*(self.deliver_once(name) for name in self.channels))
        return sum(counts)

    def wake(self, channels: Iterable[str]) -> None:
        """Tell the workers of `channels` that rows were queued, so that a row due at once is
        sent at once rather than at the next poll (the engine's `on_queued`)."""
        for name in channels:
            event = self._wakeups.get(name)
            if event is not None:
                event.set()

    async def channel_loop(self, name: str, stop: asyncio.Event) -> None:
        """Deliver channel `name`'s notices until `stop` is set (one supervised task each)."""
        wakeup = self._wakeups[name]
        while not stop.is_set():
            wakeup.clear()
            try:
                handled = await self.deliver_once(name)
            except StoreError as exc:
                log.warning("alert delivery: channel=%s store error: %s", name, exc)
                handled = 0
            except Exception as exc:
                self._item_failed(f"channel {name} delivery round", exc)
                handled = 0
            if handled:
                continue
            # Idle: poll again after `poll_interval` (rows of other replicas, retries, the end
            # of a group_wait), or at once when woken or stopped.
            stopping = asyncio.ensure_future(stop.wait())
            woken = asyncio.ensure_future(wakeup.wait())
            await asyncio.wait(
                [stopping, woken], timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
            stopping.cancel()
            woken.cancel()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set: one task per channel, so a slow or rate-limited channel
        never holds up the others. Does not close the channels (their owner does)."""
        await asyncio.gather(*(self.channel_loop(name, stop) for name in self.channels))

"""The alert engine (DESIGN §7): evaluate every project/ref, change alert state, queue
notifications in the outbox — the state changes and their outbox rows in one transaction.

`evaluate()` is level-based and idempotent: it reads the ref states and the stored alerts,
decides with `rules`, and writes each change with compare-and-set on the row it was decided
from, so a second evaluator (another replica, or this one after a restart) that raced it or
comes later changes nothing and queues nothing. `run(stop)` calls it every `interval` seconds,
which also evaluates the time-based rules (stuck, queued).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime
from fnmatch import fnmatchcase

from ciwatch.alerting import rules
from ciwatch.alerting.delivery import notice_to_payload
from ciwatch.alerting.rules import AlertRow, Decision, Fingerprint, Thresholds
from ciwatch.alerting.silences import silenced
from ciwatch.channels.base import Notice
from ciwatch.clock import Clock, SystemClock
from ciwatch.config.models import AlertSettings, RouteSettings
from ciwatch.domain import RefState, Run, RunKey, Status
from ciwatch.errors import StoreError
from ciwatch.store.alerting import (
    Change,
    NewNotice,
    SilenceRow,
    apply_changes,
    list_silences,
    load_alerts,
)
from ciwatch.store.sql import SqlStore

log = logging.getLogger(__name__)

DashboardUrl = Callable[[str, str, str], str]


def route_channels(
    routes: Iterable[RouteSettings], event: str, source: str, project: str, ref: str
) -> list[str]:
    """The channels of every route matching the event and the source/project/ref globs, in
    the order routes and their channels are configured, each once."""
    found: list[str] = []
    for route in routes:
        if event not in route.events:
            continue
        if not any(fnmatchcase(source, glob) for glob in route.sources):
            continue
        if not any(fnmatchcase(project, glob) for glob in route.projects):
            continue
        if not any(fnmatchcase(ref, glob) for glob in route.refs):
            continue
        found.extend(name for name in route.channels if name not in found)
    return found


class AlertEngine:
    """Evaluates the alert rules over `store` with `settings` (timings, routes, channels)."""

    def __init__(
        self,
        store: SqlStore,
        settings: AlertSettings,
        clock: Clock | None = None,
        *,
        interval: float = 15.0,
        dashboard_url: DashboardUrl | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock or SystemClock()
        self.interval = interval
        self.dashboard_url = dashboard_url
        self.limits = Thresholds(
            stuck_after=settings.stuck_after,
            queued_after=settings.queued_after,
            repeat_interval=settings.repeat_interval,
        )

    async def _decisive(self, state: RefState) -> Run | None:
        if state.last_run.status is state.status:
            return state.last_run
        page = await self.store.history(
            source=state.source, project=state.project, ref=state.ref, status=state.status, limit=1
        )
        return page.runs[0] if page.runs else None

    async def _failing_jobs(self, run: Run) -> tuple[str, ...]:
        if run.status is not Status.FAILED:
            return ()
        jobs = await self.store.jobs_for(RunKey(run.source, run.project, run.run_id))
        return tuple(j.name for j in jobs if j.status is Status.FAILED and not j.allow_failure)

    async def decide(self, now: datetime) -> list[Decision]:
        """What `evaluate` would change at `now`, without writing anything."""
        states = await self.store.ref_states()
        stored: dict[Fingerprint, AlertRow] = {
            row.fingerprint: row for row in await load_alerts(self.store)
        }
        decisions: list[Decision] = []
        for state in states:
            decisive = None
            if rules.wants_decisive(state, stored, now, self.limits):
                decisive = await self._decisive(state)
            decisions.extend(rules.decide(state, stored, decisive, now, self.limits))
        return decisions

    async def _change(
        self, decision: Decision, now: datetime, silences: list[SilenceRow]
    ) -> Change:
        if decision.notify is None:
            return Change(decision, ())
        _rule, source, project, ref = decision.fingerprint
        event = decision.notify.value
        labels = {"source": source, "project": project, "ref": ref, "event": event}
        channels = route_channels(self.settings.routes, event, source, project, ref)
        if not channels or silenced(silences, labels, now):
            return Change(decision, ())
        notice = Notice(
            kind=event,
            source=source,
            project=project,
            ref=ref,
            run=decision.run,
            failing_jobs=await self._failing_jobs(decision.run),
            red_for=decision.red_for,
            flaky=decision.flaky,
            fingerprint=":".join(decision.fingerprint),
            dashboard_url=self.dashboard_url(source, project, ref) if self.dashboard_url else None,
        )
        payload = notice_to_payload(notice)
        # The compare-and-set token (the time of this notification) makes the key unique per
        # notification: a replica that lost the race would compute the same key.
        dedup = f"{':'.join(decision.fingerprint)}:{event}:{now.isoformat()}"
        due = now + self.settings.group_wait
        return Change(decision, [NewNotice(dedup, name, payload, due) for name in channels])

    async def evaluate(self) -> list[Change]:
        """One evaluation: decide, then write the alert changes and their outbox rows in one
        transaction. Returns the changes that this call applied (a change another evaluator
        made first is left out). Raises StoreError when the store fails (nothing half-written)."""
        now = self.clock.now()
        decisions = await self.decide(now)
        if not decisions:
            return []
        silences = await list_silences(self.store, active_at=now)
        changes = [await self._change(decision, now, silences) for decision in decisions]
        applied = await apply_changes(self.store, changes, now)
        for change in applied:
            d = change.decision
            log.info(
                "alert: %s %s notify=%s channels=%d",
                d.action,
                ":".join(d.fingerprint),
                d.notify.value if d.notify else "-",
                len(change.notices),
            )
        return applied

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate every `interval` seconds until `stop` is set; a store error is logged and
        the next tick tries again."""
        while not stop.is_set():
            try:
                await self.evaluate()
            except StoreError as exc:
                log.warning("alert evaluation failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)

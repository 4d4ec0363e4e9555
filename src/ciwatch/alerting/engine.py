"""The alert engine (docs/architecture.md#alerting): evaluate every project/ref, change alert state,
queue notifications in the outbox — the state changes and their outbox rows in one transaction.

`evaluate()` is level-based and idempotent: it reads the ref states and the stored alerts,
decides with `rules`, and writes each change with compare-and-set on the row it was decided
from, so a second evaluator (another replica, or this one after a restart) that raced it or
comes later changes nothing and queues nothing. `run(stop)` calls it for every ref every
`interval` seconds, which also evaluates the time-based rules (stuck, queued), and for the refs
this process changed as soon as they change.

Refs already red when this ciwatch first sees them (no `broken` alert row, red since before the
engine's first evaluation: `rules.colour_decision`) are announced per `alerts.on_start`:
`summary` queues their rows for each channel under one group, `START_GROUP`, whose window
slides (`NewNotice.settle`: refs first seen over several evaluations of the initial collection
join it) and which the delivery worker sends as one summary message; `each` as ordinary
`broken` notices; `none` not at all. Their alert rows are written in every case, so they
recover and repeat like any red ref.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any

from ciwatch.alerting import health, kinds, rules
from ciwatch.alerting.delivery import notice_to_payload
from ciwatch.alerting.people import People
from ciwatch.alerting.rules import AlertRow, Decision, Fingerprint, Thresholds
from ciwatch.alerting.silences import silenced
from ciwatch.channels.base import Notice
from ciwatch.clock import Clock, SystemClock
from ciwatch.config.durations import format_duration
from ciwatch.config.models import AlertSettings, RouteSettings
from ciwatch.domain import CommitRange, RefKey, RefState, Run, RunKey, Status
from ciwatch.errors import ProviderError, StoreError
from ciwatch.filters import Match
from ciwatch.providers.base import CommitRangeReader
from ciwatch.store.alerting import Change, NewNotice, SilenceRow
from ciwatch.store.base import Store
from ciwatch.store.reliability import DEFAULT_WINDOW, FlakyJob
from ciwatch.supervisor import Supervisor
from ciwatch.validation import loggable

log = logging.getLogger(__name__)

DashboardUrl = Callable[[str, str, str], str]

# The outbox group of the `on_start: summary` notices: one per channel, whatever the route.
START_GROUP = "already failing at start"
# How long a break waits for its provider to list the commits since green: past it the notice
# goes without the list (the compare link remains).
RANGE_TIMEOUT = 5.0


def route_channels(
    routes: Iterable[RouteSettings], event: str, source: str, project: str, ref: str
) -> dict[str, str]:
    """The channels of every route matching the event and the source/project/ref globs, in
    the order routes and their channels are configured, each once, with the label of the first
    route that named it (what a grouped message on that channel is "in")."""
    found: dict[str, str] = {}
    for route in routes:
        if route.after is not None:  # an escalation route: see `escalation_routes`
            continue
        if event not in route.events:
            continue
        if not any(fnmatchcase(source, glob) for glob in route.sources):
            continue
        if not any(fnmatchcase(project, glob) for glob in route.projects):
            continue
        if not any(fnmatchcase(ref, glob) for glob in route.refs):
            continue
        for name in route.channels:
            found.setdefault(name, route.label)
    return found


def _route_matches(route: RouteSettings, source: str, project: str, ref: str) -> bool:
    return (
        any(fnmatchcase(source, glob) for glob in route.sources)
        and any(fnmatchcase(project, glob) for glob in route.projects)
        and any(fnmatchcase(ref, glob) for glob in route.refs)
    )


def escalation_routes(
    routes: Sequence[RouteSettings], source: str, project: str, ref: str
) -> list[tuple[int, timedelta]]:
    """The escalation routes (those with `after`) matching the ref and selecting a kind that
    escalates (`broken` or `still_failing`, `kinds.ESCALATING`), as (index in `routes`, after)."""
    return [
        (index, route.after)
        for index, route in enumerate(routes)
        if route.after is not None
        and kinds.ESCALATING & set(route.events)
        and _route_matches(route, source, project, ref)
    ]


def likely_flaky_note(
    failing: Sequence[str], flaky: Mapping[str, FlakyJob], window: timedelta
) -> str | None:
    """`likely flaky: test failed 4 times on a sha that later passed this week` when every
    failing job is known-flaky (it failed and then passed on one SHA within the window), else
    None."""
    if not failing or any(name not in flaky for name in failing):
        return None
    period = (
        "this week" if window <= timedelta(days=7) else f"in the last {format_duration(window)}"
    )
    parts = []
    for name in dict.fromkeys(failing):
        n = flaky[name].flaky_runs
        times = "once" if n == 1 else f"{n} times"
        parts.append(f"{name} failed {times} on a sha that later passed {period}")
    return "likely flaky: " + "; ".join(parts)


class AlertEngine:
    """Evaluates the alert rules over `store` with `settings` (timings, routes, channels)."""

    def __init__(
        self,
        store: Store,
        settings: AlertSettings,
        clock: Clock | None = None,
        *,
        interval: float = 15.0,
        dashboard_url: DashboardUrl | None = None,
        on_queued: Callable[[set[str]], None] | None = None,
        supervisor: Supervisor | None = None,
        people: People | None = None,
        flaky_window: timedelta = DEFAULT_WINDOW,
        commit_ranges: Mapping[str, CommitRangeReader] | None = None,
        range_timeout: float = RANGE_TIMEOUT,
    ) -> None:
        self.store = store
        # The sources whose provider lists the commits between two runs (by source name).
        self.commit_ranges = dict(commit_ranges or {})
        self.range_timeout = range_timeout
        # Over which a failing job counts as known-flaky (`flaky.window`, alerts.flaky).
        self.flaky_window = flaky_window
        self.settings = settings
        # `people:`: whom a broken notice mentions.
        self.people = people or People()
        self.clock = clock or SystemClock()
        self.interval = interval
        self.dashboard_url = dashboard_url
        # Told the channels an evaluation queued rows for (the delivery workers' `wake`).
        self.on_queued = on_queued
        self.supervisor = supervisor
        self.evaluations = 0  # how many evaluations ran (full or of some refs)
        # The time of this engine's first evaluation: a ref red since before it, and never
        # alerted, was already failing when ciwatch first saw it.
        self.started: datetime | None = None
        self.limits = Thresholds(
            stuck_after=settings.stuck_after,
            queued_after=settings.queued_after,
            repeat_interval=settings.repeat_interval,
        )

    async def _decisive(self, states: Sequence[RefState]) -> dict[RefKey, Run]:
        """The decisive run (the newest that ended success or failed) of each of `states`:
        the newest run itself when it is, else one read per colour for all the others."""
        found: dict[RefKey, Run] = {}
        asked: dict[Status, list[RefKey]] = {}
        for state in states:
            if state.last_run.status is state.status:
                found[state.key] = state.last_run
            else:
                asked.setdefault(state.status, []).append(state.key)
        for status, keys in asked.items():
            found.update(await self.store.newest_runs(keys, status))
        return found

    async def decide(self, now: datetime, refs: Sequence[RefKey] | None = None) -> list[Decision]:
        """What `evaluate` would change at `now` (for every ref, or only `refs`), without
        writing anything."""
        decisions, _silences = await self._decide(now, refs)
        return decisions

    async def _decide(
        self, now: datetime, refs: Sequence[RefKey] | None
    ) -> tuple[list[Decision], list[SilenceRow]]:
        inputs = await self.store.evaluation_inputs(
            now,
            running_before=now - self.limits.stuck_after - rules.CLOCK_SKEW,
            queued_before=now - self.limits.queued_after - rules.CLOCK_SKEW,
            refs=refs,
        )
        stored: dict[Fingerprint, AlertRow] = {row.fingerprint: row for row in inputs.alerts}
        waiting: dict[RefKey, list[Run]] = {}
        for run in inputs.waiting:
            waiting.setdefault(run.ref_key, []).append(run)
        decisions: list[Decision] = []
        decisive = await self._decisive(
            [s for s in inputs.states if rules.wants_decisive(s, stored, now, self.limits)]
        )
        for state in inputs.states:
            key = RefKey(state.source, state.project, state.ref)
            decisions.extend(
                kinds.decide(
                    state,
                    stored,
                    decisive.get(key),
                    now,
                    self.limits,
                    waiting.get(key, []),
                    started=self.started or now,
                )
            )
            escalations = escalation_routes(self.settings.routes, *key)
            if escalations:
                decisions.extend(rules.escalation_decisions(state, stored, now, escalations))
        if refs is None:
            decisions.extend(await self._health_decisions(now, stored))
        return decisions, inputs.silences

    def _change(
        self,
        decision: Decision,
        now: datetime,
        silences: list[SilenceRow],
        failing: Mapping[RunKey, tuple[str, ...]],
        greens: Mapping[RunKey, str] | None = None,
        flaky: Mapping[tuple[str, str], Mapping[str, FlakyJob]] | None = None,
        ranges: Mapping[RunKey, CommitRange] | None = None,
    ) -> Change:
        if decision.notify is None:
            return Change(decision, ())
        rule, source, project, ref = decision.fingerprint
        event = decision.notify.value
        labels = {"source": source, "project": project, "ref": ref, "event": event}
        # The recovery of an `unhealthy` alert goes wherever the alert went.
        routed = kinds.route_event(event)
        if rule.startswith(rules.ESCALATED + "-"):
            route = self.settings.routes[int(decision.payload["route"])]
            channels = dict.fromkeys(route.channels, route.label)
        else:
            channels = route_channels(self.settings.routes, routed, source, project, ref)
        # A failing channel is told about itself by the others only.
        channels.pop(decision.payload.get("channel", ""), None)
        if not channels or silenced(silences, labels, now):
            return Change(decision, ())
        run = decision.run
        if run is None:
            return self._health_change(decision, event, now, channels)
        on_start = self.settings.on_start if decision.at_start else "each"
        if on_start == "none":
            # Recorded (and `last_notified`, so the repeat waits its interval), never sent.
            return Change(decision, ())
        if on_start == "summary":
            channels = dict.fromkeys(channels, START_GROUP)
        jobs = failing.get(run.key, ()) if run.status is Status.FAILED else ()
        found = (ranges or {}).get(run.key)
        note = None
        if decision.notify in kinds.FLAKY_NOTED and flaky is not None:
            note = likely_flaky_note(jobs, flaky.get((source, project), {}), self.flaky_window)
        if note is not None and self.settings.flaky == "mute":
            # Recorded (it recovers and repeats as usual), never sent.
            return Change(decision, ())
        notice = Notice(
            kind=event,
            source=source,
            project=project,
            ref=ref,
            run=run,
            failing_jobs=jobs,
            red_for=decision.red_for,
            flaky=decision.flaky,
            likely_flaky=note,
            flaky_label=note is not None and self.settings.flaky == "label",
            fingerprint=":".join(decision.fingerprint),
            dashboard_url=self.dashboard_url(source, project, ref) if self.dashboard_url else None,
            at_start=on_start == "summary",
            green_sha=(greens or {}).get(run.key),
            commit_range=found,
            people=self.people.of(run, found) if event in kinds.MENTIONING else (),
        )
        return self._queued(decision, notice, now, channels, settle=on_start == "summary")

    async def _last_greens(self, decisions: Sequence[Decision]) -> dict[RunKey, Run]:
        """The last green run of each ref that broke (its SHA starts the range of commits
        that broke it): one read for all the broken refs, none without one. A red ref's newest
        success is older than the run that broke it, by definition."""
        broken = [
            d.run for d in decisions if d.notify in kinds.WITH_LAST_GREEN and d.run is not None
        ]
        if not broken:
            return {}
        greens = await self.store.newest_runs([run.ref_key for run in broken], Status.SUCCESS)
        found: dict[RunKey, Run] = {}
        for run in broken:
            green = greens.get(run.ref_key)
            if green is not None and green.sha and green.sha != run.sha:
                found[run.key] = green
        return found

    async def _ranges(
        self,
        decisions: Sequence[Decision],
        greens: Mapping[RunKey, Run],
        silences: Sequence[SilenceRow],
        now: datetime,
    ) -> dict[RunKey, CommitRange]:
        """The commits since green of each break whose source lists them
        (`CommitRangeReader`) and that a route sends, unsilenced: one call per break (not for
        the refs already red at start, unless `on_start: each` announces them one by one),
        none for any other notice, side by side, each within `range_timeout`. A provider error
        or a timeout leaves that range out (logged): the notice still goes, with its compare
        link."""
        asks: dict[RunKey, tuple[CommitRangeReader, Run, Run]] = {}
        for d in decisions:
            run = d.run
            if run is None or d.notify not in kinds.WITH_LAST_GREEN:
                continue
            if d.at_start and self.settings.on_start != "each":
                continue  # summarised, or not sent
            green = greens.get(run.key)
            reader = self.commit_ranges.get(run.source)
            if green is None or reader is None or not run.sha:
                continue
            _rule, source, project, ref = d.fingerprint
            labels = {"source": source, "project": project, "ref": ref, "event": d.notify.value}
            routed = route_channels(
                self.settings.routes, kinds.route_event(d.notify.value), source, project, ref
            )
            if routed and not silenced(silences, labels, now):
                asks[run.key] = (reader, green, run)  # a notice some channel will get
        if not asks:
            return {}
        answers = await asyncio.gather(*(self._range(*ask) for ask in asks.values()))
        return {key: found for key, found in zip(asks, answers, strict=True) if found}

    async def _range(
        self, reader: CommitRangeReader, green: Run, failing: Run
    ) -> CommitRange | None:
        try:
            async with asyncio.timeout(self.range_timeout):
                return await reader.commits_between(green, failing)
        except (ProviderError, TimeoutError) as exc:
            log.warning(
                "commits since green of %s/%s %s not listed: %s",
                loggable(failing.source),
                loggable(failing.project),
                loggable(failing.ref),
                str(exc) or "timed out",
            )
            return None
        except Exception as exc:
            # A bug (a parser's, say) must not hold the notice back, evaluation after
            # evaluation: it goes without the list, and the failure is counted.
            what = f"commits since green of {loggable(failing.source)}/{loggable(failing.project)}"
            if self.supervisor is not None:
                self.supervisor.item_failed("alert-engine", what, exc)
            else:
                log.exception("%s failed unexpectedly", what)
            return None

    async def _keep_ranges(
        self, applied: Sequence[Change], ranges: Mapping[RunKey, CommitRange]
    ) -> None:
        """Store the ranges of the breaks this evaluation notified on their failing runs
        (the project page shows them). A store error is logged: the notices are queued."""
        for change in applied:
            run = change.decision.run
            found = ranges.get(run.key) if run is not None else None
            if run is None or found is None or not change.notices:
                continue
            try:
                await self.store.set_commit_range(run.key, found)
            except StoreError as exc:
                log.warning(
                    "commits since green of %s/%s #%s not stored: %s",
                    loggable(run.source),
                    loggable(run.project),
                    loggable(run.run_id),
                    exc,
                )

    def _queued(
        self,
        decision: Decision,
        notice: Notice,
        now: datetime,
        channels: Mapping[str, str],
        *,
        settle: bool = False,
    ) -> Change:
        """The change with `notice` queued for each of `channels` (name → group)."""
        payload = notice_to_payload(notice)
        # The compare-and-set token (the time of this notification) makes the key unique per
        # notification: a replica that lost the race would compute the same key.
        dedup = f"{':'.join(decision.fingerprint)}:{notice.kind}:{now.isoformat()}"
        due = now + self.settings.group_wait
        return Change(
            decision,
            [
                NewNotice(dedup, name, payload, due, group, settle=settle)
                for name, group in channels.items()
            ],
        )

    def _health_change(
        self, decision: Decision, event: str, now: datetime, channels: dict[str, str]
    ) -> Change:
        _rule, source, project, ref = decision.fingerprint
        notice = Notice(
            kind=event,
            source=source,
            project=project,
            ref=ref,
            run=None,
            red_for=decision.red_for,
            fingerprint=":".join(decision.fingerprint),
            detail=decision.payload.get("error"),
        )
        return self._queued(decision, notice, now, channels)

    async def _health_decisions(
        self, now: datetime, stored: Mapping[Fingerprint, AlertRow]
    ) -> list[Decision]:
        """The `unhealthy` alerts of every target, discovery and channel (full evaluations)."""
        conditions = health.target_conditions(await self.store.target_states())
        channels = [channel.name for channel in self.settings.channels]
        troubles = await self.store.channel_troubles(channels)
        conditions += health.channel_conditions(
            health.ChannelFailure(t.channel, t.since, t.error or "deliveries fail")
            for t in troubles
        )
        return health.health_decisions(
            conditions,
            stored,
            now,
            unhealthy_after=self.settings.unhealthy_after,
            repeat_interval=self.settings.repeat_interval,
        )

    async def evaluate(self, refs: Collection[RefKey] | None = None) -> list[Change]:
        """One evaluation (of every ref, or only of `refs`): decide, then write the alert
        changes and their outbox rows in one transaction. Returns the changes that this call
        applied (a change another evaluator made first is left out). Raises StoreError when the
        store fails (nothing half-written)."""
        now = self.clock.now()
        self.evaluations += 1
        if self.started is None:
            self.started = now
        decisions, silences = await self._decide(now, sorted(refs) if refs is not None else None)
        if not decisions:
            return []
        failed = [
            d.run.key
            for d in decisions
            if d.notify and d.run is not None and d.run.status is Status.FAILED
        ]
        failing = await self.store.failing_jobs_of(failed)
        greens = await self._last_greens(decisions)
        ranges = await self._ranges(decisions, greens, silences, now)
        flaky = await self._known_flaky(now, decisions, failing)
        shas = {key: green.sha for key, green in greens.items() if green.sha}
        changes = [
            self._change(decision, now, silences, failing, greens=shas, flaky=flaky, ranges=ranges)
            for decision in decisions
        ]
        applied = await self.store.apply_changes(changes, now)
        if ranges:
            await self._keep_ranges(applied, ranges)
        for change in applied:
            d = change.decision
            log.info(
                "alert: %s %s notify=%s channels=%d",
                d.action,
                ":".join(d.fingerprint),
                d.notify.value if d.notify else "-",
                len(change.notices),
            )
        queued = {notice.channel for change in applied for notice in change.notices}
        if queued and self.on_queued is not None:
            self.on_queued(queued)
        return applied

    async def _known_flaky(
        self,
        now: datetime,
        decisions: Sequence[Decision],
        failing: Mapping[RunKey, tuple[str, ...]],
    ) -> dict[tuple[str, str], dict[str, FlakyJob]]:
        """The flaky jobs (within `flaky_window`) of the projects of the breaks that have
        failing jobs: one windowed query for all of them, only when something broke."""
        projects = sorted(
            {
                (d.run.source, d.run.project)
                for d in decisions
                if d.notify in kinds.FLAKY_NOTED and d.run is not None and failing.get(d.run.key)
            }
        )
        if not projects:
            return {}

        found: dict[tuple[str, str], dict[str, FlakyJob]] = {key: {} for key in projects}
        listed = await self.store.flaky_jobs(
            now=now,
            window=self.flaky_window,
            source=Match(values=tuple(sorted({source for source, _ in projects}))),
            project=Match(values=tuple(sorted({project for _, project in projects}))),
        )
        for job in listed:
            # Both filters at once may match a (source, project) pair that did not break.
            kept = found.get((job.source, job.project))
            if kept is not None:
                kept.setdefault(job.job, job)
        return found

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate until `stop` is set: every ref every `interval` seconds (which is what fires
        the time-based rules, and picks up other replicas' writes), and meanwhile, at once, the
        refs this process's store writes changed (`RunStore.changes`). The full evaluation runs
        beside the quick ones rather than holding them up (over thousands of refs it takes a
        while); both are compare-and-set, so neither can notify what the other did. A store
        error is logged, and the refs it concerned are evaluated again on the next round."""
        loop = asyncio.get_running_loop()
        changes = self.store.changes.subscribe()
        stopping = asyncio.ensure_future(stop.wait())
        next_full = loop.time()
        full: asyncio.Task[bool] | None = None
        try:
            while not stop.is_set():
                if loop.time() >= next_full and (full is None or full.done()):
                    next_full = loop.time() + self.interval
                    full = asyncio.create_task(self._guarded(None), name="alert-full-evaluation")
                if refs := changes.take():
                    if not await self._guarded(refs):
                        changes.add(refs)
                        await asyncio.wait([stopping], timeout=min(1.0, self.interval))
                    continue
                changed = asyncio.ensure_future(changes.wait())
                waits: list[asyncio.Future[Any]] = [stopping, changed]
                timeout: float | None = max(0.0, next_full - loop.time())
                if full is not None and not full.done():
                    # A full evaluation longer than `interval`: the next starts when it ends.
                    waits.append(full)
                    timeout = None if timeout == 0.0 else timeout
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                changed.cancel()
        finally:
            stopping.cancel()
            self.store.changes.unsubscribe(changes)
            if full is not None:
                await asyncio.wait([full])  # let it finish: its changes are one transaction

    async def _guarded(self, refs: Collection[RefKey] | None) -> bool:
        try:
            await self.evaluate(refs)
        except StoreError as exc:
            log.warning("alert evaluation failed: %s", exc)
            return False
        except Exception as exc:
            # A bug must not stop alerting for good, nor vanish inside the background task of
            # the full evaluation: logged with its traceback, counted, and the next round tries
            # again.
            what = "the full evaluation" if refs is None else f"the evaluation of {len(refs)} refs"
            if self.supervisor is not None:
                self.supervisor.item_failed("alert-engine", what, exc)
            else:
                log.exception("alert evaluation crashed")
            return False
        return True

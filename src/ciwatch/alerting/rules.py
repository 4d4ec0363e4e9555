"""The alert rules of docs/architecture.md#state-machine-and-time, #alerting as pure functions: from
a project/ref's state, the alert rows already stored for it and the time, decide what changes and
what to notify.

Level-based: a decision depends on the current state, never on having seen a particular update,
so any interleaving or duplication of run updates and evaluations gives at most one `broken`
notification per red period, and a restart decides nothing new.

- **broken** (fingerprint rule `broken`): the ref is red (its decisive run failed) and no
  `broken` alert is firing → fire, notify `broken`. A ref with no `broken` alert row at all
  whose red period began before `started` (when this ciwatch began evaluating) was already
  failing when ciwatch first saw it: the decision is marked `at_start` (the engine announces
  those per `alerts.on_start`). While firing, notify `still_failing` once
  every `repeat_interval`. When the ref turns green → resolve, notify `recovered` once, with how
  long it was red and `flaky` when the green run is on the failing run's SHA.
- **stuck** / **queued**: a run of the ref (any of them, not only the newest) has been running
  longer than `stuck_after` / queued longer than `queued_after` → fire and notify; repeat every
  `repeat_interval` while it lasts; resolve silently when it clears.

Each ref rule (`broken_rule`, `stuck_rule`, `queued_rule`) takes the `RuleInputs` of one ref and
returns its decisions; `alerting/kinds.py` lists them with the kind they fire, and its `decide`
runs them in that order (the list and the loop over it live there, since the list names these
functions: this module does not import `kinds`). Escalation (`escalation_decisions`) is not a
kind: a route option that sends `still_failing`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from ciwatch.domain import AlertEventKind, Job, RefState, Run, Status

# A provider's clock may run ahead of ours; time-based rules wait this much longer so a skewed
# start time never fires an alert early.
CLOCK_SKEW = timedelta(seconds=30)

FIRING = "firing"
RESOLVED = "resolved"

Fingerprint = tuple[str, str, str, str]
Action = Literal["fire", "repeat", "resolve"]


@dataclass(frozen=True)
class Thresholds:
    """The timings of `AlertSettings` the rules need."""

    stuck_after: timedelta
    queued_after: timedelta
    repeat_interval: timedelta


@dataclass(frozen=True)
class AlertRow:
    """One stored alert (table `alerts`): the state of a fingerprint."""

    rule: str
    source: str
    project: str
    ref: str
    state: str
    first_seen: datetime
    last_seen: datetime
    last_notified: datetime | None
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def fingerprint(self) -> Fingerprint:
        return (self.rule, self.source, self.project, self.ref)

    @property
    def firing(self) -> bool:
        return self.state == FIRING


@dataclass(frozen=True)
class Decision:
    """A change of one alert. `previous` is the row it was decided from (None: no row yet); the
    store applies the change only if the row is still that one (compare-and-set). `notify` is the
    event to send, None for a silent change; `run` is the run the notice is about."""

    fingerprint: Fingerprint
    action: Action
    previous: AlertRow | None
    notify: AlertEventKind | None
    run: Run | None  # None for an `unhealthy` alert (alerting/health.py)
    payload: dict[str, Any]
    red_for: timedelta | None = None
    flaky: bool = False
    # A `broken` fire for a ref already red when ciwatch first saw it (see the module doc).
    at_start: bool = False

    @property
    def new_state(self) -> str:
        return RESOLVED if self.action == "resolve" else FIRING


def fingerprint(rule: AlertEventKind, state: RefState) -> Fingerprint:
    return (rule.value, state.source, state.project, state.ref)


def _firing(alerts: dict[Fingerprint, AlertRow], key: Fingerprint) -> AlertRow | None:
    row = alerts.get(key)
    return row if row is not None and row.firing else None


def _repeat_due(row: AlertRow, now: datetime, repeat_interval: timedelta) -> bool:
    return row.last_notified is None or now - row.last_notified >= repeat_interval


def wants_decisive(
    state: RefState, alerts: dict[Fingerprint, AlertRow], now: datetime, limits: Thresholds
) -> bool:
    """Whether `kinds.decide` needs the ref's decisive run (the newest success/failed one) for this
    state: only when the colour alert may change or repeat, so the caller can fetch it lazily."""
    row = _firing(alerts, fingerprint(AlertEventKind.BROKEN, state))
    if state.status is Status.FAILED:
        return row is None or _repeat_due(row, now, limits.repeat_interval)
    return state.status is Status.SUCCESS and row is not None


def colour_decision(
    state: RefState,
    alerts: dict[Fingerprint, AlertRow],
    decisive: Run | None,
    now: datetime,
    limits: Thresholds,
    started: datetime | None = None,
) -> Decision | None:
    """The broken / still_failing / recovered decision for one ref (see the module doc).
    `decisive` is the ref's newest run that ended success or failed (None when unknown);
    `started` is when this ciwatch began evaluating (None: no fire is `at_start`)."""
    key = fingerprint(AlertEventKind.BROKEN, state)
    row = _firing(alerts, key)
    previous = alerts.get(key)
    if decisive is None or decisive.status is not state.status:
        return None
    if state.status is Status.FAILED:
        payload = {
            "run_id": decisive.run_id,
            "sha": decisive.sha,
            "red_since": (state.since or now).isoformat(),
        }
        if row is None:
            red_since = state.since or decisive.finished_at or decisive.updated_at
            at_start = previous is None and started is not None and red_since < started
            return Decision(
                key,
                "fire",
                previous,
                AlertEventKind.BROKEN,
                decisive,
                payload,
                at_start=at_start,
            )
        if not _repeat_due(row, now, limits.repeat_interval):
            return None
        payload["red_since"] = row.payload.get("red_since", payload["red_since"])
        return Decision(
            key,
            "repeat",
            row,
            AlertEventKind.STILL_FAILING,
            decisive,
            payload,
            red_for=now - _red_since(row),
        )
    if state.status is Status.SUCCESS and row is not None:
        green_at = decisive.finished_at or decisive.updated_at
        red_for = max(green_at - _red_since(row), timedelta(0))
        flaky = decisive.sha is not None and decisive.sha == row.payload.get("sha")
        return Decision(
            key,
            "resolve",
            row,
            AlertEventKind.RECOVERED,
            decisive,
            {**row.payload, "recovered_by": decisive.run_id},
            red_for=red_for,
            flaky=flaky,
        )
    return None


def _red_since(row: AlertRow) -> datetime:
    value = row.payload.get("red_since")
    return datetime.fromisoformat(value) if isinstance(value, str) else row.first_seen


def _waiting(
    run: Run, now: datetime, limits: Thresholds
) -> tuple[AlertEventKind, timedelta] | None:
    """The time-based condition `run` is in, with how long it has lasted."""
    if run.status is Status.RUNNING:
        began = run.started_at or run.created_at or run.updated_at
        lasted = now - began
        if lasted > limits.stuck_after + CLOCK_SKEW:
            return AlertEventKind.STUCK, lasted
    elif run.status is Status.QUEUED:
        began = run.created_at or run.updated_at
        lasted = now - began
        if lasted > limits.queued_after + CLOCK_SKEW:
            return AlertEventKind.QUEUED, lasted
    return None


def _pick(
    rule: AlertEventKind,
    candidates: Sequence[Run],
    row: AlertRow | None,
    now: datetime,
    limits: Thresholds,
) -> tuple[Run, timedelta] | None:
    """The run in condition `rule`: the one the firing alert is about while it lasts (so the
    alert stays one alert), else the one waiting longest."""
    found = []
    for run in candidates:
        condition = _waiting(run, now, limits)
        if condition is not None and condition[0] is rule:
            if row is not None and row.payload.get("run_id") == run.run_id:
                return run, condition[1]
            found.append((run, condition[1]))
    return max(found, key=lambda item: item[1]) if found else None


def waiting_decisions(
    rule: AlertEventKind,
    state: RefState,
    alerts: dict[Fingerprint, AlertRow],
    now: datetime,
    limits: Thresholds,
    waiting: Sequence[Run] | None = None,
) -> list[Decision]:
    """The decisions of one time-based rule (`stuck` or `queued`) for one ref. `waiting` holds
    the ref's runs that may be in the condition (any of its queued or running runs, see
    `store.alerting.waiting_runs_in`); None looks at the ref's newest run only."""
    candidates = [state.last_run] if waiting is None else list(waiting)
    key = fingerprint(rule, state)
    row = _firing(alerts, key)
    picked = _pick(rule, candidates, row, now, limits)
    if picked is not None:
        run, lasted = picked
        payload = {"run_id": run.run_id}
        if row is None:
            return [Decision(key, "fire", alerts.get(key), rule, run, payload, red_for=lasted)]
        if row.payload.get("run_id") != run.run_id:
            # Another run is now the one waiting: a new alert, not a repeat of the old one.
            return [Decision(key, "fire", row, rule, run, payload, red_for=lasted)]
        if _repeat_due(row, now, limits.repeat_interval):
            return [Decision(key, "repeat", row, rule, run, payload, red_for=lasted)]
        return []
    if row is not None:
        return [Decision(key, "resolve", row, None, state.last_run, dict(row.payload))]
    return []


# -- the rules as `alerting/kinds.py` lists them ------------------------------------------------


@dataclass(frozen=True)
class RuleInputs:
    """What a ref rule reads: the ref's state, the alert rows stored for it, its decisive run
    (the newest success/failed one; None when unknown or not fetched, see `wants_decisive`),
    the time, the thresholds, the ref's queued or running runs (None: its newest run only) and
    when this ciwatch began evaluating (None: no fire is `at_start`)."""

    state: RefState
    alerts: dict[Fingerprint, AlertRow]
    decisive: Run | None
    now: datetime
    limits: Thresholds
    waiting: Sequence[Run] | None = None
    started: datetime | None = None


# A ref rule: the decisions it makes for one ref (an `AlertKind.rule`).
Rule = Callable[[RuleInputs], list[Decision]]


def broken_rule(inputs: RuleInputs) -> list[Decision]:
    """The rule of `broken` (with its repeat `still_failing` and its recovery `recovered`)."""
    decision = colour_decision(
        inputs.state, inputs.alerts, inputs.decisive, inputs.now, inputs.limits, inputs.started
    )
    return [] if decision is None else [decision]


def stuck_rule(inputs: RuleInputs) -> list[Decision]:
    """The rule of `stuck`: a run of the ref running longer than `stuck_after`."""
    state, alerts, now, limits = inputs.state, inputs.alerts, inputs.now, inputs.limits
    return waiting_decisions(AlertEventKind.STUCK, state, alerts, now, limits, inputs.waiting)


def queued_rule(inputs: RuleInputs) -> list[Decision]:
    """The rule of `queued`: a run of the ref queued longer than `queued_after`."""
    state, alerts, now, limits = inputs.state, inputs.alerts, inputs.now, inputs.limits
    return waiting_decisions(AlertEventKind.QUEUED, state, alerts, now, limits, inputs.waiting)


def failing_jobs(jobs: Iterable[Job]) -> tuple[str, ...]:
    """The names of the jobs that failed a run (allowed failures left out), in their order."""
    return tuple(job.name for job in jobs if job.status is Status.FAILED and not job.allow_failure)


def applied(decision: Decision, now: datetime) -> AlertRow:
    """The alert row after `decision` is applied at `now` (what the store writes)."""
    rule, source, project, ref = decision.fingerprint
    previous = decision.previous
    fresh = decision.action == "fire" and (previous is None or not previous.firing)
    first_seen = now if fresh or previous is None else previous.first_seen
    notified = (
        now if decision.notify is not None else (previous.last_notified if previous else None)
    )
    return AlertRow(
        rule,
        source,
        project,
        ref,
        decision.new_state,
        first_seen,
        now,
        notified,
        decision.payload,
    )


# -- escalation (alerts.routes[].after) -------------------------------------------------------

ESCALATED = "escalated"


def escalation_rule(route_index: int) -> str:
    """The fingerprint rule of the escalation of route `route_index` (its place in
    `alerts.routes`): one alert row per ref and escalation route."""
    return f"{ESCALATED}-{route_index}"


def escalation_decisions(
    state: RefState,
    alerts: dict[Fingerprint, AlertRow],
    now: datetime,
    escalations: Sequence[tuple[int, timedelta]],
) -> list[Decision]:
    """For each escalation route (index, `after`) matching the ref: fire once when the ref has
    been red for `after` (a `still_failing` notice to that route only), never repeat within the
    red period, resolve silently when the ref turns green. The red period is told by its start
    (`red_since` in the row): a new red period after a green one fires again. Level-based and
    compare-and-set like the other rules, so a restart or a second replica sends nothing twice."""
    decisions: list[Decision] = []
    since = state.failing_since
    for index, after in escalations:
        key = (escalation_rule(index), state.source, state.project, state.ref)
        row = _firing(alerts, key)
        if since is not None and now - since >= after + CLOCK_SKEW:
            if row is not None and row.payload.get("red_since") == since.isoformat():
                continue
            payload = {
                "run_id": state.last_run.run_id,
                "red_since": since.isoformat(),
                "route": index,
            }
            decisions.append(
                Decision(
                    key,
                    "fire",
                    alerts.get(key),
                    AlertEventKind.STILL_FAILING,
                    state.last_run,
                    payload,
                    red_for=now - since,
                )
            )
        elif since is None and row is not None:
            decisions.append(Decision(key, "resolve", row, None, state.last_run, dict(row.payload)))
    return decisions

"""The alert kinds (docs/alerting.md#events-and-rules): one `AlertKind` entry per event in
`KINDS`, with its rule, its routing and its wording. Every other list of kinds is derived from
`KINDS`: the notice kinds a channel accepts (`channels.base.NOTICE_KINDS`), the wording tables of
`channels/render.py`, the default `events` of a route, the route event a kind is sent under, the
events an escalation route selects, the dashboard's icons and the API's field descriptions.
`tests/alerting/test_kinds.py` checks that `domain.AlertEventKind` (the names stored in the
database and written in `events:`), the docs and the config agree with it.

A kind either has a ref `rule` (`alerting/rules.py`, run by `decide` in the order of `KINDS`), is
sent by another kind's alert (`sent_by`: its repeat or its recovery), or is about ciwatch's own
health (`health`, decided by `alerting/health.py` from the target states and the outbox).

Not kinds: escalation (a route option, `alerts.routes[].after`, that sends `still_failing`;
`rules.escalation_decisions`) and the likely-flaky label (a note on a `broken` notice, added by
the engine). `test` (`ciwatch alerts test`) is a notice kind with wording only (`TEST`).

Pure: imports the standard library, `domain` and `alerting.rules` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from ciwatch.alerting import rules
from ciwatch.alerting.rules import AlertRow, Decision, Fingerprint, Rule, RuleInputs, Thresholds
from ciwatch.domain import AlertEventKind, RefState, Run

Kind = AlertEventKind


@dataclass(frozen=True)
class Wording:
    """How a notice of the kind reads (channels/render.py)."""

    emoji: str
    word: str  # the headline (`🔴 Broken: group/app on main`); a tally lower-cases it
    group_phrase: str  # a grouped message of one kind: `🔴 5 refs broke in group/*`
    severity: int  # 0 is the most severe: a mixed group takes its most severe notice's emoji
    elapsed_label: str | None = None  # the line of `red_for` (`Red for 2h 5m`); None: none
    glyph: str = ""  # the dashboard's icon beside the colour


@dataclass(frozen=True)
class AlertKind:
    """One alert event: its rule, its routing and its wording."""

    name: AlertEventKind
    wording: Wording
    # The ref rule that fires it (an alert of fingerprint rule `name`); None: see `sent_by`,
    # `health`.
    rule: Rule | None = None
    # The kind whose alert sends it (as its repeat or its recovery); None: it fires its own.
    sent_by: AlertEventKind | None = None
    # The notice its alert sends when it repeats (every `repeat_interval`); None: never.
    repeats_as: AlertEventKind | None = None
    # The notice its alert sends when it clears; None: it resolves silently.
    resolves_as: AlertEventKind | None = None
    # The route event that selects it; None: its own name.
    routed_as: AlertEventKind | None = None
    # About ciwatch's own parts (alerting/health.py): no run; a subject and an error instead.
    health: bool = False
    # Selected by an escalation route (`after`) whose `events` name it.
    escalates: bool = False
    # In a route's `events` when the route does not list them.
    default_event: bool = True
    # What the engine adds to its notices (a run that broke a ref): the likely-flaky note
    # (`alerts.flaky`, docs/alerting.md#likely-flaky), the people to mention (`people:`), and
    # the SHA of the ref's last green run (the range of commits that broke it).
    flaky_note: bool = False
    mentions: bool = False
    last_green: bool = False

    @property
    def route_event(self) -> AlertEventKind:
        return self.routed_as or self.name

    @property
    def fires(self) -> bool:
        """It has alert rows of its own (fingerprint rule `name`)."""
        return self.sent_by is None


KINDS: tuple[AlertKind, ...] = (
    AlertKind(
        Kind.BROKEN,
        Wording("🔴", "Broken", "refs broke", 0, glyph="✘"),
        rule=rules.broken_rule,
        repeats_as=Kind.STILL_FAILING,
        resolves_as=Kind.RECOVERED,
        escalates=True,
        flaky_note=True,
        mentions=True,
        last_green=True,
    ),
    AlertKind(
        Kind.STILL_FAILING,
        Wording("❌", "Still failing", "refs still failing", 2, glyph="✘"),
        sent_by=Kind.BROKEN,
        escalates=True,
    ),
    AlertKind(
        Kind.RECOVERED,
        Wording("✅", "Recovered", "refs recovered", 5, "Red for", glyph="✔"),
        sent_by=Kind.BROKEN,
    ),
    AlertKind(
        Kind.STUCK,
        Wording("⏳", "Stuck", "runs stuck", 3, "Running for", glyph="⏱"),
        rule=rules.stuck_rule,
        repeats_as=Kind.STUCK,
    ),
    AlertKind(
        Kind.QUEUED,
        Wording("🕒", "Queued too long", "runs queued too long", 4, "Queued for", glyph="…"),
        rule=rules.queued_rule,
        repeats_as=Kind.QUEUED,
    ),
    AlertKind(
        Kind.UNHEALTHY,
        Wording("⚠️", "Unhealthy", "parts of ciwatch unhealthy", 1, "Unhealthy for", glyph="⚠"),
        repeats_as=Kind.UNHEALTHY,
        resolves_as=Kind.HEALTHY,
        health=True,
    ),
    AlertKind(
        Kind.HEALTHY,
        Wording(
            "🟢", "Healthy again", "parts of ciwatch healthy again", 6, "Was unhealthy for", "✔"
        ),
        sent_by=Kind.UNHEALTHY,
        routed_as=Kind.UNHEALTHY,
        health=True,
    ),
)

# `ciwatch alerts test`: a notice kind, not an alert event.
TEST = "test"
TEST_WORDING = Wording("🔔", "Test", "test messages", 7)

BY_NAME: dict[str, AlertKind] = {kind.name.value: kind for kind in KINDS}
# Every notice kind's wording, in the order of `KINDS`, then `test`.
WORDING: dict[str, Wording] = {name: kind.wording for name, kind in BY_NAME.items()}
WORDING[TEST] = TEST_WORDING
RULES: tuple[Rule, ...] = tuple(kind.rule for kind in KINDS if kind.rule is not None)
EVENTS: tuple[str, ...] = tuple(BY_NAME)
DEFAULT_EVENTS: tuple[AlertEventKind, ...] = tuple(k.name for k in KINDS if k.default_event)
HEALTH_EVENTS: tuple[str, ...] = tuple(k.name.value for k in KINDS if k.health)
ESCALATING: frozenset[str] = frozenset(k.name.value for k in KINDS if k.escalates)
FLAKY_NOTED: frozenset[str] = frozenset(k.name.value for k in KINDS if k.flaky_note)
MENTIONING: frozenset[str] = frozenset(k.name.value for k in KINDS if k.mentions)
WITH_LAST_GREEN: frozenset[str] = frozenset(k.name.value for k in KINDS if k.last_green)
# The fingerprint rules of alert rows: the kinds that fire, and `escalated-<route index>`.
ALERT_RULES: tuple[str, ...] = tuple(k.name.value for k in KINDS if k.fires)


def route_event(event: str) -> str:
    """The route event that selects notices of `event` (`healthy` goes where `unhealthy` went)."""
    kind = BY_NAME.get(event)
    return event if kind is None else kind.route_event.value


def listing(names: Sequence[str]) -> str:
    """`a, b or c`: for the API's field descriptions."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def decide(
    state: RefState,
    alerts: dict[Fingerprint, AlertRow],
    decisive: Run | None,
    now: datetime,
    limits: Thresholds,
    waiting: Sequence[Run] | None = None,
    started: datetime | None = None,
) -> list[Decision]:
    """Every decision of the ref rules for one ref, in the order of `KINDS`: its colour alert
    (`broken`; `started`: see `rules.colour_decision`), then its time-based alerts (`stuck`,
    `queued`, over `waiting`: see `rules.waiting_decisions`)."""
    inputs = RuleInputs(state, alerts, decisive, now, limits, waiting, started)
    return [decision for rule in RULES for decision in rule(inputs)]

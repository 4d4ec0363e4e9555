"""The alert kinds (alerting/kinds.py) agree with everything that lists them: the event names of
the contract (`domain.AlertEventKind`), the channels' wording, the config's `events`, the API's
descriptions, the docs; and each kind's rule does what its entry says (fires under its name,
repeats and resolves as its entry's `repeats_as` / `resolves_as`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from ciwatch.alerting import health
from ciwatch.alerting.kinds import (
    ALERT_RULES,
    BY_NAME,
    DEFAULT_EVENTS,
    ESCALATING,
    FLAKY_NOTED,
    HEALTH_EVENTS,
    KINDS,
    MENTIONING,
    RULES,
    TEST,
    WITH_LAST_GREEN,
    WORDING,
    AlertKind,
    decide,
    route_event,
)
from ciwatch.alerting.rules import AlertRow, Decision, Fingerprint, Thresholds, applied
from ciwatch.channels import base, render
from ciwatch.config.models import RouteSettings
from ciwatch.domain import AlertEventKind, Run, Status
from ciwatch.state import decisive_run, ref_state
from ciwatch.web.dashboard import ALERT_ICON
from ciwatch.web.schemas import AlertModel, ChannelOutcome
from factories import at, make_run

DOCS = Path(__file__).parents[2] / "docs"
LIMITS = Thresholds(
    stuck_after=timedelta(hours=1),
    queued_after=timedelta(minutes=15),
    repeat_interval=timedelta(hours=4),
)


def test_the_kinds_are_the_events_of_the_contract_in_their_order() -> None:
    assert [kind.name for kind in KINDS] == list(AlertEventKind)
    assert list(BY_NAME) == [kind.value for kind in AlertEventKind]


def test_each_kind_has_a_rule_or_is_sent_by_another_or_is_about_health() -> None:
    for kind in KINDS:
        assert kind.rule is not None or kind.sent_by is not None or kind.health, kind.name
        if kind.sent_by is not None:
            assert kind.rule is None, kind.name
            parent = BY_NAME[kind.sent_by]
            assert kind.name in (parent.repeats_as, parent.resolves_as), kind.name
        for other in (kind.repeats_as, kind.resolves_as, kind.routed_as):
            assert other is None or other in BY_NAME, (kind.name, other)
    assert list(RULES) == [kind.rule for kind in KINDS if kind.rule is not None]
    assert ALERT_RULES == ("broken", "stuck", "queued", "unhealthy")


def test_each_notice_kind_has_its_wording_in_every_table() -> None:
    assert tuple(WORDING) == (*BY_NAME, TEST) == base.NOTICE_KINDS
    severities = [wording.severity for wording in WORDING.values()]
    assert len(set(severities)) == len(severities), "two kinds of one severity"
    for name, wording in WORDING.items():
        assert wording.emoji and wording.word and wording.group_phrase, name
        assert render.EMOJI[name] == wording.emoji
        assert render.WORD[name] == wording.word
        assert render.GROUP_PHRASE[name] == wording.group_phrase
        assert render.ELAPSED_LABEL.get(name) == wording.elapsed_label
    assert render.SEVERITY[0] == "broken" and render.SEVERITY[-1] == TEST
    assert set(render.SEVERITY) == set(WORDING)
    assert {name: kind.wording.glyph for name, kind in BY_NAME.items()} == ALERT_ICON
    assert all(ALERT_ICON.values())
    assert base.HEALTH_KINDS == HEALTH_EVENTS == ("unhealthy", "healthy")


def test_routing_follows_the_entries() -> None:
    assert route_event("healthy") == "unhealthy"
    assert route_event("recovered") == "recovered"
    assert route_event(TEST) == TEST
    assert {"broken", "still_failing"} == ESCALATING
    assert {"broken"} == FLAKY_NOTED == MENTIONING == WITH_LAST_GREEN
    assert RouteSettings(channels=["c"]).events == list(DEFAULT_EVENTS) == list(AlertEventKind)


@pytest.mark.parametrize("name", list(BY_NAME))
def test_a_route_accepts_each_kind_in_events(name: str) -> None:
    assert RouteSettings(channels=["c"], events=[name]).events == [AlertEventKind(name)]


def test_a_route_refuses_an_unknown_event() -> None:
    with pytest.raises(ValidationError, match="brokn"):
        RouteSettings(channels=["c"], events=["brokn"])


def test_the_api_describes_every_kind() -> None:
    event = ChannelOutcome.model_json_schema()["properties"]["event"]["description"]
    rule = AlertModel.model_json_schema()["properties"]["rule"]["description"]
    for name in BY_NAME:
        assert re.search(rf"\b{name}\b", event), name
    for name in ALERT_RULES:
        assert re.search(rf"\b{name}\b", rule), name
    assert "escalated-" in rule


def test_the_docs_name_every_kind() -> None:
    alerting = (DOCS / "alerting.md").read_text()
    events_table = alerting.split("## Events and rules", 1)[1].split("\n## ", 1)[0]
    configuration = (DOCS / "configuration.md").read_text()
    default_row = next(line for line in configuration.splitlines() if line.startswith("| `events`"))
    architecture = (DOCS / "architecture.md").read_text()
    channels = (DOCS / "channels.md").read_text()
    for name, kind in BY_NAME.items():
        assert f"| `{name}` |" in events_table, name
        assert f"| `{name}` | `{kind.wording.emoji} {kind.wording.word}: " in channels, name
        assert f'"{name}"' in default_row, name
        assert f"`{name}`" in architecture, name
    assert "## Adding an alert kind" in (DOCS / "extending.md").read_text()


# -- each rule does what its entry says -------------------------------------------------------


def _running(n: int, started: float) -> Run:
    return make_run(
        run_id=str(n),
        status=Status.RUNNING,
        created_at=at(started - 10),
        started_at=at(started),
        updated_at=at(started),
        finished_at=None,
        duration_seconds=None,
    )


def _queued(n: int, created: float) -> Run:
    return make_run(
        run_id=str(n),
        status=Status.QUEUED,
        created_at=at(created),
        started_at=None,
        updated_at=at(created),
        finished_at=None,
        duration_seconds=None,
    )


def _ended(n: int, status: Status, finished: float) -> Run:
    return make_run(
        run_id=str(n),
        status=status,
        created_at=at(finished - 300),
        started_at=at(finished - 290),
        updated_at=at(finished),
        finished_at=at(finished),
        sha=f"{n:040d}",
    )


_RED = [_ended(1, Status.SUCCESS, 1000), _ended(2, Status.FAILED, 2000)]
# For each kind with a rule: the ref's runs while its condition holds, and once it cleared.
LIFECYCLES: dict[AlertEventKind, tuple[list[Run], list[Run]]] = {
    AlertEventKind.BROKEN: (_RED, [*_RED, _ended(3, Status.SUCCESS, 3000)]),
    AlertEventKind.STUCK: ([_running(1, 1000)], [_ended(1, Status.SUCCESS, 9000)]),
    AlertEventKind.QUEUED: ([_queued(1, 1000)], [_ended(1, Status.SUCCESS, 9000)]),
}


def _evaluate(
    runs: list[Run], alerts: dict[Fingerprint, AlertRow], now: datetime
) -> list[Decision]:
    state = ref_state(runs)
    assert state is not None
    waiting = [run for run in runs if run.status in (Status.RUNNING, Status.QUEUED)]
    decisions = decide(state, alerts, decisive_run(runs), now, LIMITS, waiting)
    for decision in decisions:
        alerts[decision.fingerprint] = applied(decision, now)
    return decisions


def _lifecycle(
    kind: AlertKind, step: Callable[[int, dict[Fingerprint, AlertRow], datetime], list[Decision]]
) -> None:
    """Fire, repeat after `repeat_interval`, resolve: each as the entry of `kind` says."""
    alerts: dict[Fingerprint, AlertRow] = {}
    now = at(2 * 3600 + 3000)
    fired = step(0, alerts, now)
    assert [(d.fingerprint[0], d.action, d.notify) for d in fired] == [
        (kind.name.value, "fire", kind.name)
    ]
    repeated = step(0, alerts, now + LIMITS.repeat_interval)
    expected = [] if kind.repeats_as is None else [(kind.name.value, "repeat", kind.repeats_as)]
    assert [(d.fingerprint[0], d.action, d.notify) for d in repeated] == expected
    resolved = step(1, alerts, now + LIMITS.repeat_interval * 2)
    assert [(d.fingerprint[0], d.action, d.notify) for d in resolved] == [
        (kind.name.value, "resolve", kind.resolves_as)
    ]


@pytest.mark.parametrize("name", list(LIFECYCLES))
def test_each_ref_rule_fires_repeats_and_resolves_as_its_entry_says(name: AlertEventKind) -> None:
    kind = BY_NAME[name]
    phases = LIFECYCLES[name]

    def step(phase: int, alerts: dict[Fingerprint, AlertRow], now: datetime) -> list[Decision]:
        return _evaluate(phases[phase], alerts, now)

    _lifecycle(kind, step)


def test_every_kind_with_a_rule_has_a_lifecycle_here() -> None:
    assert set(LIFECYCLES) == {kind.name for kind in KINDS if kind.rule is not None}


def test_the_health_rule_fires_repeats_and_resolves_as_its_entry_says() -> None:
    (kind,) = [k for k in KINDS if k.health and k.fires]
    since = at(0)
    phases = [[health.Condition("gl", "group/app", since, "HTTP 401")], []]

    def step(phase: int, alerts: dict[Fingerprint, AlertRow], now: datetime) -> list[Decision]:
        decisions = health.health_decisions(
            phases[phase],
            alerts,
            now,
            unhealthy_after=timedelta(minutes=10),
            repeat_interval=LIMITS.repeat_interval,
        )
        for decision in decisions:
            alerts[decision.fingerprint] = applied(decision, now)
        return decisions

    _lifecycle(kind, step)

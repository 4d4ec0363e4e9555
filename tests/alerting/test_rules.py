"""The pure alert rules: a table of single decisions, and a property over interleavings."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciwatch.alerting.kinds import decide
from ciwatch.alerting.rules import (
    AlertRow,
    Decision,
    Fingerprint,
    Thresholds,
    applied,
    wants_decisive,
)
from ciwatch.domain import AlertEventKind, RefState, Run, Status
from ciwatch.state import decisive_run, ref_state
from factories import at, make_run

LIMITS = Thresholds(
    stuck_after=timedelta(hours=1),
    queued_after=timedelta(minutes=15),
    repeat_interval=timedelta(hours=4),
)


def run(n: int, status: Status, *, sha: str | None = None, **extra: object) -> Run:
    values: dict[str, object] = {
        "run_id": str(n),
        "status": status,
        "created_at": at(n * 1000),
        "started_at": at(n * 1000 + 10),
        "finished_at": at(n * 1000 + 300) if status.terminal else None,
        "updated_at": at(n * 1000 + 300),
        "sha": sha or f"{n:040d}",
    }
    values.update(extra)
    return make_run(**values)


def evaluate(runs: list[Run], alerts: dict[Fingerprint, AlertRow], now_s: float) -> list[Decision]:
    """One evaluation as the engine does it, applying the decisions to `alerts`."""
    state = ref_state(runs)
    assert state is not None
    now = at(now_s)
    decisive = decisive_run(runs) if wants_decisive(state, alerts, now, LIMITS) else None
    decisions = decide(state, alerts, decisive, now, LIMITS)
    for decision in decisions:
        alerts[decision.fingerprint] = applied(decision, now)
    return decisions


def kinds(decisions: list[Decision]) -> list[str]:
    return [d.notify.value for d in decisions if d.notify is not None]


@pytest.mark.parametrize(
    ("history", "expected"),
    [
        ([Status.FAILED], ["broken"]),  # first-ever run failing
        ([Status.SUCCESS], []),
        ([Status.SUCCESS, Status.FAILED], ["broken"]),
        ([Status.SUCCESS, Status.CANCELED], []),
    ],
)
def test_first_evaluation(history: list[Status], expected: list[str]) -> None:
    runs = [run(i + 1, status) for i, status in enumerate(history)]
    assert kinds(evaluate(runs, {}, 10_000)) == expected


def _fire(runs: list[Run], alerts: dict[Fingerprint, AlertRow], started_s: float) -> Decision:
    state = ref_state(runs)
    assert state is not None
    now = at(10_000)
    decisions = decide(state, alerts, decisive_run(runs), now, LIMITS, started=at(started_s))
    (decision,) = decisions
    alerts[decision.fingerprint] = applied(decision, now)
    return decision


@pytest.mark.parametrize(
    ("history", "started_s", "at_start"),
    [
        # Red since run 2's finish (2_300): already failing if ciwatch started after it.
        ([Status.SUCCESS, Status.FAILED], 5_000, True),
        ([Status.SUCCESS, Status.FAILED, Status.FAILED], 2_500, True),  # since the first red
        ([Status.FAILED], 1_000, False),  # a first run failing after the start: a real break
        ([Status.SUCCESS, Status.FAILED], 2_000, False),  # watched green, then broke
    ],
)
def test_at_start_is_red_since_before_the_start(
    history: list[Status], started_s: float, at_start: bool
) -> None:
    runs = [run(i + 1, status) for i, status in enumerate(history)]
    decision = _fire(runs, {}, started_s)
    assert (decision.action, decision.notify, decision.at_start) == (
        "fire",
        AlertEventKind.BROKEN,
        at_start,
    )


def test_a_ref_that_alerted_before_is_never_at_start() -> None:
    alerts: dict[Fingerprint, AlertRow] = {}
    assert _fire([run(1, Status.FAILED)], alerts, 5_000).at_start
    assert _fire([run(1, Status.FAILED), run(2, Status.SUCCESS)], alerts, 5_000).notify is (
        AlertEventKind.RECOVERED
    )
    # The resolved row remains: red again, even since before `started`, is a break.
    again = _fire(
        [run(1, Status.FAILED), run(2, Status.SUCCESS), run(3, Status.FAILED)], alerts, 5_000
    )
    assert (again.notify, again.at_start) == (AlertEventKind.BROKEN, False)


def test_broken_then_still_failing_only_after_repeat_interval_then_recovered() -> None:
    alerts: dict[Fingerprint, AlertRow] = {}
    runs = [run(1, Status.SUCCESS), run(2, Status.FAILED)]
    assert kinds(evaluate(runs, alerts, 3_000)) == ["broken"]
    assert kinds(evaluate(runs, alerts, 3_001)) == []
    runs.append(run(3, Status.FAILED))
    assert kinds(evaluate(runs, alerts, 4_000)) == []  # a newer red run alone: not yet
    assert kinds(evaluate(runs, alerts, 3_000 + 4 * 3600)) == ["still_failing"]
    assert kinds(evaluate(runs, alerts, 3_000 + 4 * 3600 + 1)) == []
    runs.append(run(4, Status.SUCCESS))
    decisions = evaluate(runs, alerts, 30_000)
    assert kinds(decisions) == ["recovered"]
    (recovered,) = decisions
    # red from the failing run's finish (2300) to the green run's finish (4300)
    assert recovered.red_for == timedelta(seconds=2_000)
    assert recovered.flaky is False
    assert kinds(evaluate(runs, alerts, 30_001)) == []


def test_recovery_on_the_same_sha_is_flaky() -> None:
    alerts: dict[Fingerprint, AlertRow] = {}
    runs = [run(1, Status.FAILED, sha="c" * 40)]
    evaluate(runs, alerts, 2_000)
    runs.append(run(2, Status.SUCCESS, sha="c" * 40))
    (decision,) = evaluate(runs, alerts, 3_000)
    assert decision.notify is AlertEventKind.RECOVERED
    assert decision.flaky is True


def test_stuck_and_queued_fire_repeat_and_resolve_silently() -> None:
    alerts: dict[Fingerprint, AlertRow] = {}
    running = run(1, Status.RUNNING, started_at=at(0), created_at=at(0), finished_at=None)
    assert kinds(evaluate([running], alerts, 3_600)) == []  # not past stuck_after + skew
    decisions = evaluate([running], alerts, 3_700)
    assert kinds(decisions) == ["stuck"]
    assert decisions[0].red_for == timedelta(seconds=3_700)
    assert kinds(evaluate([running], alerts, 3_800)) == []
    assert kinds(evaluate([running], alerts, 3_700 + 4 * 3600)) == ["stuck"]
    done = run(1, Status.SUCCESS, started_at=at(0), created_at=at(0))
    decisions = evaluate([done], alerts, 20_000)
    assert [(d.action, d.notify) for d in decisions] == [("resolve", None)]
    queued = run(2, Status.QUEUED, created_at=at(20_000), started_at=None, finished_at=None)
    assert kinds(evaluate([done, queued], alerts, 20_000 + 15 * 60)) == []
    assert kinds(evaluate([done, queued], alerts, 20_000 + 16 * 60)) == ["queued"]


STATUSES = st.sampled_from(
    [Status.SUCCESS, Status.FAILED, Status.CANCELED, Status.RUNNING, Status.QUEUED]
)


@settings(max_examples=300, deadline=None)
@given(
    statuses=st.lists(STATUSES, min_size=1, max_size=12),
    order=st.randoms(use_true_random=False),
    evaluate_after=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_at_most_one_broken_per_red_period(
    statuses: list[Status], order: object, evaluate_after: list[bool]
) -> None:
    """Runs arrive in any order, evaluations happen after any of them (and again, as a second
    replica would): each maximal stretch of red observed ref states gets exactly one `broken`,
    and every `recovered` closes a red stretch."""
    runs = [run(i + 1, s) for i, s in enumerate(statuses)]
    arrival = list(runs)
    order.shuffle(arrival)  # type: ignore[attr-defined]
    alerts: dict[Fingerprint, AlertRow] = {}
    seen: list[Run] = []
    observed: list[Status] = []
    sent: list[str] = []
    for index, incoming in enumerate(arrival):
        seen.append(incoming)
        if not evaluate_after[index] and index < len(arrival) - 1:
            continue
        for _ in range(2):
            sent += [k for k in kinds(evaluate(seen, alerts, 50_000)) if k != "still_failing"]
            state: RefState | None = ref_state(seen)
            assert state is not None
            observed.append(state.status)
    red_periods = 0
    previous: Status | None = None
    for status in observed:
        if status is Status.FAILED and previous is not Status.FAILED:
            red_periods += 1
        if status.decisive:
            previous = status
    assert sent.count("broken") == red_periods
    colour = [k for k in sent if k in ("broken", "recovered")]
    assert all(a != b for a, b in itertools.pairwise(colour))

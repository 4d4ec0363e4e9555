"""Property tests of the forward-only merge and the ref transitions
(docs/architecture.md#state-machine-and-time)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ciwatch.domain import Run, Status
from ciwatch.state import (
    IDENTITY_FIELDS,
    decisive_run,
    fold_runs,
    merge_run,
    ref_state,
    version_key,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
IDENTITY = {
    "number": 17,
    "workflow": "CI",
    "ref": "main",
    "sha": "a" * 40,
    "event": "push",
    "url": "https://ci.example.com/runs/1",
    "created_at": T0,
}
AUTHORS = {1: "alice", 2: "bob", 3: "carol"}


@st.composite
def run_updates(draw: st.DrawFn) -> Run:
    """One update of run 1: identity fields either known or missing, lifecycle anything."""
    attempt = draw(st.integers(1, 3))
    status = draw(st.sampled_from(list(Status)))
    updated = T0 + timedelta(seconds=draw(st.integers(0, 20)))
    identity = {name: value if draw(st.booleans()) else None for name, value in IDENTITY.items()}
    started = draw(st.none() | st.just(T0 + timedelta(seconds=1)))
    finished = updated if status.terminal and draw(st.booleans()) else None
    return Run(
        source="gl",
        provider="gitlab",
        project="group/app",
        run_id="1",
        status=status,
        updated_at=updated,
        attempt=attempt,
        author=AUTHORS[attempt] if draw(st.booleans()) else None,
        provider_status=draw(st.sampled_from([None, status.value, "weird"])),
        started_at=started,
        finished_at=finished,
        duration_seconds=draw(st.none() | st.floats(0, 100, allow_nan=False)),
        **identity,  # type: ignore[arg-type]
    )


@given(st.lists(run_updates(), min_size=1, max_size=12), st.randoms())
def test_any_order_and_duplication_converges(updates: list[Run], rnd: object) -> None:
    reference = fold_runs(updates)
    shuffled = updates + [rnd.choice(updates) for _ in range(len(updates))]  # type: ignore[attr-defined]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert fold_runs(shuffled) == reference


@given(st.lists(run_updates(), min_size=1, max_size=12))
def test_newest_version_wins_lifecycle(updates: list[Run]) -> None:
    result = fold_runs(updates)
    newest = max(updates, key=version_key)
    assert result is not None
    assert result.status is newest.status
    assert result.updated_at == newest.updated_at
    assert result.attempt == newest.attempt
    assert result.finished_at == newest.finished_at
    assert version_key(result) == version_key(newest)


@given(st.lists(run_updates(), min_size=1, max_size=12))
def test_identity_known_by_any_update_is_kept(updates: list[Run]) -> None:
    result = fold_runs(updates)
    assert result is not None
    for name in IDENTITY_FIELDS:
        known = any(getattr(update, name) is not None for update in updates)
        assert (getattr(result, name) is not None) == known


@given(run_updates(), st.lists(run_updates(), max_size=8))
def test_an_older_update_never_reopens_a_finished_run(finished: Run, others: list[Run]) -> None:
    finished = replace(finished, status=Status.FAILED, attempt=3, updated_at=T0 + timedelta(1))
    state = merge_run(None, finished)
    for other in others:
        if version_key(other) < version_key(finished):
            state = merge_run(state, other)
    assert state.status is Status.FAILED
    assert state.updated_at == finished.updated_at


def test_a_newer_attempt_reopens() -> None:
    failed = Run("gl", "github", "o/r", "9", Status.FAILED, T0, attempt=1, author="alice")
    rerun = Run("gl", "github", "o/r", "9", Status.QUEUED, T0 + timedelta(minutes=5), attempt=2)
    state = merge_run(failed, rerun)
    assert state.status is Status.QUEUED
    assert state.attempt == 2
    assert state.author is None  # who triggered attempt 1 did not trigger attempt 2
    # ... and the stale attempt-1 result arriving late changes nothing.
    assert merge_run(state, failed) == state


def test_same_attempt_newer_update_reopens_gitlab_retry() -> None:
    done = Run("gl", "gitlab", "g/a", "5", Status.FAILED, T0)
    retried = Run("gl", "gitlab", "g/a", "5", Status.RUNNING, T0 + timedelta(seconds=30))
    assert merge_run(done, retried).status is Status.RUNNING
    assert merge_run(retried, done).status is Status.RUNNING


def test_equal_time_orders_by_status_rank() -> None:
    running = Run("gl", "gitlab", "g/a", "5", Status.RUNNING, T0)
    success = Run("gl", "gitlab", "g/a", "5", Status.SUCCESS, T0)
    assert merge_run(running, success).status is Status.SUCCESS
    assert merge_run(success, running).status is Status.SUCCESS


def _run(number: int, status: Status, minutes: int, ref: str = "main") -> Run:
    at = T0 + timedelta(minutes=minutes)
    return Run(
        "gl",
        "gitlab",
        "g/a",
        str(number),
        status,
        at,
        ref=ref,
        created_at=at,
        finished_at=at + timedelta(minutes=1) if status.terminal else None,
    )


def test_ref_state_colour_since_and_newest() -> None:
    runs = [
        _run(1, Status.SUCCESS, 0),
        _run(2, Status.FAILED, 10),
        _run(3, Status.CANCELED, 15),
        _run(4, Status.FAILED, 20),
        _run(5, Status.RUNNING, 30),
    ]
    state = ref_state(reversed(runs))
    assert state is not None
    assert state.status is Status.FAILED
    assert state.since == T0 + timedelta(minutes=11)  # when run 2 finished: red since then
    assert state.last_run.run_id == "5"
    assert decisive_run(runs) == runs[3]


def test_ref_state_without_decisive_runs() -> None:
    state = ref_state([_run(1, Status.RUNNING, 0), _run(2, Status.CANCELED, 5)])
    assert state is not None
    assert state.status is Status.CANCELED
    assert state.since == T0 + timedelta(minutes=5)
    assert ref_state([]) is None


@pytest.mark.parametrize("newest", [s for s in Status if not s.decisive])
def test_a_red_ref_stays_failing_whatever_its_newest_run(newest: Status) -> None:
    state = ref_state([_run(1, Status.SUCCESS, 0), _run(2, Status.FAILED, 10), _run(3, newest, 20)])
    assert state is not None
    assert state.last_run.status is newest
    assert state.failing
    assert state.failing_since == T0 + timedelta(minutes=11)  # run 2 finished: red since then
    green = ref_state([_run(1, Status.FAILED, 0), _run(2, Status.SUCCESS, 10), _run(3, newest, 20)])
    assert green is not None
    assert (green.failing, green.failing_since) == (False, None)
    assert green.since == T0 + timedelta(minutes=11)
    never = ref_state([_run(1, newest, 0)])
    assert never is not None
    assert (never.failing, never.failing_since) == (False, None)


@given(st.lists(st.sampled_from(list(Status)), min_size=1, max_size=8))
def test_failing_is_the_newest_decisive_run_failed(statuses: list[Status]) -> None:
    runs = [_run(n, status, 5 * n) for n, status in enumerate(statuses, start=1)]
    state = ref_state(runs)
    assert state is not None
    decisive = decisive_run(runs)
    assert state.failing is (decisive is not None and decisive.status is Status.FAILED)
    assert state.failing_since == (state.since if state.failing else None)

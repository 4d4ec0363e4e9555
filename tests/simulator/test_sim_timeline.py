"""The time model: run plans, stage schedules, and timelines that never grow."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciwatch.simulator.plans import FOREVER, RunPlan, build_attempts, schedule
from ciwatch.simulator.scenario import (
    GeneratedRerun,
    GeneratorSpec,
    JobSpec,
    RerunSpec,
    parse_seconds,
)
from ciwatch.simulator.timeline import Generator, Timeline, number_plans

JOBS = (JobSpec("compile", "build"), JobSpec("unit", "test"), JobSpec("lint", "test"),
        JobSpec("deploy", "deploy"))  # fmt: skip


def test_a_failure_blames_the_second_stage_and_skips_the_rest() -> None:
    plans = schedule(JOBS, "failed", 180_000)
    assert [(p.name, p.result, p.start, p.duration) for p in plans] == [
        ("compile", "success", 0, 90_000),
        ("unit", "failed", 90_000, 90_000),
        ("lint", "success", 90_000, 90_000),
        ("deploy", "skipped", 180_000, 0),
    ]


def test_explicit_durations_are_scaled_to_the_run() -> None:
    jobs = (JobSpec("a", "one", duration=10), JobSpec("b", "two", duration=30))
    assert [(p.start, p.duration) for p in schedule(jobs, "success", 80_000)] == [
        (0, 20_000),
        (20_000, 60_000),
    ]


def test_a_run_that_never_ends_keeps_its_last_stage_running() -> None:
    (first,) = build_attempts(0, 5_000, FOREVER, "success", JOBS, None)
    assert first.finished == FOREVER
    assert first.jobs[-1].duration == FOREVER
    assert first.phase(10**12) == "running"


def test_a_rerun_is_a_second_attempt_after_the_first_ends() -> None:
    first, second = build_attempts(
        0, 1_000, 60_000, "failed", JOBS, RerunSpec(30, "success", 2, 20)
    )
    assert (first.started, first.finished, first.result) == (1_000, 61_000, "failed")
    assert (second.queued, second.started, second.finished) == (91_000, 93_000, 113_000)
    assert {job.result for job in second.jobs} == {"success"}


def test_manual_runs_stop_at_the_manual_job() -> None:
    (attempt,) = build_attempts(0, 0, 90_000, "manual", JOBS, None)
    assert [job.result for job in attempt.jobs] == ["success", "success", "success", "manual"]
    assert attempt.jobs[-1].status_at(attempt, attempt.finished) == ("manual", None, None)


def spec(every: float = 60, rerun: float = 0.5) -> GeneratorSpec:
    return GeneratorSpec(
        every=every,
        since=-3600,
        results=(("success", 0.5), ("failed", 0.5)),
        queue=(0, 90),
        duration=(30, 400),
        rerun=GeneratedRerun(rerun, after=45),
    )


def timeline(retention: int = 40) -> Timeline:
    scripted = number_plans(
        [
            _scripted(-5000, 10, 100_000, "success"),
            _scripted(-4000, 600, FOREVER, "success"),
            _scripted(-7000, 0, 60_000, "failed"),
        ]
    )
    return Timeline("t", scripted, Generator(spec(), ("main", "dev"), JOBS, "t"), retention, 1)


def _scripted(at: float, queue: float, duration: int, result: str) -> RunPlan:
    attempts = build_attempts(int(at * 1000), int(queue * 1000), duration, result, JOBS, None)
    return RunPlan(0, "main", "s", "push", "a", "m", attempts)


def test_scripted_runs_come_first_then_the_generator() -> None:
    line = timeline(retention=1000)
    created = [line.plan(n).created for n in range(line.count(0))]
    assert created[:3] == [-7_000_000, -5_000_000, -4_000_000]
    assert created == sorted(created)
    assert created[3] > -4_000_000  # generated runs start after the last scripted one
    assert line.count(0) == 3 + len([c for c in created[3:] if c <= 0])


def test_retention_bounds_what_is_visible_and_the_cache() -> None:
    line = timeline(retention=40)
    week = 7 * 24 * 3_600_000
    window = line.visible(week)
    assert len(window) == 40 and window.stop == line.count(week)
    for n in window:
        line.plan(n)
    for n in range(window.start - 500, window.start):
        line.plan(n)
    assert len(line._cache) <= 256


def test_plans_are_the_same_every_time() -> None:
    one, two = timeline(), timeline()
    assert [one.plan(n) for n in range(3, 60)] == [two.plan(n) for n in range(3, 60)]
    other = Timeline("t", [], Generator(spec(), ("main",), JOBS, "t"), 40, seed=2)
    assert [other.plan(n).sha for n in range(5)] != [one.plan(n + 3).sha for n in range(5)]


@settings(max_examples=200, deadline=None)
@given(
    now=st.integers(-7_200_000, 20_000_000),
    back=st.integers(0, 3_000_000),
)
def test_changed_after_finds_every_changed_run(now: int, back: int) -> None:
    line = timeline(retention=60)
    since = now - back
    found = set(line.changed_after(since, now))
    truth = {n for n in line.visible(now) if line.plan(n).updated(now) > since}
    assert truth <= found
    assert found <= set(line.visible(now))


@settings(max_examples=100, deadline=None)
@given(now=st.integers(-7_200_000, 20_000_000))
def test_waiting_lists_exactly_the_queued_runs(now: int) -> None:
    line = timeline(retention=60)
    truth = [n for n in line.visible(now) if line.plan(n).attempts[0].started > now]
    assert line.waiting(now) == truth


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("2h", 7200), ("1h30m", 5400), ("250ms", 0.25), (90, 90),
     ("1.5", 1.5), ("1d", 86400)],
)  # fmt: skip
def test_parse_seconds(text: object, seconds: float) -> None:
    assert parse_seconds(text) == seconds


def test_parse_seconds_signs_and_forever() -> None:
    assert parse_seconds("-2h", signed=True) == -7200
    assert parse_seconds("forever", forever=True) == math.inf
    for bad in ("-2h", "forever", "2 weeks", True, None):
        with pytest.raises(ValueError, match=r"duration|negative"):
            parse_seconds(bad)

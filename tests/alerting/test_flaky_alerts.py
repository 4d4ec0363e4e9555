"""`alerts.flaky` (notify, label, mute) for a break whose failing jobs are all known-flaky, and
escalation routes (`alerts.routes[].after`): the real engine, store (both engines), workers and
webhook channels posting to receivers on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, Literal

import pytest

from alerting.test_engine import START, Rig, events, green, red
from channels.harness import WebhookReceiver
from ciwatch.alerting import AlertEngine
from ciwatch.clock import FakeClock
from ciwatch.config.models import RouteSettings
from ciwatch.domain import Run, Status
from ciwatch.store import SqlStore
from ciwatch.store.alerting import load_alerts
from factories import at, make_job, make_run


@pytest.fixture
async def receivers() -> AsyncIterator[list[WebhookReceiver]]:
    started = [WebhookReceiver(), WebhookReceiver()]
    for receiver in started:
        await receiver.start()
    yield started
    for receiver in started:
        await receiver.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at(START))


class FlakyRig(Rig):
    def __init__(self, *args: Any, flaky: str = "notify", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = self.settings.model_copy(update={"flaky": flaky})
        self.settings = settings
        self.engine = AlertEngine(self.engine.store, settings, self.engine.clock, interval=0.01)


async def _flaky_history(store: SqlStore, *, also_lint: bool = False) -> None:
    """`test` failed on commit f (run 1) and passed on f (run 2); then run 3, on another
    commit, fails with `test` (and `lint` when `also_lint`)."""
    await store.upsert_runs([red(1, sha="f" * 40), green(2, sha="f" * 40), red(3)])
    jobs = [
        make_job(run_id="1", job_id="11", name="test", status=Status.FAILED, finished_at=at(1300)),
        make_job(run_id="2", job_id="21", name="test", status=Status.SUCCESS, finished_at=at(2300)),
        make_job(run_id="3", job_id="31", name="test", status=Status.FAILED, finished_at=at(3300)),
    ]
    if also_lint:
        jobs.append(
            make_job(
                run_id="3", job_id="32", name="lint", status=Status.FAILED, finished_at=at(3300)
            )
        )
    await store.upsert_jobs(jobs)


NOTE = "likely flaky: test failed once on a sha that later passed in the last 14d"


@pytest.mark.parametrize("mode", ["notify", "label"])
async def test_a_break_of_known_flaky_jobs_says_so(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    mode: Literal["notify", "label"],
) -> None:
    await _flaky_history(store)
    rig = FlakyRig(store, receivers, clock, flaky=mode)
    try:
        await rig.cycle()
    finally:
        await rig.close()
    for receiver in receivers:
        assert events(receiver) == ["broken"]
        (doc,) = receiver.events
        assert doc["failing_jobs"] == ["test"]
        assert doc["likely_flaky"] == NOTE
        if mode == "label":
            assert doc["summary"] == "🔴 [likely flaky] Broken: group/app on main"
        else:
            assert doc["summary"] == "🔴 Broken: group/app on main"


async def test_mute_records_the_alert_and_sends_nothing(
    store: SqlStore, receivers: list[WebhookReceiver], clock: FakeClock
) -> None:
    await _flaky_history(store)
    rig = FlakyRig(store, receivers, clock, flaky="mute")
    try:
        await rig.cycle()
        assert [events(r) for r in receivers] == [[], []]
        (row,) = [a for a in await load_alerts(store) if a.rule == "broken"]
        assert row.firing
        # It recovers as usual (and says so).
        await store.upsert_run(green(4))
        await rig.cycle()
        assert [events(r) for r in receivers] == [["recovered"], ["recovered"]]
    finally:
        await rig.close()


async def test_a_break_with_a_job_not_known_flaky_is_an_ordinary_one(
    store: SqlStore, receivers: list[WebhookReceiver], clock: FakeClock
) -> None:
    await _flaky_history(store, also_lint=True)
    rig = FlakyRig(store, receivers, clock, flaky="mute")
    try:
        await rig.cycle()
    finally:
        await rig.close()
    for receiver in receivers:
        (doc,) = receiver.events
        assert doc["event"] == "broken"
        assert doc["failing_jobs"] == ["test", "lint"]
        assert doc["likely_flaky"] is None


def _escalating() -> list[RouteSettings]:
    return [
        RouteSettings(channels=["hook0"]),
        RouteSettings(channels=["hook1"], refs=["main"], after=timedelta(hours=2), name="leads"),
    ]


async def test_escalation_fires_once_after_the_delay(
    store: SqlStore, receivers: list[WebhookReceiver], clock: FakeClock
) -> None:
    # Red since 100 s before the clock's start (run 99 finished then).
    await store.upsert_runs([green(98), red(99)])
    routes = _escalating()
    rig = Rig(store, receivers, clock, routes=routes)
    others: list[Rig] = []
    try:
        await rig.cycle()
        assert [events(r) for r in receivers] == [["broken"], []]
        clock.advance(3600)
        await rig.cycle()
        assert events(receivers[1]) == []
        clock.advance(3600 + 60)  # red for 2h 02m
        await rig.cycle()
        assert events(receivers[1]) == ["still_failing"]
        (doc,) = receivers[1].events
        assert doc["fingerprint"] == "escalated-1:gitlab-main:group/app:main"
        assert doc["red_for_seconds"] >= 2 * 3600
        assert events(receivers[0]) == ["broken"]  # the ordinary route is not escalated to
        # Later evaluations, a restart and a second replica send it no second time.
        clock.advance(600)
        await rig.cycle()
        for _ in range(2):
            others.append(Rig(store, receivers, clock, routes=routes))
        for other in others:
            await other.cycle()
        assert events(receivers[1]) == ["still_failing"]
        # Green: resolved silently; red again, then 2 hours: escalated again, once.
        await store.upsert_run(green(101))
        await rig.cycle()
        assert events(receivers[1]) == ["still_failing"]
        clock.advance(60)
        await store.upsert_run(_red_at(102, START + 7900))
        await rig.cycle()
        assert events(receivers[1]) == ["still_failing"]
        clock.advance(2 * 3600 + 60)
        await rig.cycle()
        await others[0].cycle()
        assert events(receivers[1]) == ["still_failing", "still_failing"]
        rows = [a for a in await load_alerts(store) if a.rule == "escalated-1"]
        assert len(rows) == 1 and rows[0].firing
    finally:
        for made in (rig, *others):
            await made.close()


def _red_at(n: int, finished: float) -> Run:
    return make_run(
        run_id=str(n),
        status=Status.FAILED,
        provider_status="failed",
        created_at=at(finished - 300),
        started_at=at(finished - 290),
        finished_at=at(finished),
        updated_at=at(finished),
        sha=f"{n:040d}",
    )

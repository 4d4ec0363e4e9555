"""The alert engine and the delivery workers end to end: the real store (both engines), a
FakeClock, and real webhook channels posting to aiohttp receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any, Literal

import pytest

from channels.harness import Reply, WebhookReceiver
from ciwatch.alerting import AlertEngine, DeliveryWorkers
from ciwatch.alerting.people import People
from ciwatch.alerting.silences import create_silence, list_silences
from ciwatch.channels import Channel, build_channel
from ciwatch.clock import FakeClock
from ciwatch.config.models import AlertSettings, PersonSettings, RouteSettings, WebhookChannel
from ciwatch.domain import Run, Status
from ciwatch.http import Backoff
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import SqlStore, open_store
from ciwatch.store.alerting import load_alerts, outbox_rows
from factories import at, make_job, make_run

START = 100_000  # the clock starts at T0 + START seconds; runs are placed before it


@pytest.fixture
async def receivers() -> AsyncIterator[list[WebhookReceiver]]:
    started = [WebhookReceiver(), WebhookReceiver()]
    for receiver in started:
        await receiver.start()
    yield started
    for receiver in started:
        await receiver.stop()


class Rig:
    """An engine, delivery workers and their channels over one store.

    The runs of these tests finished before the clock's start, so every ref red at the first
    evaluation was already failing when ciwatch started: `on_start` is `each` by default here,
    the per-alert behaviour these tests are about (test_on_start.py covers the `summary`
    default)."""

    def __init__(
        self,
        store: SqlStore,
        receivers: list[WebhookReceiver],
        clock: FakeClock,
        *,
        group_wait: float = 0.0,
        worker_id: str | None = None,
        routes: list[RouteSettings] | None = None,
        batch: int = 50,
        on_start: Literal["summary", "each", "none"] = "each",
    ) -> None:
        names = [f"hook{i}" for i in range(len(receivers))]
        self.settings = AlertSettings(
            channels=[
                WebhookChannel(name=name, url=r.url)
                for name, r in zip(names, receivers, strict=True)
            ],
            routes=routes if routes is not None else [RouteSettings(channels=names)],
            group_wait=timedelta(seconds=group_wait),
            on_start=on_start,
        )
        self.channels: dict[str, Channel] = {
            c.name: build_channel(c) for c in self.settings.channels
        }
        self.metrics = CollectionMetrics()
        self.engine = AlertEngine(store, self.settings, clock, interval=0.01)
        self.workers = DeliveryWorkers(
            store,
            self.channels,
            clock,
            metrics=self.metrics,
            backoff=Backoff(base=1.0, cap=10.0, rng=random.Random(7)),
            worker_id=worker_id,
            poll_interval=0.01,
            batch=batch,
        )

    async def cycle(self) -> None:
        await self.engine.evaluate()
        while await self.workers.drain():
            pass

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at(START))


MakeRig = Callable[..., Rig]


@pytest.fixture
async def make_rig() -> AsyncIterator[MakeRig]:
    """Builds rigs and closes their channels after the test, whatever happened."""
    made: list[Rig] = []

    def make(*args: Any, **kwargs: Any) -> Rig:
        made.append(Rig(*args, **kwargs))
        return made[-1]

    yield make
    for rig in made:
        await rig.close()


def red(n: int, *, project: str = "group/app", sha: str | None = None, **extra: Any) -> Run:
    return make_run(
        run_id=str(n),
        project=project,
        status=Status.FAILED,
        provider_status="failed",
        created_at=at(n * 1000),
        started_at=at(n * 1000 + 10),
        finished_at=at(n * 1000 + 300),
        updated_at=at(n * 1000 + 300),
        sha=sha or f"{n:040d}",
        **extra,
    )


def green(n: int, *, project: str = "group/app", sha: str | None = None) -> Run:
    return make_run(
        run_id=str(n),
        project=project,
        status=Status.SUCCESS,
        created_at=at(n * 1000),
        started_at=at(n * 1000 + 10),
        finished_at=at(n * 1000 + 300),
        updated_at=at(n * 1000 + 300),
        sha=sha or f"{n:040d}",
    )


def active(
    n: int,
    ago: int,
    *,
    project: str = "group/app",
    status: Status = Status.RUNNING,
    waited: int = 10,
) -> Run:
    """A run still running (started `ago` s before START, created `waited` s before that) or
    queued (created `ago` s before START)."""
    if status is Status.QUEUED:
        return make_run(
            run_id=str(n),
            project=project,
            status=status,
            created_at=at(START - ago),
            started_at=None,
            finished_at=None,
            updated_at=at(START - ago),
        )
    return make_run(
        run_id=str(n),
        project=project,
        status=status,
        created_at=at(START - ago - waited),
        started_at=at(START - ago),
        finished_at=None,
        updated_at=at(START - ago),
    )


def events(receiver: WebhookReceiver) -> list[str]:
    found: list[str] = []
    for doc in receiver.events:
        found += [e["event"] for e in doc["events"]] if "events" in doc else [doc["event"]]
    return found


async def test_red_still_failing_restart_and_recovery(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    rig = make_rig(store, receivers, clock)
    await store.upsert_runs([green(1), red(2, sha="f" * 40)])
    await store.upsert_jobs(
        [
            make_job(run_id="2", job_id="1", name="lint", status=Status.FAILED),
            make_job(
                run_id="2", job_id="2", name="flaky", status=Status.FAILED, allow_failure=True
            ),
        ]
    )
    await rig.cycle()
    for receiver in receivers:
        assert events(receiver) == ["broken"]
        (doc,) = receiver.events
        assert (doc["project"], doc["ref"], doc["run"]["run_id"]) == ("group/app", "main", "2")
        assert doc["failing_jobs"] == ["lint"]
        # The commits that broke it: from the last green run's SHA to the breaking one.
        assert doc["green_sha"] == f"{1:040d}"
        assert doc["people"] == []  # no `people:` configured

    # Still failing, a newer red run, an hour later: nothing until repeat_interval (4 h).
    await store.upsert_run(red(3, sha="f" * 40))
    clock.advance(3600)
    await rig.cycle()
    assert [events(r) for r in receivers] == [["broken"], ["broken"]]

    # A restart (new engine, new workers, same store): nothing new.
    second = make_rig(store, receivers, clock)
    await second.cycle()
    assert [events(r) for r in receivers] == [["broken"], ["broken"]]

    clock.advance(3 * 3600)
    await second.cycle()
    await rig.cycle()
    assert [events(r) for r in receivers] == [["broken", "still_failing"]] * 2

    # Green on the failing SHA: one recovery, flaky, red from run 2's finish to run 4's.
    await store.upsert_run(green(4, sha="f" * 40))
    await rig.cycle()
    await second.cycle()
    for receiver in receivers:
        assert events(receiver) == ["broken", "still_failing", "recovered"]
        assert [doc["green_sha"] for doc in receiver.events[1:]] == [None, None]
        recovered = receiver.events[-1]
        assert recovered["flaky"] is True
        assert recovered["red_for_seconds"] == 2000.0
    (alert,) = await load_alerts(store)
    assert (alert.rule, alert.state) == ("broken", "resolved")
    sent = [r.metrics.notifications[("hook0", "sent")] for r in (rig, second)]
    assert sum(sent) == 3


async def test_routes_pick_channels_by_event_and_glob(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    routes = [
        RouteSettings(channels=["hook0"], projects=["group/*"], events=["broken"]),
        RouteSettings(channels=["hook1"], refs=["release/*"]),
    ]
    rig = make_rig(store, receivers, clock, routes=routes)
    await store.upsert_run(red(1))
    await rig.cycle()
    assert events(receivers[0]) == ["broken"]
    assert events(receivers[1]) == []
    await store.upsert_run(green(2))
    await rig.cycle()
    assert events(receivers[0]) == ["broken"]  # recovered is not routed to hook0


async def test_channel_down_then_up_is_delivered_exactly_once(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    rig = make_rig(store, receivers[:1], clock)
    receivers[0].script.extend([Reply(503, "busy"), Reply(503, "still busy")])
    await store.upsert_run(red(1))
    await rig.engine.evaluate()
    assert await rig.workers.drain() == 1
    (row,) = await outbox_rows(store)
    assert (row.attempts, row.sent_at, row.failed_at) == (1, None, None)
    assert "HTTP 503" in (row.last_error or "")
    assert row.next_attempt_at > clock.now()
    assert await rig.workers.drain() == 0  # not due yet
    clock.advance(60)
    assert await rig.workers.drain() == 1  # second 503
    clock.advance(60)
    assert await rig.workers.drain() == 1  # delivered
    clock.advance(3600)
    await rig.cycle()
    assert len(receivers[0].requests) == 3
    assert events(receivers[0]) == ["broken"]
    (row,) = await outbox_rows(store)
    assert row.sent_at is not None and row.attempts == 3
    assert rig.metrics.notifications[("hook0", "retried")] == 2


async def test_permanent_refusal_is_recorded_and_not_retried(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    rig = make_rig(store, receivers[:1], clock)
    receivers[0].script.append(Reply(400, "invalid_payload: no such field"))
    await store.upsert_run(red(1))
    await rig.cycle()
    clock.advance(3600)
    await rig.cycle()
    (row,) = await outbox_rows(store)
    assert row.failed_at is not None and row.sent_at is None
    assert "HTTP 400" in (row.last_error or "")
    assert "invalid_payload: no such field" in (row.last_error or "")
    assert len(receivers[0].requests) == 1
    assert rig.metrics.notifications[("hook0", "failed")] == 1


async def test_stuck_and_queued_alerts(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    rig = make_rig(store, receivers[:1], clock)
    now = START
    stuck = active(1, 7200, project="group/slow", waited=100)
    queued = active(2, 1200, project="group/waiting", status=Status.QUEUED)
    fresh = active(3, 50, project="group/fine")
    await store.upsert_runs([stuck, queued, fresh])
    await rig.cycle()
    # Both became due together, so they went out as one grouped message.
    (doc,) = receivers[0].events
    got = sorted((e["event"], e["project"], e["red_for_seconds"]) for e in doc["events"])
    assert got == [("queued", "group/waiting", 1200.0), ("stuck", "group/slow", 7200.0)]
    await rig.cycle()
    assert len(receivers[0].events) == 1
    # The stuck run finishes: the alert resolves without a message.
    await store.upsert_run(
        make_run(
            run_id="1",
            project="group/slow",
            status=Status.SUCCESS,
            created_at=at(now - 7300),
            started_at=at(now - 7200),
            finished_at=at(now + 10),
            updated_at=at(now + 10),
        )
    )
    clock.advance(20)
    await rig.cycle()
    assert len(receivers[0].events) == 1
    states = {(a.rule, a.project): a.state for a in await load_alerts(store)}
    assert states == {("stuck", "group/slow"): "resolved", ("queued", "group/waiting"): "firing"}


async def test_silences_suppress_and_do_not_replay(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    rig = make_rig(store, receivers[:1], clock)
    await create_silence(
        store,
        {"project": "group/*", "event": "broken"},
        clock.now(),
        clock.now() + timedelta(hours=1),
        created_by="ops",
        comment="maintenance",
    )
    assert len(await list_silences(store, active_at=clock.now())) == 1
    await store.upsert_runs([red(1), red(2, project="other/app")])
    await rig.cycle()
    assert [doc["project"] for doc in receivers[0].events] == ["other/app"]
    assert {a.project: a.state for a in await load_alerts(store)} == {
        "group/app": "firing",
        "other/app": "firing",
    }
    clock.advance(2 * 3600)  # silence over, repeat interval not reached: still quiet
    await rig.cycle()
    assert len(receivers[0].events) == 1
    await store.upsert_run(green(3))
    await rig.cycle()
    assert [(d["event"], d["project"]) for d in receivers[0].events[1:]] == [
        ("recovered", "group/app")
    ]


async def test_group_wait_batches_several_refs_into_one_message(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    rig = make_rig(store, receivers[:1], clock, group_wait=30)
    await store.upsert_runs([red(1, project="a/one"), red(2, project="a/two"), red(3, ref="dev")])
    await rig.cycle()
    assert receivers[0].requests == []
    clock.advance(31)
    await rig.cycle()
    (doc,) = receivers[0].events
    assert doc["group"] == "all projects"
    got = sorted((e["event"], e["project"], e["ref"]) for e in doc["events"])
    assert got == [
        ("broken", "a/one", "main"),
        ("broken", "a/two", "main"),
        ("broken", "group/app", "dev"),
    ]


async def test_group_wait_is_a_window_per_route_opened_by_its_first_alert(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    routes = [
        RouteSettings(channels=["hook0"], projects=["a/*"]),
        RouteSettings(channels=["hook0"], projects=["b/*"], name="team b"),
    ]
    rig = make_rig(store, receivers[:1], clock, group_wait=30, routes=routes)
    await store.upsert_run(red(1, project="a/one"))  # opens a/*'s window, until +30 s
    await rig.cycle()
    clock.advance(20)
    # Joins the open window: goes out at +30 s, not +50 s. b/* opens its own window.
    await store.upsert_runs([red(2, project="a/two"), red(3, project="b/one")])
    await rig.cycle()
    clock.advance(9)  # +29 s: nothing due yet
    await rig.cycle()
    assert receivers[0].requests == []
    clock.advance(2)  # +31 s: a/*'s window is over, b/*'s is not
    await rig.cycle()
    (doc,) = receivers[0].events
    assert doc["group"] == "a/*"
    assert sorted(e["project"] for e in doc["events"]) == ["a/one", "a/two"]
    clock.advance(20)  # +51 s: b/* goes out alone, as a single notice
    await rig.cycle()
    assert [(d.get("group"), d.get("project")) for d in receivers[0].events[1:]] == [
        (None, "b/one")
    ]
    # A new alert after a window closed opens a new one.
    await store.upsert_run(red(4, project="a/three"))
    await rig.cycle()
    clock.advance(29)
    await rig.cycle()
    assert len(receivers[0].events) == 2
    clock.advance(2)
    await rig.cycle()
    assert receivers[0].events[2]["project"] == "a/three"


async def test_jobs_stored_after_the_alert_are_named_when_it_is_sent(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    """A GitHub workflow_run webhook breaks the ref before its jobs are fetched."""
    rig = make_rig(store, receivers[:1], clock, group_wait=10)
    await store.upsert_run(red(1))
    await rig.cycle()
    await store.upsert_jobs(
        [
            make_job(run_id="1", job_id="1", name="unit", status=Status.FAILED),
            make_job(run_id="1", job_id="2", name="lint", status=Status.SUCCESS),
            make_job(run_id="1", job_id="3", name="e2e", status=Status.FAILED, allow_failure=True),
        ]
    )
    clock.advance(11)
    await rig.cycle()
    (doc,) = receivers[0].events
    assert (doc["event"], doc["failing_jobs"]) == ("broken", ["unit"])


async def test_stuck_looks_at_every_run_of_a_ref_not_only_the_newest(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    rig = make_rig(store, receivers[:1], clock)
    now = START
    old = active(1, 7200, waited=100)
    newest = active(2, 90)
    await store.upsert_runs([old, newest])
    await rig.cycle()
    (doc,) = receivers[0].events
    assert (doc["event"], doc["run"]["run_id"], doc["red_for_seconds"]) == ("stuck", "1", 7200.0)
    # The newest run finishing changes nothing: the old one is still stuck.
    await store.upsert_run(
        make_run(
            run_id="2",
            status=Status.SUCCESS,
            created_at=at(now - 100),
            started_at=at(now - 90),
            finished_at=at(now - 5),
            updated_at=at(now - 5),
        )
    )
    await rig.cycle()
    assert len(receivers[0].events) == 1
    (alert,) = [a for a in await load_alerts(store) if a.rule == "stuck"]
    assert (alert.state, alert.payload["run_id"]) == ("firing", "1")


async def test_evaluating_some_refs_leaves_the_others(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    rig = make_rig(store, receivers[:1], clock)
    await store.upsert_runs([red(1, project="a/one"), red(2, project="a/two")])
    run = red(1, project="a/one")
    changed = await rig.engine.evaluate({run.ref_key})
    assert [c.decision.fingerprint for c in changed] == [("broken", "gitlab-main", "a/one", "main")]
    assert [a.project for a in await load_alerts(store)] == ["a/one"]
    assert await rig.engine.evaluate(set()) == []
    assert [c.decision.fingerprint[2] for c in await rig.engine.evaluate()] == ["a/two"]


async def test_two_engines_racing_queue_once(
    store_url: str,
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    other = open_store(store_url)
    try:
        await store.upsert_runs([red(i, project=f"p/{i}") for i in range(1, 6)])
        one = make_rig(store, receivers[:1], clock)
        two = make_rig(other, receivers[:1], clock)
        first, second = await asyncio.gather(one.engine.evaluate(), two.engine.evaluate())
        assert len(first) + len(second) == 5
        assert len(await outbox_rows(store)) == 5
    finally:
        await other.close()


async def test_two_workers_claim_disjointly(
    store_url: str,
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    other = open_store(store_url)
    try:
        await store.upsert_runs([red(i, project=f"p/{i:02d}") for i in range(1, 21)])
        one = make_rig(store, receivers[:1], clock, worker_id="w1", batch=1)
        two = make_rig(other, receivers[:1], clock, worker_id="w2", batch=1)
        await one.engine.evaluate()

        async def drain(rig: Rig) -> int:
            handled = 0
            while n := await rig.workers.deliver_once("hook0"):
                handled += n
            return handled

        counts = await asyncio.gather(drain(one), drain(two), drain(one), drain(two))
        assert sum(counts) == 20
        projects = sorted(doc["project"] for doc in receivers[0].events)
        assert projects == [f"p/{i:02d}" for i in range(1, 21)]
        rows = await outbox_rows(store)
        assert all(row.sent_at is not None and row.attempts == 1 for row in rows)
    finally:
        await other.close()


async def test_run_loops_until_stopped(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
    make_rig: MakeRig,
) -> None:
    rig = make_rig(store, receivers[:1], clock)
    await store.upsert_run(red(1))
    stop = asyncio.Event()
    tasks = asyncio.gather(rig.engine.run(stop), rig.workers.run(stop))
    for _ in range(500):
        if receivers[0].events:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(tasks, 5)
    assert events(receivers[0]) == ["broken"]


async def test_a_change_is_evaluated_and_delivered_without_waiting_for_a_tick(
    store: SqlStore,
    receivers: list[WebhookReceiver],
    clock: FakeClock,
) -> None:
    """With an hour between full evaluations and between idle polls, only the store's change
    feed (engine) and `wake` (workers) can send the alert while the loops run."""
    settings = AlertSettings(
        channels=[WebhookChannel(name="hook0", url=receivers[0].url)],
        routes=[RouteSettings(channels=["hook0"])],
        group_wait=timedelta(0),
    )
    channel = build_channel(settings.channels[0])
    workers = DeliveryWorkers(store, {"hook0": channel}, clock, poll_interval=3600)
    engine = AlertEngine(store, settings, clock, interval=3600, on_queued=workers.wake)
    stop = asyncio.Event()
    tasks = asyncio.gather(engine.run(stop), workers.run(stop))
    try:
        for _ in range(500):  # the engine's first full evaluation (of nothing) is done
            await asyncio.sleep(0.01)
            if engine.evaluations:
                break
        assert engine.evaluations == 1
        await store.upsert_runs([red(1, project="a/one"), red(2, project="a/two")])
        for _ in range(1000):
            if len(events(receivers[0])) >= 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(events(receivers[0])) == ["broken", "broken"]
        assert engine.evaluations >= 2
    finally:
        stop.set()
        await asyncio.wait_for(tasks, 5)
        await channel.close()
    assert store.changes.subscribers == 0


async def test_a_broken_notice_names_the_configured_people(
    store: SqlStore, receivers: list[WebhookReceiver], clock: FakeClock, make_rig: MakeRig
) -> None:
    rig = make_rig(store, receivers, clock)
    rig.engine.people = People(
        [PersonSettings(names=["ada@example.com"], slack="U012AB3CD", email="ada@example.com")]
    )
    await store.upsert_runs(
        [green(1), red(2, commit_author="Ada", commit_email="ADA@example.com", author="bot")]
    )
    await rig.cycle()
    (doc,) = receivers[0].events
    assert doc["event"] == "broken"
    assert doc["people"] == [
        {
            "name": "ada@example.com",
            "slack": "U012AB3CD",
            "dingtalk": None,
            "wecom": None,
            "feishu": None,
            "email": "ada@example.com",
        }
    ]
    assert doc["run"]["commit_author"] == "Ada"

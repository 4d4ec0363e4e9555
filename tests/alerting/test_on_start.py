"""`alerts.on_start`: refs already failing when ciwatch first sees them, on the real store (both
engines), delivered through real channels to local receivers (a webhook and a Slack hook)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, Literal

import pytest

from channels.harness import SlackWebhook, WebhookReceiver
from ciwatch.alerting import AlertEngine, DeliveryWorkers
from ciwatch.alerting.engine import START_GROUP
from ciwatch.alerting.silences import create_silence
from ciwatch.channels import Channel, build_channel
from ciwatch.clock import FakeClock
from ciwatch.config.models import AlertSettings, RouteSettings, SlackChannel, WebhookChannel
from ciwatch.domain import Run
from ciwatch.store import SqlStore, open_store
from ciwatch.store.alerting import OutboxRow, load_alerts, outbox_rows
from factories import at

from .test_engine import START, green, red

OnStart = Literal["summary", "each", "none"]

# Five refs whose failing runs finished before the clock's start (red(n) ends at n*1000+300).
ALREADY_RED = [
    red(1, project="group/app"),
    red(2, project="group/lib"),
    red(3, project="group/web", ref="develop"),
    red(4, project="other/api"),
    red(5, project="other/cli"),
]
NAMES = [
    "group/app main",
    "group/lib main",
    "group/web develop",
    "other/api main",
    "other/cli main",
]


class Receivers:
    def __init__(self) -> None:
        self.hook = WebhookReceiver()
        self.slack = SlackWebhook()

    async def start(self) -> None:
        await self.hook.start()
        await self.slack.start()

    async def stop(self) -> None:
        await self.hook.stop()
        await self.slack.stop()


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    started = Receivers()
    await started.start()
    yield started
    await started.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at(START))


class Rig:
    """An engine and delivery workers; channel `hook` (webhook) and `slack`."""

    def __init__(
        self,
        store: SqlStore,
        receivers: Receivers,
        clock: FakeClock,
        *,
        on_start: OnStart = "summary",
        group_wait: float = 0.0,
        routes: list[RouteSettings] | None = None,
    ) -> None:
        self.store = store
        self.settings = AlertSettings(
            channels=[
                WebhookChannel(name="hook", url=receivers.hook.url),
                SlackChannel(name="slack", url=receivers.slack.url),
            ],
            routes=routes or [RouteSettings(channels=["hook", "slack"])],
            group_wait=timedelta(seconds=group_wait),
            on_start=on_start,
        )
        self.channels: dict[str, Channel] = {
            c.name: build_channel(c) for c in self.settings.channels
        }
        self.engine = AlertEngine(store, self.settings, clock)
        self.workers = DeliveryWorkers(store, self.channels, clock, poll_interval=0.01)

    async def cycle(self) -> None:
        await self.engine.evaluate()
        while await self.workers.drain():
            pass

    async def rows(self, channel: str) -> list[OutboxRow]:
        return await outbox_rows(self.store, channel=channel)

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


@pytest.fixture
async def rigs() -> AsyncIterator[list[Rig]]:
    """The rigs a test made (`rig`), their channels closed after it."""
    made: list[Rig] = []
    yield made
    for rig in made:
        await rig.close()


def rig(
    rigs: list[Rig], store: SqlStore, receivers: Receivers, clock: FakeClock, **kwargs: Any
) -> Rig:
    rigs.append(Rig(store, receivers, clock, **kwargs))
    return rigs[-1]


def hook_events(receivers: Receivers) -> list[tuple[str, str, str, bool]]:
    """(event, project, ref, at_start) of every event the webhook received."""
    found = []
    for doc in receivers.hook.events:
        for e in doc.get("events", [doc]):
            found.append((e["event"], e["project"], e["ref"], e["at_start"]))
    return found


def later(n: int, **fields: Any) -> Run:
    """A run after the clock's start (advance the clock past it first)."""
    return red(START // 1000 + n, **fields)


@pytest.mark.parametrize(("mode", "messages"), [("summary", 1), ("each", 1), ("none", 0)])
async def test_first_evaluation_of_already_red_refs(
    store: SqlStore,
    receivers: Receivers,
    clock: FakeClock,
    rigs: list[Rig],
    mode: OnStart,
    messages: int,
) -> None:
    one = rig(rigs, store, receivers, clock, on_start=mode)
    await store.upsert_runs([green(0, project="group/green"), *ALREADY_RED])
    await one.engine.evaluate()
    for channel in ("hook", "slack"):
        rows = await one.rows(channel)
        if mode == "none":
            assert rows == []
            continue
        assert len(rows) == 5
        groups = {row.group_key for row in rows}
        assert groups == ({START_GROUP} if mode == "summary" else {"all projects"})
        assert {row.payload["at_start"] for row in rows} == {mode == "summary"}
    # The alert state is recorded whatever the mode: five firing broken alerts, notified now.
    alerts = await load_alerts(store)
    assert sorted((a.rule, a.project, a.ref, a.state) for a in alerts) == sorted(
        ("broken", run.project, run.ref or "", "firing") for run in ALREADY_RED
    )
    assert {a.last_notified for a in alerts} == {clock.now()}

    while await one.workers.drain():
        pass
    assert len(receivers.hook.events) == len(receivers.slack.messages) == messages
    if mode == "summary":
        (doc,) = receivers.hook.events
        assert doc["summary"] == (
            "5 refs were already failing when ciwatch started: " + ", ".join(NAMES)
        )
        assert {e[3] for e in hook_events(receivers)} == {True}
        (slack,) = receivers.slack.messages
        assert slack["blocks"][0]["text"]["text"] == (
            "🔴 5 refs were already failing when ciwatch started"
        )
        assert slack["text"] == doc["summary"]
    if mode == "each":  # today's behaviour: five broken notices (one evaluation: one group)
        (doc,) = receivers.hook.events
        assert doc["summary"] == "🔴 5 refs broke in all projects"
        assert [e[0] for e in hook_events(receivers)] == ["broken"] * 5


@pytest.mark.parametrize("mode", ["summary", "none"])
async def test_they_recover_repeat_and_a_restart_sends_nothing_again(
    store: SqlStore, receivers: Receivers, clock: FakeClock, rigs: list[Rig], mode: OnStart
) -> None:
    first = rig(rigs, store, receivers, clock, on_start=mode)
    await store.upsert_runs(ALREADY_RED)
    await first.cycle()
    sent = len(receivers.hook.events)
    assert sent == (1 if mode == "summary" else 0)

    # A restart: a new engine (its own start) over the same database queues nothing more.
    clock.advance(60)
    second = rig(rigs, store, receivers, clock, on_start=mode)
    await second.cycle()
    await first.cycle()
    assert len(await second.rows("hook")) == 5 * sent
    assert len(receivers.hook.events) == sent

    # One of them recovers: `recovered`, as for any red ref.
    clock.advance(2000)
    await store.upsert_run(green(START // 1000 + 1, project="group/lib"))
    await second.cycle()
    assert hook_events(receivers)[5 * sent :] == [("recovered", "group/lib", "main", False)]

    # The others are still red after repeat_interval: still_failing each (one group).
    clock.advance(4 * 3600)
    await second.cycle()
    repeats = hook_events(receivers)[5 * sent + 1 :]
    assert sorted((e[0], e[1]) for e in repeats) == [
        ("still_failing", p) for p in ("group/app", "group/web", "other/api", "other/cli")
    ]


async def test_a_ref_that_breaks_after_first_sight_sends_broken(
    store: SqlStore, receivers: Receivers, clock: FakeClock, rigs: list[Rig]
) -> None:
    one = rig(rigs, store, receivers, clock)
    await store.upsert_runs([green(1, project="group/app"), *ALREADY_RED[1:2]])
    await one.cycle()  # group/app watched while green; group/lib already red
    clock.advance(5000)
    # group/app breaks, and a brand-new branch's first run fails, both after the start.
    await store.upsert_runs([later(1, project="group/app"), later(2, ref="feature/x")])
    await one.cycle()
    start, breaks = receivers.hook.events
    assert start["summary"] == "1 ref was already failing when ciwatch started: group/lib main"
    assert breaks["summary"] == "🔴 2 refs broke in all projects"
    assert sorted(hook_events(receivers)[1:]) == [
        ("broken", "group/app", "feature/x", False),
        ("broken", "group/app", "main", False),
    ]


async def test_each_route_and_channel_gets_the_refs_it_selects(
    store: SqlStore, receivers: Receivers, clock: FakeClock, rigs: list[Rig]
) -> None:
    routes = [
        RouteSettings(channels=["hook"], projects=["group/*"], name="team group"),
        RouteSettings(channels=["hook"], projects=["other/cli"]),
        RouteSettings(channels=["slack"], refs=["develop"]),
        RouteSettings(channels=["slack"], events=["recovered"]),
    ]
    one = rig(rigs, store, receivers, clock, routes=routes)
    await create_silence(store, {"project": "group/lib"}, clock.now(), clock.now() + timedelta(1))
    await store.upsert_runs(ALREADY_RED)
    await one.cycle()
    # hook: both of its routes in one summary, the silenced ref left out.
    (doc,) = receivers.hook.events
    assert doc["summary"] == (
        "3 refs were already failing when ciwatch started: "
        "group/app main, group/web develop, other/cli main"
    )
    # slack: only the develop ref, a summary of one.
    (slack,) = receivers.slack.messages
    assert slack["text"] == ("1 ref was already failing when ciwatch started: group/web develop")
    assert len(await load_alerts(store)) == 5  # the unrouted and the silenced ones too


async def test_refs_first_seen_while_the_summary_waits_join_it(
    store: SqlStore, receivers: Receivers, clock: FakeClock, rigs: list[Rig]
) -> None:
    """The initial collection stores refs over several evaluations: each one first seen while
    the summary waits joins it and gives it group_wait more."""
    one = rig(rigs, store, receivers, clock, group_wait=30)
    await store.upsert_runs(ALREADY_RED[:2])
    await one.cycle()
    clock.advance(20)
    await store.upsert_runs(ALREADY_RED[2:4])  # the window now ends at +50 s
    await one.cycle()
    clock.advance(25)  # +45 s: past the first rows' 30 s
    await one.cycle()
    assert receivers.hook.events == []
    await store.upsert_run(ALREADY_RED[4])  # the window now ends at +75 s
    await one.cycle()
    clock.advance(29)  # +74 s
    await one.cycle()
    assert receivers.hook.events == [] and receivers.slack.messages == []
    clock.advance(2)
    await one.cycle()
    (doc,) = receivers.hook.events
    assert doc["summary"] == "5 refs were already failing when ciwatch started: " + ", ".join(NAMES)
    assert len(receivers.slack.messages) == 1
    # A later break is no start summary: `broken` in its route's group, group_wait after it.
    clock.advance(2300)
    await store.upsert_run(later(2, project="group/new"))
    await one.cycle()
    clock.advance(31)
    await one.cycle()
    assert receivers.hook.events[-1]["event"] == "broken"
    assert hook_events(receivers)[-1] == ("broken", "group/new", "main", False)


async def test_two_engines_starting_together_name_each_ref_once(
    store_url: str, store: SqlStore, receivers: Receivers, clock: FakeClock, rigs: list[Rig]
) -> None:
    """Two replicas evaluating at once: the alert rows' compare-and-set gives each ref to one
    of them, only its rows are queued, and both queue in the one start window."""
    other = open_store(store_url)
    try:
        await store.upsert_runs(ALREADY_RED)
        a = rig(rigs, store, receivers, clock, group_wait=30)
        b = rig(rigs, other, receivers, clock, group_wait=30)
        first, second = await asyncio.gather(a.engine.evaluate(), b.engine.evaluate())
        assert len(first) + len(second) == 5
        assert all(change.decision.at_start for change in [*first, *second])
        clock.advance(31)
        await a.cycle()
        await b.cycle()
        assert len(receivers.hook.events) == 1  # one message naming all five
        assert sorted(e[1] for e in hook_events(receivers)) == [r.project for r in ALREADY_RED]
        assert len(await a.rows("hook")) == 5
    finally:
        await other.close()

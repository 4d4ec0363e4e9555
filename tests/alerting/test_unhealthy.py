"""The `unhealthy` alert end to end: ciwatch's own ill health (a target, a source's discovery, a
channel, the store) through the routes, grouping, de-duplication, silences and recovery of CI
alerts, delivered to real webhook receivers on 127.0.0.1, over the store on both engines."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from channels.harness import Reply, WebhookReceiver
from ciwatch.alerting import AlertEngine, DeliveryWorkers
from ciwatch.alerting.health import StoreAlarm
from ciwatch.alerting.silences import create_silence
from ciwatch.channels import Channel, Message, Notice, build_channel
from ciwatch.channels.render import render_text
from ciwatch.channels.slack import render_slack_text
from ciwatch.clock import FakeClock
from ciwatch.config.models import AlertSettings, RouteSettings, WebhookChannel
from ciwatch.domain import DISCOVERY, AlertEventKind, TargetState
from ciwatch.http import Backoff
from ciwatch.store import SqlStore
from ciwatch.store.alerting import load_alerts
from factories import at

START = 100_000
MINUTE = timedelta(minutes=1)


@pytest.fixture
async def receivers() -> AsyncIterator[list[WebhookReceiver]]:
    started = [WebhookReceiver(), WebhookReceiver()]
    for receiver in started:
        await receiver.start()
    yield started
    for receiver in started:
        await receiver.stop()


class Rig:
    def __init__(
        self,
        store: SqlStore,
        receivers: list[WebhookReceiver],
        clock: FakeClock,
        routes: list[RouteSettings] | None = None,
    ) -> None:
        names = [f"hook{i}" for i in range(len(receivers))]
        self.settings = AlertSettings(
            channels=[
                WebhookChannel(name=n, url=r.url) for n, r in zip(names, receivers, strict=True)
            ],
            routes=routes or [RouteSettings(channels=names)],
            group_wait=timedelta(0),
            unhealthy_after=timedelta(minutes=10),
            repeat_interval=timedelta(hours=4),
        )
        self.channels: dict[str, Channel] = {
            c.name: build_channel(c) for c in self.settings.channels
        }
        self.engine = AlertEngine(store, self.settings, clock)
        self.workers = DeliveryWorkers(
            store,
            self.channels,
            clock,
            backoff=Backoff(base=1.0, cap=2.0, rng=random.Random(1)),
            max_attempts=2,
        )

    async def cycle(self) -> None:
        await self.engine.evaluate()
        while await self.workers.drain():
            pass

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


@pytest.fixture
async def rigs() -> AsyncIterator[list[Rig]]:
    made: list[Rig] = []
    yield made
    for rig in made:
        await rig.close()


def sick(source: str, project: str, since: int, reason: str) -> TargetState:
    return TargetState(
        source,
        project,
        healthy=False,
        reason=reason,
        last_polled_at=at(since),
        last_error_at=at(since),
        unhealthy_since=at(since),
    )


def events(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    """Every event received, grouped messages flattened."""
    found: list[dict[str, Any]] = []
    for body in receiver.events:
        found.extend(body.get("events", [body]))
    return found


async def test_a_target_unhealthy_for_unhealthy_after_fires_repeats_and_recovers(
    store: SqlStore, receivers: list[WebhookReceiver], rigs: list[Rig]
) -> None:
    clock = FakeClock(at(START))
    rig = Rig(store, receivers, clock)
    rigs.append(rig)
    await store.save_target_state(sick("gl", "group/app", START, "GET …: HTTP 401 (Bad token)"))
    clock.advance(9 * 60)
    await rig.cycle()
    assert receivers[0].events == []  # not yet: 9 of 10 minutes
    clock.advance(2 * 60)
    await rig.cycle()
    await rig.cycle()  # a second evaluation changes nothing
    for receiver in receivers:
        (event,) = events(receiver)
        assert event["event"] == "unhealthy"
        assert (event["source"], event["project"], event["ref"]) == ("gl", "group/app", "")
        assert event["detail"] == "GET …: HTTP 401 (Bad token)"
        assert event["red_for_seconds"] == 11 * 60
        assert event["run"] is None
        assert "source gl, target group/app" in event["summary"]
    clock.advance(4 * 3600)
    await rig.cycle()
    assert [e["event"] for e in events(receivers[0])] == ["unhealthy", "unhealthy"]
    await store.save_target_state(
        TargetState("gl", "group/app", healthy=True, last_success_at=clock.now())
    )
    await rig.cycle()
    assert [e["event"] for e in events(receivers[0])] == ["unhealthy", "unhealthy", "healthy"]
    (row,) = [a for a in await load_alerts(store) if a.rule == "unhealthy"]
    assert row.state == "resolved"


async def test_a_source_whose_discovery_fails_is_named(
    store: SqlStore, receivers: list[WebhookReceiver], rigs: list[Rig]
) -> None:
    clock = FakeClock(at(START))
    rig = Rig(store, receivers[:1], clock)
    rigs.append(rig)
    error = "folder team: GET https://jenkins/job/team/api/json: HTTP 401"
    await store.save_target_state(sick("jk", DISCOVERY, START, error))
    clock.advance(11 * 60)
    await rig.cycle()
    (event,) = events(receivers[0])
    assert event["project"] == "" and event["detail"] == error
    assert "source jk (discovery)" in event["summary"]


async def test_a_failing_channel_is_reported_through_the_others(
    store: SqlStore, receivers: list[WebhookReceiver], rigs: list[Rig]
) -> None:
    clock = FakeClock(at(START))
    broken, other = receivers
    broken.default = Reply(400, "no such hook")  # refused for good: the notice fails
    rig = Rig(store, receivers, clock)
    rigs.append(rig)
    await store.save_target_state(sick("gl", "group/app", START - 11 * 60, "HTTP 503"))
    await rig.cycle()  # the target's alert: sent to `other`, failed on `broken`
    assert [e["event"] for e in events(other)] == ["unhealthy"]
    clock.advance(11 * 60)
    await rig.cycle()
    about = [e for e in events(other) if e["project"] == "channel:hook0"]
    assert len(about) == 1
    assert about[0]["source"] == "ciwatch"
    assert "no such hook" in about[0]["detail"]
    assert "channel hook0" in about[0]["summary"]
    assert broken.events == []  # never told about itself (nor anything else: it refuses)


async def test_routes_silences_and_grouping_apply(
    store: SqlStore, receivers: list[WebhookReceiver], rigs: list[Rig]
) -> None:
    clock = FakeClock(at(START))
    ops, ci = receivers
    routes = [
        RouteSettings(channels=["hook0"], events=[AlertEventKind.UNHEALTHY]),
        RouteSettings(channels=["hook1"], events=[AlertEventKind.BROKEN]),
    ]
    rig = Rig(store, receivers, clock, routes=routes)
    rigs.append(rig)
    for project in ("a/one", "a/two"):
        await store.save_target_state(sick("gl", project, START, "HTTP 404"))
    await store.save_target_state(sick("gh", "o/quiet", START, "HTTP 401"))
    await create_silence(
        store,
        matchers={"source": "gh"},
        starts_at=at(0),
        ends_at=at(START + 86400),
        created_by="test",
        comment="known",
    )
    clock.advance(11 * 60)
    await rig.cycle()
    assert ci.events == []
    (body,) = ops.events  # two alerts of one evaluation: one grouped message
    assert {e["project"] for e in body["events"]} == {"a/one", "a/two"}
    assert "2 parts of ciwatch unhealthy" in body["summary"]
    await store.save_target_state(TargetState("gl", "a/one", last_success_at=clock.now()))
    await rig.cycle()
    assert [e["event"] for e in events(ops)][-1] == "healthy"  # follows its alert's route


async def test_the_store_alarm_goes_straight_to_the_channels(
    receivers: list[WebhookReceiver],
) -> None:
    receiver = receivers[0]
    channel = build_channel(WebhookChannel(name="hook0", url=receiver.url))
    alarm = StoreAlarm(
        {"hook0": channel}, ["hook0"], instance="host:1", unhealthy_after=timedelta(minutes=10)
    )
    try:
        since = at(START)
        refused = "attempt to write a readonly database"
        await alarm.check(at(START + 60), writable=False, error=refused, since=since)
        assert receiver.events == []
        await alarm.check(at(START + 601), writable=False, error=refused, since=since)
        await alarm.check(at(START + 700), writable=False, error=refused, since=since)
        await alarm.check(at(START + 800), writable=True, error=None, since=None)
        await alarm.check(at(START + 900), writable=True, error=None, since=None)
    finally:
        await channel.close()
    assert [e["event"] for e in receiver.events] == ["unhealthy", "healthy"]
    first = receiver.events[0]
    assert (first["source"], first["project"]) == ("ciwatch", "store")
    assert first["detail"] == f"host:1: {refused}"
    assert "the ciwatch store" in first["summary"]


def test_health_notices_render_in_every_format() -> None:
    notice = Notice(
        kind="unhealthy",
        source="jk",
        project="",
        ref="",
        run=None,
        red_for=timedelta(minutes=12),
        detail="folder team: HTTP 401\r\nInjected: line *bold*",
    )
    single = Message((notice,))
    text = render_text(single)
    assert "Unhealthy: source jk (discovery)" in text
    assert "Unhealthy for" in text and "12m" in text
    assert "\r" not in text and "\nInjected" not in text
    grouped = Message(
        (notice, Notice(kind="healthy", source="ciwatch", project="store", ref="", run=None))
    )
    slack = render_slack_text(grouped)
    assert "the ciwatch store" in slack and "∗bold∗" in slack

"""Several replicas on one database divide the targets through leases
(docs/architecture.md#several-replicas,
`collection.partition`): each target is polled by one replica at a time; a replica that stops
hands its targets over at once, one that dies after its leases expire. Real pollers against the
simulator on a fake clock, two stores on the same database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.runtime import Runtime
from ciwatch.scheduler.loop import LEASE_INTERVALS
from ciwatch.simulator import RunningSimulator, Simulator
from ciwatch.store import SqlStore, leases, open_store
from ciwatch.store.tables import leases as leases_table
from collection.basic import basic_sources
from factories import at

INTERVAL = 60


async def test_a_lease_is_held_until_it_expires_and_renewed_by_its_holder(
    store: SqlStore,
) -> None:
    ttl = timedelta(seconds=180)
    assert await leases.acquire(store, "poll:gl:a", "one", at(0), ttl)
    assert not await leases.acquire(store, "poll:gl:a", "two", at(100), ttl)
    assert await leases.acquire(store, "poll:gl:a", "one", at(100), ttl)  # renewed to 280
    assert not await leases.acquire(store, "poll:gl:a", "two", at(279), ttl)
    assert await leases.acquire(store, "poll:gl:a", "two", at(280), ttl)  # expired: taken
    assert not await leases.acquire(store, "poll:gl:a", "one", at(281), ttl)
    assert await leases.acquire(store, "poll:gl:b", "one", at(281), ttl)
    assert await leases.acquire(store, "other:x", "one", at(281), ttl)
    assert await leases.release(store, "one", prefix="poll:") == 1
    assert await leases.acquire(store, "poll:gl:b", "two", at(282), ttl)
    assert not await leases.acquire(store, "other:x", "two", at(282), ttl)


def _settings(
    running: RunningSimulator, url: str, *, partition: bool = True, missing: bool = False
) -> Settings:
    fast = {"interval": f"{INTERVAL}s", "active_interval": "15s", "requests_per_second": 1000}
    return Settings(
        database=url,
        collection={"retries": 0, "jitter": 0.0, "partition": partition},
        sources=basic_sources(running, more_gitlab=("platform/gone",) if missing else (), **fast),
    )


class Replica:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        assert runtime.scheduler is not None
        self.scheduler = runtime.scheduler
        self.heap: list[tuple[datetime, tuple[str, str]]] = []

    async def round(self) -> set[tuple[str, str]]:
        """Let every target try once, as the run loop would: the targets this replica polled."""
        before = {key: entry.polls for key, entry in self.scheduler.entries.items()}
        for entry in list(self.scheduler.entries.values()):
            await self.scheduler._poll_and_reschedule(entry, self.heap)
        return {key for key, entry in self.scheduler.entries.items() if entry.polls > before[key]}


async def _replica(
    running: RunningSimulator, clock: FakeClock, store: SqlStore, *, missing: bool = False
) -> Replica:
    url = str(store.endpoint.url)
    settings = _settings(running, url, missing=missing)
    runtime = await Runtime.open(settings, clock=clock, store=store)
    replica = Replica(runtime)
    await replica.scheduler.discover()
    return replica


async def _close(replica: Replica) -> None:
    for provider in replica.runtime.providers.values():
        await provider.close()


async def test_replicas_divide_the_targets_and_take_over(
    store_url: str, store: SqlStore, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    _, running, clock = sim
    other = open_store(store_url)
    one = await _replica(running, clock, store)
    two = await _replica(running, clock, other)
    try:
        everything = set(one.scheduler.entries)
        assert len(everything) == 6
        # The first to try takes a target; the other leaves it alone.
        first = await one.round() | await two.round()
        assert first == everything
        assert two.scheduler.skipped == 6  # one took them all, being first every time
        clock.advance(INTERVAL)
        assert await one.round() == everything  # the holder renews
        assert await two.round() == set()
        # `one` dies without releasing: `two` waits until the leases expire.
        clock.advance(LEASE_INTERVALS * INTERVAL - 1)
        assert await two.round() == set()
        clock.advance(1)
        assert await two.round() == everything
        assert await one.round() == set()  # back from the dead, it is now the other one
        # `two` stops cleanly: it releases its leases, `one` takes them at once.
        assert two.scheduler.leases is not None
        assert await leases.release(other, two.scheduler.leases.holder, prefix="poll:") == 6
        assert await one.round() == everything
    finally:
        await _close(one)
        await _close(two)
        await other.close()


async def test_without_partition_every_replica_polls(
    store_url: str, store: SqlStore, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    _, running, clock = sim
    runtime = await Runtime.open(
        _settings(running, store_url, partition=False), clock=clock, store=store
    )
    try:
        assert runtime.scheduler is not None
        assert runtime.scheduler.leases is None
        replica = Replica(runtime)
        await replica.scheduler.discover()
        assert len(await replica.round()) == 6
    finally:
        await _close(replica)


async def test_run_releases_the_leases_when_it_stops(
    store: SqlStore, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    _, running, clock = sim
    replica = await _replica(running, clock, store)
    name, ttl = "poll:gl:platform/backend/api", timedelta(seconds=1)
    try:
        assert await replica.round()
        assert not await leases.acquire(store, name, "someone else", clock.now(), ttl)
        stop = asyncio.Event()
        stop.set()
        await replica.scheduler.run(stop)  # stops at once, then releases its leases
        assert await leases.acquire(store, name, "someone else", clock.now(), ttl)
    finally:
        await _close(replica)


async def test_a_backing_off_target_stays_with_its_replica(
    store_url: str, store: SqlStore, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    """A missing project backs off for 10 intervals: its lease is kept that long (and 3
    intervals more), so the other replica does not poll it meanwhile on a schedule of its own."""
    _, running, clock = sim
    other = open_store(store_url)
    one = await _replica(running, clock, store, missing=True)
    two = await _replica(running, clock, other, missing=True)
    gone = ("gl", "platform/gone")
    try:
        assert gone in await one.round()
        entry = one.scheduler.entries[gone]
        assert entry.due >= clock.now() + timedelta(seconds=9 * INTERVAL)  # 10 × interval ± 10 %
        clock.advance(LEASE_INTERVALS * INTERVAL + 1)
        assert gone not in await two.round()  # without the extension it would take it here
        # Past the next poll and the usual lease, `one` has not renewed it (dead): `two` takes it.
        clock.advance(int((entry.due - clock.now()).total_seconds()) + LEASE_INTERVALS * INTERVAL)
        assert gone in await two.round()
    finally:
        await _close(one)
        await _close(two)
        await other.close()


async def test_the_run_loop_renews_the_leases_in_batches(
    store_url: str, store: SqlStore, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    """While `run` polls, a lease that lasts more than an interval yet is not asked for before
    the poll: the leases of the targets polled are renewed together, one UPDATE per batch, and
    a lease another replica holds is still left alone."""
    _, running, clock = sim
    other = open_store(store_url)
    taken = "poll:gh:octo-org/web"
    assert await leases.acquire(other, taken, "someone else", clock.now(), timedelta(hours=1))
    replica = await _replica(running, clock, store)
    sent: list[str] = []

    def count(*args: object) -> None:
        sent.append(str(args[2]).lstrip().upper())

    scheduler = replica.scheduler
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    mine = set(scheduler.entries) - {("gh", "octo-org/web")}
    try:
        for _ in range(400):
            await asyncio.sleep(0.05)
            if all(scheduler.entries[key].polls >= 1 for key in mine):
                break
        assert all(scheduler.entries[key].polls == 1 for key in mine)
        assert scheduler.entries[("gh", "octo-org/web")].polls == 0
        await asyncio.sleep(1.5)  # the first polls' renewals (none due yet) are behind us
        engine = store._engine.sync_engine
        event.listen(engine, "before_cursor_execute", count)
        try:
            clock.advance(INTERVAL)
            for _ in range(400):
                await asyncio.sleep(0.05)
                expiry = await _expiries(other)
                if all(scheduler.entries[key].polls >= 2 for key in mine) and all(
                    expiry[f"poll:{key[0]}:{key[1]}"] == clock.now() + LEASE_INTERVALS * _ttl()
                    for key in mine
                ):
                    break
        finally:
            event.remove(engine, "before_cursor_execute", count)
        assert all(scheduler.entries[key].polls == 2 for key in mine)
        expiry = await _expiries(other)
        for key in mine:
            assert expiry[f"poll:{key[0]}:{key[1]}"] == clock.now() + LEASE_INTERVALS * _ttl()
        assert expiry[taken] > clock.now() + timedelta(minutes=50)  # still someone else's
        # Only the target another replica holds is asked for again (once per interval).
        assert len([s for s in sent if s.startswith("INSERT INTO LEASES")]) <= 1
        renewals = [s for s in sent if s.startswith("UPDATE LEASES")]
        assert 1 <= len(renewals) < len(mine)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await _close(replica)
        await other.close()


def _ttl() -> timedelta:
    return timedelta(seconds=INTERVAL)


async def _expiries(store: SqlStore) -> dict[str, datetime]:
    async def work(conn: AsyncConnection) -> dict[str, datetime]:
        rows = await conn.execute(select(leases_table.c.name, leases_table.c.expires_at))
        return {str(name): expires for name, expires in rows}

    return await store.read("leases", work)

"""Target state in memory (`scheduler/book.py`): an unchanged poll issues no SQL statement at all,
changes reach the store within one flush and on stop, and a new process with the stored digests
reads no run to know that nothing changed. SQL is counted with a `before_cursor_execute`
listener on the real engine (SQLite and PostgreSQL); the pollers are real, against the
simulator on a fake clock."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, cast

from sqlalchemy import event

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.domain import TargetState
from ciwatch.runtime import Runtime
from ciwatch.scheduler.book import TargetBook
from ciwatch.scheduler.tasks import KnownRuns, poll_target
from ciwatch.simulator import RunningSimulator, Simulator
from ciwatch.store import SqlStore, Store, open_store
from collection.basic import basic_sources


@contextmanager
def statements(store: SqlStore) -> Iterator[list[str]]:
    """Every SQL statement the store's engine sends while the block runs."""
    sent: list[str] = []

    def count(*args: Any) -> None:
        sent.append(str(args[2]))

    engine = store._engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


class SpyStore:
    """Counts the store calls a scheduler makes, and the runs its lookups ask for."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        async def spied(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if name == "get_runs":
                self.calls["runs looked up"] += len(args[0])
            return await attr(*args, **kwargs)

        return spied


def _settings(running: RunningSimulator, **options: Any) -> Settings:
    return Settings(
        database="sqlite:///unused.db",
        collection={"retries": 0, "jitter": 0.0},
        sources=basic_sources(running, **options),
    )


async def _close_providers(runtime: Runtime) -> None:
    for provider in runtime.providers.values():
        await provider.close()


async def test_an_unchanged_poll_issues_no_sql_statement(
    store: SqlStore, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    _, running, clock = sim
    runtime = await Runtime.open(_settings(running), clock=clock, store=store)
    try:
        assert runtime.scheduler is not None
        targets = await runtime.scheduler.discover()
        assert {t.source for t in targets} == {"gl", "gh", "jk"}
        book = TargetBook(store)
        await book.load()
        known = {t.key: KnownRuns() for t in targets}
        for target in targets:  # the backfill: runs stored, states in memory
            first = await poll_target(
                runtime.providers[target.source],
                store,
                target,
                now=clock.now(),
                known=known[target.key],
                book=book,
            )
            assert first.ok and first.changed > 0
        assert book.dirty == len(targets)
        assert await book.flush() == len(targets)

        async def poll_all() -> list[Any]:
            return [
                await poll_target(
                    runtime.providers[target.source],
                    store,
                    target,
                    now=clock.now(),
                    known=known[target.key],
                    book=book,
                )
                for target in targets
            ]

        with statements(store) as sent:
            outcomes = await poll_all()
        assert sent == []
        assert all(o.ok and o.changed == 0 for o in outcomes)
        # GitLab's digest shrank from the backfill to the overlap window: written once.
        await book.flush()
        with statements(store) as sent:
            outcomes = await poll_all()
        assert sent == []
        assert all(o.ok and o.changed == 0 for o in outcomes)
        assert book.dirty == 0  # timestamps alone wait for the heartbeat or the final flush
        by_source = {o.target.source: o for o in outcomes}
        # GitHub answered 304 and Jenkins the same body: neither was decoded (no runs seen).
        assert by_source["gh"].not_modified and by_source["gh"].seen == 0
        assert by_source["jk"].not_modified and by_source["jk"].seen == 0
    finally:
        await _close_providers(runtime)


async def test_a_cycle_of_unchanged_targets_writes_the_store_once(
    store: SqlStore, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    """`poll --once`: target states read in one query and written in one transaction, and no
    statement per target."""
    _, running, clock = sim
    runtime = await Runtime.open(_settings(running), clock=clock, store=store)
    try:
        assert runtime.scheduler is not None
        await runtime.scheduler.run_once()
        with statements(store) as sent:
            report = await runtime.scheduler.run_once()
    finally:
        await _close_providers(runtime)
    assert not report.failed and len(report.outcomes) == 6
    touching_runs = [s for s in sent if " runs" in s or " jobs" in s]
    assert touching_runs == []
    target_writes = [s for s in sent if s.lstrip().upper().startswith("INSERT INTO TARGETS")]
    # The discovery states of the three sources, and one multi-row write of the polls' states.
    assert len(target_writes) <= 3 + 1
    assert len(sent) < 20  # independent of the number of targets


async def test_state_changes_reach_the_store_within_a_flush_and_on_stop(
    store_url: str, store: SqlStore, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    _, running, clock = sim
    fast = {"interval": "0.2s", "active_interval": "0.2s", "requests_per_second": 1000}
    runtime = await Runtime.open(_settings(running, **fast), clock=clock, store=store)
    other = open_store(store_url)  # another process's view: the rows, no overlay
    stop = asyncio.Event()
    try:
        assert runtime.scheduler is not None
        task = asyncio.create_task(runtime.scheduler.run(stop))
        rows: dict[tuple[str, str], TargetState] = {}
        for _ in range(300):  # the first polls' cursors and ETags, within about a second
            await asyncio.sleep(0.05)
            rows = {s.key: s for s in await other.target_states() if not s.is_discovery}
            if len(rows) == 6 and all(s.digest for s in rows.values()):
                break
        assert len(rows) == 6
        assert rows[("gh", "octo-org/web")].etag
        assert rows[("gl", "platform/backend/api")].cursor
        assert (rows[("jk", "team/app")].etag or "").startswith("b2:")
        # In this process the view is current at once (`/api/v1/targets`, `/readyz`).
        assert store.overlay is runtime.scheduler.book
        clock.advance(30)
        polled = clock.now()
        for _ in range(300):
            await asyncio.sleep(0.05)
            live = {s.key: s for s in await store.target_states() if not s.is_discovery}
            if all(s.last_polled_at == polled for s in live.values()):
                break
        assert all(s.last_polled_at == polled for s in live.values())
        stop.set()
        await asyncio.wait_for(task, 10)
        # A clean stop writes everything, the timestamps of unchanged polls included.
        assert store.overlay is None
        after = {s.key: s for s in await other.target_states() if not s.is_discovery}
        assert after == live
    finally:
        stop.set()
        await _close_providers(runtime)
        await other.close()


async def test_a_new_process_with_a_stored_digest_reads_no_run(
    store: SqlStore, sim: tuple[Simulator, RunningSimulator, FakeClock]
) -> None:
    _, running, clock = sim
    first = await Runtime.open(_settings(running), clock=clock, store=store)
    try:
        assert first.scheduler is not None
        await first.scheduler.run_once()
    finally:
        await _close_providers(first)

    async def fresh_cycle() -> tuple[SpyStore, int]:
        spy = SpyStore(store)
        runtime = await Runtime.open(_settings(running), clock=clock, store=cast(Store, spy))
        try:
            assert runtime.scheduler is not None
            report = await runtime.scheduler.run_once()
        finally:
            await _close_providers(runtime)
        assert not report.failed
        # GitLab's overlap shows its newest pipelines again: seen, and known from the digest.
        return spy, sum(o.seen for o in report.outcomes if o.target.source == "gl")

    spy, seen = await fresh_cycle()
    assert seen > 0
    assert spy.calls["runs looked up"] == 0
    assert spy.calls["get_target_state"] == 0  # all read at once
    assert spy.calls["target_states"] <= 2  # the book's load, discovery's forget check
    # Without the digests (and the answers' tags, which would say "not modified" without any
    # decode: GitLab's overlap page is byte for byte the same) the same cycle reads each run
    # the lists show.
    states = await store.target_states()
    await store.save_target_states([replace(s, digest=None, etag=None) for s in states])
    spy, seen = await fresh_cycle()
    assert spy.calls["runs looked up"] >= seen > 0


def test_a_digest_survives_encoding_and_a_bad_one_is_empty() -> None:
    known = KnownRuns()
    known.replace([5, -3, 2**63 - 1, -(2**63)])
    again = KnownRuns.decode(known.encode())
    assert len(again) == 4 and all(k in again for k in (5, -3, 2**63 - 1, -(2**63)))
    assert len(KnownRuns.decode(None)) == 0
    assert len(KnownRuns.decode("r1:not base64!")) == 0
    assert len(KnownRuns.decode("r1:AAA=")) == 0  # not a whole number of hashes
    assert len(KnownRuns.decode("something else")) == 0

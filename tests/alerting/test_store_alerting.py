"""The outbox and alert SQL directly: claims, leases, records, compare-and-set."""

from __future__ import annotations

import ast
import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ciwatch.alerting.rules import AlertRow, Decision, applied
from ciwatch.domain import AlertEventKind
from ciwatch.store import SqlStore, open_store
from ciwatch.store.alerting import (
    Change,
    NewNotice,
    add_silence,
    apply_changes,
    claim,
    list_silences,
    load_alerts,
    outbox_rows,
    prune_alerting,
    record,
)
from factories import at, make_run

LEASE = timedelta(minutes=5)
KEY = ("broken", "gitlab-main", "group/app", "main")


def fire(previous: AlertRow | None, channels: tuple[str, ...] = ("a",)) -> Change:
    decision = Decision(KEY, "fire", previous, AlertEventKind.BROKEN, make_run(), {"sha": "x"})
    notices = [NewNotice("k1", name, {"n": name}, at(0)) for name in channels]
    return Change(decision, notices)


async def test_compare_and_set_applies_a_decision_once(store: SqlStore) -> None:
    assert len(await apply_changes(store, [fire(None, ("a", "b"))], at(0))) == 1
    # A second evaluator that decided from the same (absent) row loses.
    assert await apply_changes(store, [fire(None, ("a", "b"))], at(1)) == []
    (row,) = await load_alerts(store)
    assert (row.state, row.last_notified) == ("firing", at(0))
    assert [(r.channel, r.dedup_key) for r in await outbox_rows(store)] == [
        ("a", "k1"),
        ("b", "k1"),
    ]
    # Deciding from a stale copy of the row loses too.
    stale = applied(fire(None).decision, at(-5))
    resolve = Decision(KEY, "resolve", stale, None, make_run(), {})
    assert await apply_changes(store, [Change(resolve, ())], at(2)) == []
    resolve = Decision(KEY, "resolve", row, None, make_run(), {})
    assert len(await apply_changes(store, [Change(resolve, ())], at(2))) == 1
    (row,) = await load_alerts(store)
    assert row.state == "resolved"


async def test_a_claim_is_exclusive_until_its_lease_expires(store: SqlStore) -> None:
    await apply_changes(store, [fire(None)], at(0))
    (mine,) = await claim(store, "a", "w1", at(10), lease=LEASE, limit=10)
    assert mine.claimed_by == "w1"
    assert await claim(store, "a", "w2", at(20), lease=LEASE, limit=10) == []
    # w1 died between send and record: after the lease another worker takes the row over
    # (the documented at-least-once window), and w1's late record changes nothing.
    (theirs,) = await claim(store, "a", "w2", at(10 + 301), lease=LEASE, limit=10)
    assert theirs.id == mine.id
    assert await record(store, [mine.id], "w1", at(320), outcome="sent") == 0
    assert await record(store, [mine.id], "w2", at(320), outcome="sent") == 1
    assert await claim(store, "a", "w3", at(9999), lease=LEASE, limit=10) == []
    (row,) = await outbox_rows(store)
    assert (row.sent_at, row.attempts, row.claimed_by) == (at(320), 1, None)


async def test_retry_waits_and_failure_is_final(store: SqlStore) -> None:
    await apply_changes(store, [fire(None)], at(0))
    (row,) = await claim(store, "a", "w1", at(0), lease=LEASE, limit=10)
    await record(store, [row.id], "w1", at(1), outcome="retry", error="HTTP 503", retry_at=at(60))
    assert await claim(store, "a", "w1", at(59), lease=LEASE, limit=10) == []
    (row,) = await claim(store, "a", "w1", at(60), lease=LEASE, limit=10)
    await record(store, [row.id], "w1", at(61), outcome="failed", error="HTTP 400 nope")
    assert await claim(store, "a", "w1", at(9999), lease=LEASE, limit=10) == []
    (row,) = await outbox_rows(store)
    assert (row.attempts, row.failed_at, row.last_error) == (2, at(61), "HTTP 400 nope")


def keyed(n: int, *, group: str | None = "g", due: int = 30) -> Change:
    key = ("broken", "gitlab-main", f"group/p{n}", "main")
    decision = Decision(key, "fire", None, AlertEventKind.BROKEN, make_run(), {})
    return Change(decision, [NewNotice(f"k{n}", "a", {"n": n}, at(n + due), group)])


async def test_a_group_window_is_opened_by_its_first_row_and_joined_by_later_ones(
    store: SqlStore,
) -> None:
    await apply_changes(store, [keyed(0)], at(0))  # due at 30
    await apply_changes(store, [keyed(10), keyed(11, group="other")], at(10))
    await apply_changes(store, [keyed(12, group=None)], at(12))
    due = {row.dedup_key: (row.group_key, row.next_attempt_at) for row in await outbox_rows(store)}
    assert due == {
        "k0": ("g", at(30)),
        "k10": ("g", at(30)),  # joined k0's window instead of waiting until 40
        "k11": ("other", at(41)),
        "k12": (None, at(42)),
    }
    # Once the window's rows are claimed, a new row opens a new window.
    assert len(await claim(store, "a", "w1", at(30), lease=LEASE, limit=10)) == 2
    await apply_changes(store, [keyed(31)], at(31))
    (row,) = [r for r in await outbox_rows(store) if r.dedup_key == "k31"]
    assert row.next_attempt_at == at(61)


async def test_prune_deletes_only_what_is_over(store: SqlStore) -> None:
    await apply_changes(store, [keyed(n, due=0) for n in range(4)], at(0))
    rows = await claim(store, "a", "w1", at(5), lease=LEASE, limit=10)
    ids = [row.id for row in rows]
    await record(store, ids[:1], "w1", at(10), outcome="sent")
    await record(store, ids[1:2], "w1", at(10), outcome="failed", error="HTTP 400")
    await record(store, ids[2:3], "w1", at(10), outcome="retry", error="HTTP 503", retry_at=at(9e6))
    # ids[3] stays claimed (pending)
    (firing, *_) = await load_alerts(store)
    resolve = Decision(firing.fingerprint, "resolve", firing, None, make_run(), {})
    await apply_changes(store, [Change(resolve, ())], at(20))
    await add_silence(store, {"project": "a"}, at(0), at(50))
    await add_silence(store, {"project": "b"}, at(0), at(10_000))
    nothing = await prune_alerting(store, at(5))
    assert (nothing.outbox, nothing.alerts, nothing.silences) == (0, 0, 0)
    done = await prune_alerting(store, at(100))
    assert (done.outbox, done.alerts, done.silences) == (2, 1, 1)
    assert sorted(row.id for row in await outbox_rows(store)) == ids[2:]
    assert {a.state for a in await load_alerts(store)} == {"firing"}
    assert [s.matchers for s in await list_silences(store)] == [{"project": "b"}]


def test_rules_module_is_pure() -> None:
    """rules.py imports only the standard library and the pure domain model."""
    import ciwatch.alerting.rules as rules

    tree = ast.parse(Path(rules.__file__).read_text())
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module is not None
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    own = {name for name in imported if name.startswith("ciwatch")}
    assert own <= {"ciwatch.domain"}
    assert not imported & {"sqlalchemy", "aiohttp", "asyncio"}


async def test_two_evaluators_queuing_one_group_at_once_share_its_window(
    store_url: str, store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick and the full evaluation (or two replicas) each queue a first row of one group
    at the same moment: the second waits for the first and joins its window instead of opening
    one of its own (PostgreSQL: an advisory lock per window; SQLite: one writer at a time)."""
    import ciwatch.store.outbox as store_outbox

    looked = store_outbox._open_window

    async def slowly(*args: Any) -> Any:
        found = await looked(*args)
        await asyncio.sleep(0.3)  # the other evaluator would look now, and find nothing
        return found

    monkeypatch.setattr(store_outbox, "_open_window", slowly)
    other = open_store(store_url)
    try:
        await asyncio.gather(
            apply_changes(store, [keyed(0)], at(0)), apply_changes(other, [keyed(5)], at(5))
        )
    finally:
        await other.close()
    due = {row.dedup_key: row.next_attempt_at for row in await outbox_rows(store)}
    assert due["k0"] == due["k5"]

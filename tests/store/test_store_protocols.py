"""The store protocols are the seam (docs/architecture.md#storage): `SqlStore` implements every
one of them, with the protocol's own signatures, and nothing in `src/` asks whether a store is
the SQL one. Each flow below goes through the protocol methods only, on both engines."""

from __future__ import annotations

import ast
import inspect
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import ciwatch
from ciwatch.alerting.rules import Decision
from ciwatch.domain import AlertEventKind, Status
from ciwatch.store import SqlStore, Store
from ciwatch.store.alerting import Change, NewNotice
from ciwatch.store.base import (
    PROTOCOLS,
    AlertRowStore,
    AlertStore,
    LeaseStore,
    OutboxStore,
    ReliabilityStore,
    RunStore,
    SilenceStore,
    StatsStore,
)
from factories import at, make_run

SRC = Path(ciwatch.__file__).parent


def _names(node: ast.expr) -> set[str]:
    """The names an isinstance class argument mentions (`SqlStore`, `sql.SqlStore`, tuples)."""
    found: set[str] = set()
    for part in ast.walk(node):
        if isinstance(part, ast.Name):
            found.add(part.id)
        elif isinstance(part, ast.Attribute):
            found.add(part.attr)
    return found


def _sql_checks(path: Path) -> list[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"isinstance", "issubclass"}
        and len(node.args) == 2
        and "SqlStore" in _names(node.args[1])
    ]


def test_no_module_asks_whether_a_store_is_the_sql_store() -> None:
    found = {
        str(path.relative_to(SRC)): lines
        for path in sorted(SRC.rglob("*.py"))
        if (lines := _sql_checks(path))
    }
    assert found == {}


def test_the_check_finds_such_a_question(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("if isinstance(store, (int, sql.SqlStore)):\n    pass\n")
    assert _sql_checks(sample) == [1]


def test_only_the_store_package_names_the_sql_store() -> None:
    """Outside `ciwatch.store` code types against the protocols, never against `SqlStore`."""
    naming = sorted(
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.relative_to(SRC).parts[0] != "store" and "SqlStore" in path.read_text()
    )
    assert naming == []


def _members(protocol: type) -> dict[str, Any]:
    members: dict[str, Any] = {}
    for klass in reversed(protocol.__mro__):
        if klass is object or not getattr(klass, "_is_protocol", False):
            continue
        for name, value in vars(klass).items():
            if callable(value) and not name.startswith("_"):
                members[name] = value
    return members


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_sql_store_methods_have_the_protocols_signatures(protocol: type) -> None:
    members = _members(protocol)
    assert members, protocol
    for name, declared in members.items():
        implemented = getattr(SqlStore, name)
        assert inspect.iscoroutinefunction(implemented) == inspect.iscoroutinefunction(declared)
        assert inspect.signature(implemented).parameters.keys() == (
            inspect.signature(declared).parameters.keys()
        ), name
        for param in inspect.signature(declared).parameters.values():
            mine = inspect.signature(implemented).parameters[param.name]
            assert mine.kind == param.kind, (name, param)
            if param.default is Ellipsis:  # "has a default": the query module's
                assert mine.default is not inspect.Parameter.empty, (name, param)
            else:
                assert mine.default == param.default, (name, param)


async def test_an_open_sql_store_is_every_protocol(store: SqlStore) -> None:
    assert all(isinstance(store, protocol) for protocol in PROTOCOLS)
    assert isinstance(store, Store)
    assert not isinstance(object(), RunStore | AlertStore | LeaseStore | ReliabilityStore)
    assert not isinstance(object(), StatsStore)


def _fire(n: int, channel: str = "chat") -> Change:
    run = make_run(project=f"group/p{n}", status=Status.FAILED)
    key = ("broken", run.source, run.project, "main")
    decision = Decision(key, "fire", None, AlertEventKind.BROKEN, run, {"run_id": run.run_id})
    return Change(decision, [NewNotice(f"k{n}", channel, {"kind": "broken"}, at(0))])


async def _alerting_round_trip(store: AlertStore) -> None:
    assert len(await store.apply_changes([_fire(1)], at(0))) == 1
    assert len(await store.apply_changes([_fire(2)], at(1))) == 1
    assert await store.apply_changes([_fire(1)], at(1)) == []  # decided from a stale row
    assert [row.project for row in await store.load_alerts(firing_only=True)] == [
        "group/p1",
        "group/p2",
    ]
    assert await store.firing_count() == 2
    views = await store.alert_views(state="firing", limit=1)
    assert [(v.project, [c.outcome for c in v.channels]) for v in views] == [
        ("group/p2", ["pending"])
    ]
    overview = await store.alerts_overview(firing_limit=1, history_limit=5)
    assert (len(overview.firing), overview.firing_total, overview.history) == (1, 2, [])
    with pytest.raises(ValueError, match="unknown alert state"):
        await store.alert_views(state="asleep")

    claimed = await store.claim_outbox("chat", "w1", at(1), lease=timedelta(minutes=1), limit=5)
    assert [row.dedup_key for row in claimed] == ["k1", "k2"]
    assert await store.claim_outbox("chat", "w2", at(2), lease=timedelta(minutes=1), limit=5) == []
    assert await store.record_outbox([claimed[0].id], "w1", at(3), outcome="sent") == 1
    failed = await store.record_outbox([claimed[1].id], "w1", at(3), outcome="failed", error="no")
    assert failed == 1
    assert [(r.sent_at, r.failed_at) for r in await store.outbox_rows(channel="chat")] == [
        (at(3), None),
        (None, at(3)),
    ]
    (trouble,) = await store.channel_troubles(["chat", "quiet"])
    assert (trouble.channel, trouble.error) == ("chat", "no")

    silence = await store.add_silence({"project": "group/*"}, at(0), at(100), comment="deploy")
    assert [s.id for s in await store.list_silences(active_at=at(50))] == [silence]
    assert await store.list_silences(active_at=at(100)) == []
    expired = await store.expire_silence(silence, at(10))
    assert expired is not None and expired.ends_at == at(10)
    assert await store.get_silence(silence) == expired
    assert await store.expire_silence(silence + 1, at(10)) is None
    later = await store.add_silence({"ref": "main"}, at(0), at(5))
    assert await store.delete_silence(later) is True
    assert await store.delete_silence(later) is False

    pruned = await store.prune_alerting(at(1000))
    assert (pruned.outbox, pruned.alerts, pruned.silences) == (2, 0, 1)


async def test_alerts_outbox_and_silences_through_the_protocol(store: SqlStore) -> None:
    await _alerting_round_trip(store)


async def test_evaluation_reads_through_the_protocol(store: SqlStore) -> None:
    rows: AlertRowStore = store
    run = make_run(status=Status.RUNNING, started_at=at(0), finished_at=None)
    await store.upsert_run(run)
    inputs = await rows.evaluation_inputs(at(600), running_before=at(60), queued_before=at(60))
    assert [state.project for state in inputs.states] == [run.project]
    assert [waiting.run_id for waiting in inputs.waiting] == [run.run_id]
    assert (inputs.alerts, inputs.silences) == ([], [])
    assert await rows.failing_jobs_of([run.key]) == {}


async def test_leases_through_the_protocol(store: SqlStore) -> None:
    leases: LeaseStore = store
    assert await leases.acquire_lease("poll:a", "one", at(0), timedelta(seconds=30))
    assert not await leases.acquire_lease("poll:a", "two", at(10), timedelta(seconds=30))
    assert await leases.renew_leases(["poll:a", "poll:b"], "one", at(60)) == {"poll:a"}
    assert not await leases.acquire_lease("poll:a", "two", at(40), timedelta(seconds=30))
    assert await leases.release_leases("one", prefix="poll:") == 1
    assert await leases.acquire_lease("poll:a", "two", at(41), timedelta(seconds=30))


async def test_reliability_through_the_protocol(store: SqlStore) -> None:
    reliability: ReliabilityStore = store
    failed = make_run(run_id="1", status=Status.FAILED, created_at=at(0), finished_at=at(60))
    fixed = make_run(run_id="2", status=Status.SUCCESS, created_at=at(100), finished_at=at(160))
    await store.upsert_runs([failed, fixed])
    now = at(3600)
    stats = await reliability.recovery_stats(now=now, window=timedelta(days=1))
    (one,) = stats.values()
    assert (one.decided, one.failed, one.breaks, one.mean_seconds) == (2, 1, 1, 100.0)
    assert await reliability.flaky_jobs(now=now, window=timedelta(days=1)) == []


def test_silence_store_and_outbox_store_are_parts_of_the_alert_store() -> None:
    assert issubclass(AlertStore, AlertRowStore)
    assert issubclass(AlertStore, OutboxStore)
    assert issubclass(AlertStore, SilenceStore)

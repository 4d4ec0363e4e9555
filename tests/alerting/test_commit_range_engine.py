"""When the alert engine asks a source's provider for the commits since green (issue 13): once
per break that a route sends, not for a ref a start summary names, nor when no route matches or
a silence mutes it, and a provider error leaves only the list out. The provider here is a small real
`CommitRangeReader` over the run store (the simulator-backed pollers are exercised end to end in
tests/channels/test_commit_range.py); the store is the real one, on both engines."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from ciwatch.alerting import AlertEngine
from ciwatch.alerting.silences import create_silence
from ciwatch.clock import FakeClock
from ciwatch.config.models import AlertSettings, RouteSettings, WebhookChannel
from ciwatch.domain import CommitRange, RangeCommit, Run, RunKey
from ciwatch.errors import Unavailable
from ciwatch.providers.base import CommitRangeReader
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import SqlStore
from ciwatch.store.alerting import outbox_rows
from ciwatch.supervisor import Supervisor
from factories import at

from .test_engine import START, green, red


class Reader:
    """Lists one commit per SHA between the two runs, or fails like an unreachable server."""

    def __init__(self, *, failing: bool = False, broken: bool = False) -> None:
        self.asked: list[tuple[str, str]] = []
        self.failing = failing
        self.broken = broken

    async def commits_between(self, green: Run, failing: Run) -> CommitRange:
        self.asked.append((green.run_id, failing.run_id))
        if self.failing:
            raise Unavailable("GET …/compare: HTTP 503")
        if self.broken:
            raise KeyError("a parser's bug")
        return CommitRange((RangeCommit(failing.sha or "", "Break it", login="ada"),), total=1)


def engine(
    store: SqlStore,
    reader: Reader,
    *,
    refs: list[str] | None = None,
    on_start: Literal["summary", "each", "none"] = "each",
) -> AlertEngine:
    settings = AlertSettings(
        channels=[WebhookChannel(name="hook", url="http://127.0.0.1:9/")],
        routes=[RouteSettings(channels=["hook"], refs=refs or ["*"])],
        group_wait=timedelta(0),
        on_start=on_start,
    )
    typed: CommitRangeReader = reader
    return AlertEngine(store, settings, FakeClock(at(START)), commit_ranges={"gitlab-main": typed})


async def test_once_per_break_and_kept_on_the_run(store: SqlStore) -> None:
    reader = Reader()
    alerting = engine(store, reader)
    await store.upsert_runs([green(1), red(2)])
    await alerting.evaluate()
    await alerting.evaluate()  # nothing new: nothing asked
    assert reader.asked == [("1", "2")]
    (row,) = await outbox_rows(store)
    assert row.payload["commit_range"]["commits"][0]["login"] == "ada"
    kept = await store.commit_range(RunKey("gitlab-main", "group/app", "2"))
    assert kept is not None and kept.total == 1


async def test_not_for_a_start_summary(store: SqlStore) -> None:
    await store.upsert_runs(
        [green(1), red(2), green(3, project="group/lib"), red(4, project="group/lib")]
    )
    reader = Reader()
    await engine(store, reader, on_start="summary").evaluate()
    assert reader.asked == []  # both refs were red before the engine started
    assert len(await outbox_rows(store)) == 2  # and are in the summary


async def test_not_for_a_ref_no_route_sends(store: SqlStore) -> None:
    await store.upsert_runs([green(1), red(2)])
    reader = Reader()
    await engine(store, reader, refs=["release/*"]).evaluate()
    assert reader.asked == []
    assert await outbox_rows(store) == []


async def test_not_for_a_silenced_ref(store: SqlStore) -> None:
    await store.upsert_runs([green(1), red(2)])
    await create_silence(store, {"project": "group/app"}, at(START - 60), at(START + 3600))
    reader = Reader()
    await engine(store, reader).evaluate()
    assert reader.asked == []
    assert await outbox_rows(store) == []


async def test_a_provider_error_leaves_only_the_list_out(store: SqlStore) -> None:
    reader = Reader(failing=True)
    await store.upsert_runs([green(1), red(2)])
    await engine(store, reader).evaluate()
    assert reader.asked == [("1", "2")]
    (row,) = await outbox_rows(store)
    assert row.payload["commit_range"] is None
    assert row.payload["green_sha"] == f"{1:040d}"
    assert await store.commit_range(RunKey("gitlab-main", "group/app", "2")) is None


async def test_a_reader_bug_leaves_only_the_list_out_and_is_counted(store: SqlStore) -> None:
    """Not a ProviderError: a bug must not hold the notice back evaluation after evaluation."""
    reader = Reader(broken=True)
    metrics = CollectionMetrics()
    await store.upsert_runs([green(1), red(2)])
    alerting = engine(store, reader)
    alerting.supervisor = Supervisor(metrics)
    applied = await alerting.evaluate()
    assert [change.decision.notify.value for change in applied if change.decision.notify] == [
        "broken"
    ]
    (row,) = await outbox_rows(store)
    assert row.payload["commit_range"] is None
    assert metrics.task_errors["alert-engine"] == 1

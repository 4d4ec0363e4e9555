"""`/metrics` (docs/architecture.md#metrics): names, types, labels and values over a known store;
the snapshot cache; counters that never go down; promtool's lint."""

from __future__ import annotations

import asyncio
import subprocess
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from ciwatch.clock import FakeClock
from ciwatch.domain import DISCOVERY, PAUSED_UNTIL, Status, TargetState
from ciwatch.metrics import METRICS, MetricsRenderer, SnapshotCache, render
from ciwatch.runtime import Runtime
from ciwatch.store import SqlStore, open_store
from ciwatch.store import snapshot as queries
from ciwatch.web.app import create_app
from factories import T0, at, make_run

from .harness import fill, history, require_tool

REF = {"source": "gitlab-main", "provider": "gitlab", "project": "group/app", "ref": "main"}
GH = {"source": "gh", "provider": "github", "project": "octo/repo", "ref": "main"}
STATUSES = [s.value for s in Status]


class Exposition:
    """A parsed exposition: families by name (counters under their `_total` name)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families: dict[str, Any] = {}
        for family in text_string_to_metric_families(text):
            name = family.name + "_total" if family.type == "counter" else family.name
            self.families[name] = family

    def samples(self, name: str) -> list[Sample]:
        return [
            s for s in self.families[name].samples if s.name in (name, name.removesuffix("_total"))
        ]

    def value(self, name: str, **labels: str) -> float | None:
        found = [s.value for s in self.samples(name) if s.labels == labels]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else None

    def series(self, name: str, **labels: str) -> dict[str, float]:
        """status -> value of the series matching `labels` (for the `status` label)."""
        return {
            s.labels["status"]: s.value
            for s in self.samples(name)
            if all(s.labels.get(k) == v for k, v in labels.items())
        }


async def scrape(client: httpx.AsyncClient) -> Exposition:
    reply = await client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return Exposition(reply.text)


async def test_every_family_is_declared_even_when_empty(client: httpx.AsyncClient) -> None:
    metrics = await scrape(client)
    assert set(metrics.families) == {spec.name for spec in METRICS}
    for spec in METRICS:
        family = metrics.families[spec.name]
        assert family.type == spec.type
        assert family.documentation == spec.help
        assert f"# TYPE {spec.name} {spec.type}" in metrics.text
    assert metrics.samples("ciwatch_webhooks_total") == []
    assert metrics.samples("ciwatch_notifications_total") == []
    assert metrics.value("ciwatch_store_up") == 1.0


async def test_pipeline_metrics(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    m = await scrape(client)
    # The newest run of main is running: status 1 for running, 0 for every other status.
    assert m.series("ci_pipeline_status", **REF) == {s: float(s == "running") for s in STATUSES}
    # ... its duration is that of the newest *finished* run (3, failed), its queue time its own.
    assert m.value("ci_pipeline_last_duration_seconds", **REF) == 290.0
    assert m.value("ci_pipeline_last_queued_seconds", **REF) == 42.0
    assert m.value("ci_pipeline_last_run_timestamp_seconds", **REF) == at(3000).timestamp()
    # A canceled newest run is finished: its own duration counts.
    assert m.series("ci_pipeline_status", **GH) == {s: float(s == "canceled") for s in STATUSES}
    assert m.value("ci_pipeline_last_duration_seconds", **GH) == 7.0
    # A run without a ref belongs to ref "".
    other = {"source": "gitlab-main", "provider": "gitlab", "project": "group/other", "ref": ""}
    assert m.series("ci_pipeline_status", **other)["success"] == 1.0
    refs = {
        (s.labels["source"], s.labels["project"], s.labels["ref"])
        for s in m.samples("ci_pipeline_status")
    }
    assert refs == {
        ("gitlab-main", "group/app", "main"),
        ("gitlab-main", "group/app", "feature/x"),
        ("gitlab-main", "group/other", ""),
        ("gh", "octo/repo", "main"),
    }
    assert len(m.samples("ci_pipeline_status")) == 4 * len(STATUSES)


async def test_ref_failing_is_the_refs_colour(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    m = await scrape(client)
    states = {(s.source, s.project, s.ref): s for s in await store.ref_states()}
    failing = {
        (s.labels["source"], s.labels["project"], s.labels["ref"]): s.value
        for s in m.samples("ci_ref_failing")
    }
    # One sample per ref: 1 for main (failed run 3, newer run 4 running) and for gh (failed,
    # then canceled), 0 for the green ones.
    assert failing == {
        ("gitlab-main", "group/app", "main"): 1.0,
        ("gitlab-main", "group/app", "feature/x"): 0.0,
        ("gitlab-main", "group/other", ""): 0.0,
        ("gh", "octo/repo", "main"): 1.0,
    }
    assert m.series("ci_pipeline_status", **REF)["running"] == 1.0
    assert m.series("ci_pipeline_status", **REF)["failed"] == 0.0
    assert m.series("ci_pipeline_status", **GH)["canceled"] == 1.0
    # What /api/v1/projects says, ref by ref.
    projects = (await client.get("/api/v1/projects")).json()["projects"]
    assert failing == {(p["source"], p["project"], p["ref"]): float(p["failing"]) for p in projects}
    # The since gauge only for the red refs: when run 3 (main) and run 20 (gh) ended.
    since = {
        (s.labels["source"], s.labels["project"], s.labels["ref"]): s.value
        for s in m.samples("ci_ref_failing_since_timestamp_seconds")
    }
    main, gh = ("gitlab-main", "group/app", "main"), ("gh", "octo/repo", "main")
    assert since == {main: at(2300).timestamp(), gh: at(300).timestamp()}
    for key, value in since.items():  # the ref state's own since
        when = states[key].failing_since
        assert when is not None and value == when.timestamp()


async def test_the_red_period_follows_the_colour_not_the_newest_run(
    app: FastAPI, store: SqlStore
) -> None:
    """Through the cached renderer, so a changed colour is never served from a stale block."""
    cache: SnapshotCache = app.state.metrics_cache
    renderer: MetricsRenderer = app.state.metrics_renderer

    async def colour() -> tuple[float | None, float | None, float | None]:
        await cache.refresh()
        text = renderer.render()
        assert text == render(app.state.metrics_registry)
        m = Exposition(text.decode())
        return (
            m.value("ci_ref_failing", **REF),
            m.value("ci_ref_failing_since_timestamp_seconds", **REF),
            m.series("ci_pipeline_status", **REF)["failed"],
        )

    async def run(n: int, status: Status, ended: bool = True) -> None:
        """Store run `n` of main (created at 1000 n, ended 100 s later) with `status`."""
        finished = at(1000 * n + 100) if ended else None
        await store.upsert_run(
            make_run(
                run_id=str(n),
                number=n,
                status=status,
                created_at=at(1000 * n),
                started_at=at(1000 * n + 10),
                updated_at=at(1000 * n + 100),
                finished_at=finished,
            )
        )

    await run(1, Status.SUCCESS)
    assert await colour() == (0.0, None, 0.0)
    await run(2, Status.FAILED)  # broken when it ended
    assert await colour() == (1.0, at(2100).timestamp(), 1.0)
    await run(3, Status.QUEUED, ended=False)  # a new run queued on the red ref: still red
    assert await colour() == (1.0, at(2100).timestamp(), 0.0)
    await run(3, Status.RUNNING, ended=False)  # ... now running: still red, since unchanged
    assert await colour() == (1.0, at(2100).timestamp(), 0.0)
    await run(3, Status.FAILED)  # it failed too: still the same red period
    assert await colour() == (1.0, at(2100).timestamp(), 1.0)
    await run(4, Status.CANCELED)  # canceled does not change the colour
    assert await colour() == (1.0, at(2100).timestamp(), 0.0)
    await run(5, Status.SUCCESS)  # recovered: 0, and no since
    assert await colour() == (0.0, None, 0.0)
    await run(6, Status.FAILED)  # broken again: a new red period
    assert await colour() == (1.0, at(6100).timestamp(), 1.0)
    await run(7, Status.RUNNING, ended=False)
    assert await colour() == (1.0, at(6100).timestamp(), 0.0)
    # Run 6 is re-run and succeeds while run 7, the newest, still runs unchanged: the colour
    # changes with the newest run the same, and the cached block must not be reused.
    rerun = make_run(
        run_id="6",
        number=6,
        attempt=2,
        created_at=at(6000),
        started_at=at(7010),
        updated_at=at(7400),
        finished_at=at(7400),
    )
    await store.upsert_run(rerun)
    assert await colour() == (0.0, None, 0.0)


async def test_runs_total_counts_finished_runs_by_status(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await fill(store)
    m = await scrape(client)
    assert m.series("ci_pipeline_runs_total", **REF) == {"success": 2.0, "failed": 1.0}
    assert m.series("ci_pipeline_runs_total", **GH) == {"failed": 1.0, "canceled": 1.0}
    total = sum(s.value for s in m.samples("ci_pipeline_runs_total"))
    assert total == 7.0  # every run but the running one


async def test_job_metrics_of_the_newest_run(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    m = await scrape(client)
    build = {**REF, "job": "build", "stage": "build"}
    test = {**REF, "job": "test", "stage": "test"}
    assert m.series("ci_job_status", **build) == {s: float(s == "success") for s in STATUSES}
    assert m.series("ci_job_status", **test) == {s: float(s == "running") for s in STATUSES}
    assert m.value("ci_job_last_duration_seconds", **build) == 180.0
    assert m.value("ci_job_last_duration_seconds", **test) is None
    # A retried job appears once: its latest attempt.
    lint = {**GH, "job": "lint", "stage": ""}
    assert m.series("ci_job_status", **lint) == {s: float(s == "success") for s in STATUSES}
    assert m.value("ci_job_last_duration_seconds", **lint) == 4.0


async def test_self_metrics(
    client: httpx.AsyncClient, app: FastAPI, runtime: Runtime, store: SqlStore
) -> None:
    collected = runtime.metrics
    collected.api_request("gh", "200")
    collected.api_request("gh", "200")
    collected.api_request("gh", "304")
    collected.api_request("gitlab-main", "timeout")
    collected.rate_limit("gh", 4321, 5000)
    collected.poll_error("gh", "auth")
    collected.poll_ok("gitlab-main", at(50))
    collected.poll_ok("gh", at(10))
    # Another replica polled gh more recently, and recorded it in the target state.
    await store.save_target_state(TargetState("gh", "octo/repo", last_success_at=at(70)))
    await store.save_target_state(TargetState("gh", "octo/gone", healthy=False, reason="404"))
    collected.webhook("gh", "accepted")
    collected.webhook("gh", "rejected_signature")
    # The delivery workers are to count notifications on the same object.
    collected.notifications = Counter({("slack", "sent"): 1})  # type: ignore[attr-defined]
    m = await scrape(client)
    assert m.value("ciwatch_api_requests_total", source="gh", code="200") == 2.0
    assert m.value("ciwatch_api_requests_total", source="gh", code="304") == 1.0
    assert m.value("ciwatch_api_requests_total", source="gitlab-main", code="timeout") == 1.0
    assert m.value("ciwatch_rate_limit_remaining", source="gh") == 4321.0
    assert m.value("ciwatch_rate_limit_limit", source="gh") == 5000.0
    assert m.value("ciwatch_poll_errors_total", source="gh", kind="auth") == 1.0
    assert m.value("ciwatch_polls_total", source="gh") == 1.0
    last = "ciwatch_last_successful_poll_timestamp_seconds"
    assert m.value(last, source="gitlab-main") == at(50).timestamp()
    assert m.value(last, source="gh") == at(70).timestamp()
    assert m.value("ciwatch_target_up", source="gh", project="octo/repo") == 1.0
    assert m.value("ciwatch_target_up", source="gh", project="octo/gone") == 0.0
    assert m.value("ciwatch_webhooks_total", source="gh", result="accepted") == 1.0
    assert m.value("ciwatch_webhooks_total", source="gh", result="rejected_signature") == 1.0
    assert m.value("ciwatch_notifications_total", channel="slack", result="sent") == 1.0


async def test_a_paused_source_shows_until_when(client: httpx.AsyncClient, store: SqlStore) -> None:
    """The end of a source's rate-limit pause, from its discovery state (scheduler `_pause`);
    0 for a source that never paused."""
    until = at(600)
    extra = {PAUSED_UNTIL: until.isoformat().replace("+00:00", "Z")}
    await store.save_target_state(TargetState("gh", DISCOVERY, extra=extra))
    await store.save_target_state(TargetState("gl", DISCOVERY, extra={"targets": "3"}))
    m = await scrape(client)
    name = "ciwatch_source_paused_until_timestamp_seconds"
    assert m.value(name, source="gh") == until.timestamp()
    assert m.value(name, source="gl") == 0.0


async def test_no_duplicate_series_and_no_ids_as_labels(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    await fill(store)
    m = await scrape(client)
    seen: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for family in m.families.values():
        for sample in family.samples:
            seen[(sample.name, tuple(sorted(sample.labels.items())))] += 1
            assert not {"run_id", "sha", "job_id", "id", "number"} & set(sample.labels)
    assert max(seen.values()) == 1


async def test_render_says_what_generate_latest_says(
    app: FastAPI, store: SqlStore, runtime: Runtime
) -> None:
    await fill(store)
    await store.upsert_run(make_run(ref='q"uo\\te\nnl', project="a/ü"))
    runtime.metrics.api_request("gh", "200")
    await app.state.metrics_cache.get()
    registry = app.state.metrics_registry

    def samples(text: str) -> set[tuple[str, tuple[tuple[str, str], ...], float]]:
        return {
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    ours = render(registry).decode()
    theirs = generate_latest(registry).decode()
    assert samples(ours) == samples(theirs)
    assert len(samples(ours)) == ours.count("\n") - 2 * len(METRICS)
    helps = [line for line in ours.splitlines() if line.startswith("#")]
    assert helps == [line for line in theirs.splitlines() if line.startswith("#")]


async def test_the_cached_renderer_writes_what_render_writes_and_keeps_unchanged_refs(
    app: FastAPI, store: SqlStore, runtime: Runtime
) -> None:
    await fill(store)
    await store.upsert_run(make_run(ref='q"uo\\te\nnl', project="a/ü"))
    runtime.metrics.api_request("gh", "200")
    cache: SnapshotCache = app.state.metrics_cache
    renderer: MetricsRenderer = app.state.metrics_renderer
    snap = await cache.refresh()
    assert snap is not None
    refs = len(snap.refs)
    assert renderer.render() == render(app.state.metrics_registry)
    assert renderer.rendered_refs == refs
    # A new snapshot with one ref changed (and a counter moved): only that ref is re-rendered,
    # and the text is still exactly what render() writes.
    newer = make_run(
        run_id="99", status=Status.FAILED, created_at=at(99_000), updated_at=at(99_999)
    )
    await store.upsert_run(newer)
    runtime.metrics.api_request("gh", "200")
    await cache.refresh()
    assert renderer.render() == render(app.state.metrics_registry)
    assert renderer.rendered_refs == refs + 1
    assert renderer.render() == render(app.state.metrics_registry)
    assert renderer.rendered_refs == refs + 1


async def test_hostile_label_values_survive(client: httpx.AsyncClient, store: SqlStore) -> None:
    ref = 'we"ird\\ref\nname{x="1"}'
    await store.upsert_run(make_run(ref=ref, project="a/ü"))
    m = await scrape(client)
    assert (
        m.value(
            "ci_pipeline_last_duration_seconds",
            source="gitlab-main",
            provider="gitlab",
            project="a/ü",
            ref=ref,
        )
        == 290.0
    )


async def test_promtool_accepts_the_exposition(
    client: httpx.AsyncClient, store: SqlStore, runtime: Runtime, app: FastAPI
) -> None:
    promtool = require_tool("promtool")
    await fill(store)
    await store.save_target_state(TargetState("gh", "octo/repo", last_success_at=at(70)))
    runtime.metrics.api_request("gh", "200")
    runtime.metrics.rate_limit("gh", 10, 60)
    runtime.metrics.poll_error("gh", "timeout")
    runtime.metrics.webhook("gh", "accepted")
    text = (await scrape(client)).text
    done = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


# -- the snapshot cache ----------------------------------------------------------------------


class Ticks:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


@pytest.fixture
def count_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = queries.run_counts

    async def counting(reader: Any) -> Any:
        calls.append(1)
        return await real(reader)

    monkeypatch.setattr(queries, "run_counts", counting)
    return calls


def refs_of(cache: SnapshotCache) -> set[str]:
    assert cache.current is not None
    return {state.last_run.run_id for state in cache.current.refs}


async def test_snapshot_is_cached_for_max_age(
    store_url: str, store: SqlStore, ticks: Ticks
) -> None:
    """Another replica's writes show after `max_age`; this process's at once (next test)."""
    cache = SnapshotCache(store, FakeClock(T0).now, max_age=5.0, monotonic=ticks)
    other = open_store(store_url)  # another replica: its writes publish nothing here
    try:
        await other.upsert_run(make_run(run_id="1"))
        first = await cache.get()
        assert first is not None and refs_of(cache) == {"1"}
        await other.upsert_run(make_run(run_id="2", created_at=at(10)))
        ticks.now += 4.9
        assert await cache.get() is first
        ticks.now += 0.1
        assert await cache.get() is not first
        assert refs_of(cache) == {"2"}
        await other.upsert_run(make_run(run_id="3", created_at=at(20)))
        cache.invalidate()
        await cache.get()
        assert refs_of(cache) == {"3"}
    finally:
        await other.close()
        await cache.aclose()


async def test_this_process_writes_refresh_only_the_refs_they_changed(
    store: SqlStore, ticks: Ticks
) -> None:
    """A run written through this store makes the next `get()` read again, within `max_age`,
    the refs it changed and nothing else (no full read); with nothing changed, a refresh keeps
    the snapshot object, so what is kept per snapshot stays valid."""
    cache = SnapshotCache(store, FakeClock(T0).now, max_age=5.0, monotonic=ticks)
    await store.upsert_runs([make_run(run_id="1", ref="main"), make_run(run_id="2", ref="dev")])
    first = await cache.get()
    assert first is not None and cache.full_reads == 1
    await store.upsert_run(make_run(run_id="3", ref="dev", created_at=at(10)))
    ticks.now += 1.0
    second = await cache.get()
    assert second is not first and cache.full_reads == 1
    assert second is not None and [s.ref for s in second.refs] == ["dev", "main"]
    by_ref = {state.ref: state for state in second.refs}
    assert by_ref["dev"].last_run.run_id == "3"
    assert by_ref["main"] is {state.ref: state for state in first.refs}["main"]
    # A new ref from this process is placed in the store's order.
    await store.upsert_run(make_run(run_id="4", ref="a-feature", created_at=at(20)))
    third = await cache.get()
    assert third is not None and cache.full_reads == 1
    assert [state.ref for state in third.refs] == ["a-feature", "dev", "main"]
    assert third.refs == tuple(await store.ref_states())
    # Past max_age a full read; nothing changed, so the same object.
    ticks.now += 5.0
    assert await cache.get() is third and cache.full_reads == 2
    await cache.aclose()


async def test_run_counts_are_slow_and_never_go_down(
    store: SqlStore, ticks: Ticks, count_calls: list[int]
) -> None:
    cache = SnapshotCache(store, FakeClock(T0).now, max_age=0.0, slow_max_age=60.0, monotonic=ticks)
    key = queries.CountKey("gitlab-main", "gitlab", "group/app", "main", "success")
    await store.upsert_runs(history(10))
    snap = await cache.get()
    assert snap is not None and snap.counts == {key: 10}
    # Refreshing the snapshot does not recount until slow_max_age has passed.
    await store.upsert_runs([make_run(run_id="11", created_at=at(5000))])
    for _ in range(5):
        await cache.get()
    assert len(count_calls) == 1
    ticks.now += 60
    await cache.refresh()
    assert cache.current is not None and cache.current.counts == {key: 11}
    # A prune deletes runs (2..5; 1 starts the current success streak and stays): the
    # stored count drops, the exposed counter does not.
    assert await store.prune(at(600)) == 4
    await cache.refresh()
    assert cache.current.counts == {key: 11}
    # ... and later runs count on top of it.
    await store.upsert_runs([make_run(run_id="12", created_at=at(6000))])
    await cache.refresh()
    assert cache.current.counts == {key: 12}
    # A re-run takes a finished run back to queued: still no drop.
    rerun = make_run(
        run_id="12",
        created_at=at(6000),
        status=Status.QUEUED,
        updated_at=at(7000),
        attempt=2,
        finished_at=None,
        duration_seconds=None,
    )
    await store.upsert_run(rerun)
    await cache.refresh()
    assert cache.current.counts == {key: 12}
    await cache.aclose()


async def test_a_scrape_does_not_wait_for_the_recount(
    store: SqlStore, ticks: Ticks, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = SnapshotCache(store, FakeClock(T0).now, max_age=0.0, slow_max_age=60.0, monotonic=ticks)
    await store.upsert_runs(history(3))
    await cache.get()
    release = asyncio.Event()
    real = queries.run_counts

    async def slow(reader: Any) -> Any:
        await release.wait()
        return await real(reader)

    monkeypatch.setattr(queries, "run_counts", slow)
    ticks.now += 61
    snap = await cache.get()  # starts the recount in the background, answers at once
    assert snap is not None and sum((snap.counts or {}).values()) == 3
    release.set()
    await cache.aclose()


async def test_finished_run_lookup_follows_new_runs(store: SqlStore, ticks: Ticks) -> None:
    cache = SnapshotCache(store, FakeClock(T0).now, max_age=0.0, monotonic=ticks)
    running = {"status": Status.RUNNING, "finished_at": None, "duration_seconds": None}
    await store.upsert_runs(history(2, duration_seconds=60.0))
    await store.upsert_run(make_run(run_id="3", created_at=at(900), updated_at=at(900), **running))
    snap = await cache.get()
    assert snap is not None
    (state,) = snap.refs
    assert snap.finished[state.key].run_id == "2"
    # The running run finishes: it becomes the newest finished run.
    done = make_run(run_id="3", created_at=at(900), updated_at=at(990), duration_seconds=90.0)
    await store.upsert_run(done)
    snap = await cache.get()
    assert snap is not None and snap.finished[state.key].run_id == "3"
    await cache.aclose()


async def test_jobs_of_a_finished_unchanged_run_are_reused(
    store: SqlStore, ticks: Ticks, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = SnapshotCache(store, FakeClock(T0).now, max_age=0.0, slow_max_age=60, monotonic=ticks)
    await store.upsert_run(make_run())
    asked: list[int] = []
    real = queries.jobs_of_runs

    async def counting(reader: Any, keys: Any) -> Any:
        asked.append(len(keys))
        return await real(reader, keys)

    monkeypatch.setattr(queries, "jobs_of_runs", counting)
    for _ in range(3):
        await cache.get()
    assert asked == [1]
    ticks.now += 60
    await cache.get()
    assert asked == [1, 1]
    await cache.aclose()


async def test_a_scrape_with_an_unchanged_snapshot_renders_nothing_again(
    store: SqlStore, runtime: Runtime
) -> None:
    """The body (and its gzip) is kept per snapshot: scrapes within the snapshot's age reuse it;
    a moved counter rebuilds only the counters' lines; a refresh that finds nothing changed
    keeps the snapshot; a changed one renders again."""
    await fill(store)
    app = create_app(runtime, metrics_max_age=3600.0)
    cache: SnapshotCache = app.state.metrics_cache
    renderer: MetricsRenderer = app.state.metrics_renderer
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://ciwatch.test") as client:
            gzipped = {"Accept-Encoding": "gzip"}
            first = await client.get("/metrics", headers=gzipped)
            assert first.status_code == 200
            assert first.headers["content-encoding"] == "gzip"
            assert (renderer.snapshot_renders, renderer.body_renders) == (1, 1)
            second = await client.get("/metrics", headers=gzipped)
            assert second.content == first.content  # httpx decoded the gzip both times
            plain = await client.get("/metrics", headers={"Accept-Encoding": "identity"})
            assert "content-encoding" not in plain.headers
            assert plain.content == first.content
            assert (renderer.snapshot_renders, renderer.body_renders) == (1, 1)
        assert renderer.render() == render(app.state.metrics_registry)
        runtime.metrics.api_request("gh", "200")
        assert renderer.render() == render(app.state.metrics_registry)
        assert (renderer.snapshot_renders, renderer.body_renders) == (1, 2)
        await cache.refresh()  # nothing changed: the snapshot object is kept
        assert renderer.render() == render(app.state.metrics_registry)
        assert (renderer.snapshot_renders, renderer.body_renders) == (1, 2)
        await store.upsert_run(make_run(run_id="late", ref="late", created_at=at(3000)))
        await cache.refresh()
        assert renderer.render() == render(app.state.metrics_registry)
        assert (renderer.snapshot_renders, renderer.body_renders) == (2, 3)
    finally:
        await cache.aclose()


async def test_test_cases_of_the_newest_reported_run(
    client: httpx.AsyncClient, store: SqlStore
) -> None:
    """`ci_pipeline_test_cases`: the newest run's report, else the newest finished run's (a
    running newest run has none yet); no series for a ref without any report."""
    reported = make_run(
        run_id="1",
        status=Status.FAILED,
        tests_total=20,
        tests_failed=3,
        tests_skipped=2,
        tests_errored=1,
        tests_failing=("a::b",),
    )
    running = make_run(
        run_id="2",
        status=Status.RUNNING,
        created_at=at(1000),
        updated_at=at(1000),
        started_at=at(1000),
        finished_at=None,
        duration_seconds=None,
    )
    await store.upsert_runs([reported, running, make_run(run_id="3", ref="other")], [])
    m = await scrape(client)
    assert m.series("ci_pipeline_test_cases", **REF) == {
        "passed": 14.0,
        "failed": 3.0,
        "skipped": 2.0,
        "errored": 1.0,
    }
    assert m.series("ci_pipeline_test_cases", **{**REF, "ref": "other"}) == {}


async def test_get_current_holds_this_process_writes_even_behind_a_slow_refresh(
    store: SqlStore, ticks: Ticks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `/api/v1/projects` reads: a write committed before the call is in the answer, also
    when the refresh outlasts `wait` (it waits for it rather than answering an older one)."""
    cache = SnapshotCache(store, FakeClock(T0).now, max_age=5.0, wait=0.01, monotonic=ticks)
    await store.upsert_run(make_run(run_id="1"))
    assert await cache.get_current() is None  # no snapshot yet: the first one starts
    await cache.refresh()
    assert await cache.get_current() is not None and refs_of(cache) == {"1"}
    release = asyncio.Event()
    real = queries.ref_states_of

    async def slow(reader: Any, refs: Any) -> Any:
        await release.wait()
        return await real(reader, refs)

    monkeypatch.setattr(queries, "ref_states_of", slow)
    await store.upsert_run(make_run(run_id="2", created_at=at(10)))
    waiting = asyncio.create_task(cache.get_current())
    await asyncio.sleep(0.1)
    assert not waiting.done()
    release.set()
    found = await waiting
    assert found is not None and [state.last_run.run_id for state in found.refs] == ["2"]
    await cache.aclose()


async def test_the_time_to_recovery_is_read_again_in_the_background(
    store: SqlStore, ticks: Ticks
) -> None:
    """Per window and snapshot one read; past `slow_max_age` the kept numbers are answered
    while a full read runs in the background, whose result the next call answers."""
    cache = SnapshotCache(store, FakeClock(T0).now, max_age=5.0, slow_max_age=60, monotonic=ticks)
    await store.upsert_runs(history(4))
    snap = await cache.get()
    assert snap is not None
    window = timedelta(days=14)
    first = await cache.recovery(snap, window)
    assert await cache.recovery(snap, window) is first
    assert cache.recovery_reads == {"full": 1}
    ticks.now += 61
    assert await cache.recovery(snap, window) is first  # at once, the read goes on meanwhile
    for _ in range(100):
        if cache.recovery_reads["full"] == 2:
            break
        await asyncio.sleep(0.01)
    assert cache.recovery_reads == {"full": 2}
    again = await cache.recovery(snap, window)
    assert again is not first and again == first
    await cache.aclose()

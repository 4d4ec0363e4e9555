"""The GCPE-compatible family of `/metrics` (`metrics.gcpe_compatible`): gitlab-ci-pipelines-
exporter's names, labels and values for GitLab refs, nothing for other refs or when off; the
cached renderer; promtool; and docs/migrating-from-gcpe.md against GCPE's own metric list
(tests/fixtures/gcpe/metrics.json)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.domain import Status, TargetState
from ciwatch.metrics import (
    GCPE_METRIC_NAMES,
    GCPE_METRICS,
    GCPE_NOT_PROVIDED,
    GCPE_STATUSES,
    MetricsRenderer,
    SnapshotCache,
    render,
)
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import SqlStore
from ciwatch.web.app import create_app
from factories import T0, at, make_job, make_run

from .harness import ROOT, fill, free_port, require_tool, serve
from .test_e2e import PROMETHEUS_WAIT, _prometheus_config, _query
from .test_metrics import Exposition, scrape

GCPE_JSON = json.loads((ROOT / "tests" / "fixtures" / "gcpe" / "metrics.json").read_text())
GCPE_DEFINED = {m["name"]: m for m in GCPE_JSON["metrics"]}
MIGRATING_MD = (ROOT / "docs" / "migrating-from-gcpe.md").read_text()
METRICS_MD = (ROOT / "docs" / "metrics.md").read_text()

MAIN = {
    "project": "group/app",
    "topics": "",
    "kind": "branch",
    "ref": "main",
    "source": "push",
    "variables": "",
}
FEATURE = {**MAIN, "ref": "feature/x"}
OTHER = {**MAIN, "project": "group/other", "ref": ""}
NO_JOB_DETAILS = {"tag_list": "", "failure_reason": ""}
PIPELINE_FAMILIES = [
    "gitlab_ci_pipeline_duration_seconds",
    "gitlab_ci_pipeline_id",
    "gitlab_ci_pipeline_queued_duration_seconds",
    "gitlab_ci_pipeline_status",
    "gitlab_ci_pipeline_timestamp",
]


def gcpe_settings(sparse: bool = True) -> Settings:
    return Settings(
        database="sqlite:///unused.db",
        sources=[
            {"name": "gitlab-main", "type": "gitlab", "projects": ["group/app"]},
            {"name": "gitlab-idle", "type": "gitlab", "projects": ["idle/app"]},
            {"name": "gh", "type": "github", "repos": ["octo/repo"]},
        ],
        metrics={"gcpe_compatible": True, "gcpe_sparse_status_metrics": sparse},
    )


def gcpe_runtime(store: SqlStore, sparse: bool = True) -> Runtime:
    clock = FakeClock(T0 + timedelta(days=1))
    return Runtime(gcpe_settings(sparse), store, clock, CollectionMetrics())


@pytest.fixture
async def gcpe_app(store: SqlStore) -> AsyncIterator[FastAPI]:
    built = create_app(gcpe_runtime(store), metrics_max_age=0.0)
    yield built
    await built.state.metrics_cache.aclose()


async def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ciwatch.test")


async def gcpe_scrape(app: FastAPI) -> Exposition:
    async with await client_of(app) as client:
        return await scrape(client)


def gcpe_families(m: Exposition) -> set[str]:
    return {name.removesuffix("_total") for name in m.families} & GCPE_METRIC_NAMES


def samples(m: Exposition, name: str) -> list[Any]:
    key = name if name in m.families else name + "_total"
    # The parser names a counter's samples `_total`, whatever the exposition says.
    return [s for s in m.families[key].samples if s.name in (name, name + "_total")]


def value(m: Exposition, name: str, **labels: str) -> float | None:
    found = [s.value for s in samples(m, name) if s.labels == labels]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def statuses(m: Exposition, name: str, **labels: str) -> dict[str, float]:
    return {
        s.labels["status"]: s.value
        for s in samples(m, name)
        if {k: v for k, v in s.labels.items() if k != "status"} == labels
    }


# -- on, off, and only GitLab ---------------------------------------------------------------


async def test_off_by_default_no_gcpe_series(client: httpx.AsyncClient, store: SqlStore) -> None:
    await fill(store)
    m = await scrape(client)
    assert gcpe_families(m) == set()
    assert "gitlab_ci_" not in m.text and "gcpe_" not in m.text


async def test_pipeline_series_of_gitlab_refs(gcpe_app: FastAPI, store: SqlStore) -> None:
    await fill(store)
    m = await gcpe_scrape(gcpe_app)
    assert gcpe_families(m) == GCPE_METRIC_NAMES
    for spec in GCPE_METRICS:
        family = m.families[spec.name + ("_total" if spec.type == "counter" else "")]
        assert family.type == spec.type
        assert f"# TYPE {spec.name} {spec.type}" in m.text
    # main: newest run 4 is running (no duration yet: 0, as GCPE reads GitLab's null), queued
    # 42 s, updated at 3050. Sparse (GCPE's default): only the current status's series.
    assert statuses(m, "gitlab_ci_pipeline_status", **MAIN) == {"running": 1.0}
    assert value(m, "gitlab_ci_pipeline_duration_seconds", **MAIN) == 0.0
    assert value(m, "gitlab_ci_pipeline_id", **MAIN) == 4.0
    assert value(m, "gitlab_ci_pipeline_queued_duration_seconds", **MAIN) == 42.0
    assert value(m, "gitlab_ci_pipeline_timestamp", **MAIN) == at(3050).timestamp()
    assert statuses(m, "gitlab_ci_pipeline_status", **FEATURE) == {"success": 1.0}
    assert value(m, "gitlab_ci_pipeline_duration_seconds", **FEATURE) == 290.0
    assert value(m, "gitlab_ci_pipeline_id", **FEATURE) == 10.0
    assert value(m, "gitlab_ci_pipeline_queued_duration_seconds", **FEATURE) == 10.0
    assert statuses(m, "gitlab_ci_pipeline_status", **OTHER) == {"success": 1.0}
    # Runs that ended: 1, 2, 3 on main (4 is running), 10 on feature/x.
    assert value(m, "gitlab_ci_pipeline_run_count", **MAIN) == 3.0
    assert value(m, "gitlab_ci_pipeline_run_count", **FEATURE) == 1.0
    # The GitHub ref has none of them.
    for name in GCPE_METRIC_NAMES:
        if name.startswith("gitlab_ci_"):
            assert {s.labels["project"] for s in samples(m, name)} <= {"group/app", "group/other"}
    assert "octo/repo" not in "".join(
        line for line in m.text.splitlines() if line.startswith("gitlab_ci_")
    )


async def test_dense_status_series(store: SqlStore) -> None:
    app = create_app(gcpe_runtime(store, sparse=False), metrics_max_age=0.0)
    try:
        await fill(store)
        m = await gcpe_scrape(app)
    finally:
        await app.state.metrics_cache.aclose()
    expected = {word: float(word == "running") for word in GCPE_STATUSES}
    assert statuses(m, "gitlab_ci_pipeline_status", **MAIN) == expected
    assert list(GCPE_STATUSES) == GCPE_JSON["status_values"]
    build = {**MAIN, "stage": "build", "job_name": "build", "runner_description": "runner-1"}
    job = statuses(m, "gitlab_ci_pipeline_job_status", **build, **NO_JOB_DETAILS)
    assert job == {word: float(word == "success") for word in GCPE_STATUSES}


async def test_job_series_of_the_newest_pipeline(gcpe_app: FastAPI, store: SqlStore) -> None:
    await fill(store)
    m = await gcpe_scrape(gcpe_app)
    runner = {"runner_description": "runner-1", **NO_JOB_DETAILS}
    build = {**MAIN, "stage": "build", "job_name": "build", **runner}
    test = {**MAIN, "stage": "test", "job_name": "test", **runner}
    assert statuses(m, "gitlab_ci_pipeline_job_status", **build) == {"success": 1.0}
    assert statuses(m, "gitlab_ci_pipeline_job_status", **test) == {"running": 1.0}
    assert value(m, "gitlab_ci_pipeline_job_duration_seconds", **build) == 180.0
    assert value(m, "gitlab_ci_pipeline_job_duration_seconds", **test) == 0.0
    assert value(m, "gitlab_ci_pipeline_job_id", **build) == 41.0
    assert value(m, "gitlab_ci_pipeline_job_queued_duration_seconds", **build) == 20.0
    assert value(m, "gitlab_ci_pipeline_job_timestamp", **build) == at(3001).timestamp()
    assert value(m, "gitlab_ci_pipeline_job_timestamp", **test) == at(3002).timestamp()
    job_projects = {s.labels["project"] for s in samples(m, "gitlab_ci_pipeline_job_id")}
    assert job_projects == {"group/app"}  # the GitHub run's jobs have no GCPE series


async def test_merge_requests_warnings_and_one_series_per_gcpe_ref(
    gcpe_app: FastAPI, store: SqlStore
) -> None:
    """A merge request's head and merge refs are one GCPE ref (its iid, kind merge-request):
    the newer run's. A success with a failed allow_failure job is success_with_warnings."""
    head = make_run(
        run_id="70",
        ref="refs/merge-requests/7/head",
        event="merge_request_event",
        created_at=at(700),
    )
    merged = make_run(
        run_id="71",
        ref="refs/merge-requests/7/merge",
        event="merge_request_event",
        created_at=at(710),
    )
    await store.upsert_runs([head, merged])
    lint = make_job(
        run_id="71",
        job_id="711",
        name="lint",
        stage="test",
        status=Status.FAILED,
        provider_status="failed",
        allow_failure=True,
        runner=None,
    )
    await store.upsert_jobs([lint])
    m = await gcpe_scrape(gcpe_app)
    mr = {**MAIN, "kind": "merge-request", "ref": "7", "source": "merge_request_event"}
    assert statuses(m, "gitlab_ci_pipeline_status", **mr) == {"success_with_warnings": 1.0}
    assert value(m, "gitlab_ci_pipeline_id", **mr) == 71.0
    assert [s.labels["ref"] for s in samples(m, "gitlab_ci_pipeline_id")] == ["7"]
    job = {**mr, "stage": "test", "job_name": "lint", "runner_description": "", **NO_JOB_DETAILS}
    assert statuses(m, "gitlab_ci_pipeline_job_status", **job) == {"success_with_warnings": 1.0}
    # The run count is that of the ref whose series these are.
    assert value(m, "gitlab_ci_pipeline_run_count", **mr) == 1.0
    assert value(m, "gcpe_refs_count") == 1.0


async def test_a_status_word_gcpe_does_not_list_has_no_series(
    gcpe_app: FastAPI, store: SqlStore
) -> None:
    """GCPE's emitStatusMetric sets 1 only for a word of its list (`canceling` is not one)."""
    await store.upsert_run(
        make_run(status=Status.RUNNING, provider_status="canceling", finished_at=None)
    )
    m = await gcpe_scrape(gcpe_app)
    assert statuses(m, "gitlab_ci_pipeline_status", **MAIN) == {}
    assert value(m, "gitlab_ci_pipeline_id", **MAIN) == 1001.0


async def test_gcpe_totals(gcpe_app: FastAPI, store: SqlStore) -> None:
    await fill(store)
    runtime: Runtime = gcpe_app.state.runtime
    collected = runtime.metrics
    collected.api_request("gitlab-main", "200")
    collected.api_request("gitlab-main", "304")
    collected.api_request("gitlab-idle", "timeout")
    collected.api_request("gh", "200")
    collected.rate_limit("gitlab-main", 1500, 2000)
    collected.rate_limit("gh", 4000, 5000)
    await store.save_target_state(TargetState("gitlab-idle", "idle/app", last_success_at=at(5)))
    await store.save_target_state(TargetState("gh", "octo/repo", last_success_at=at(5)))
    m = await gcpe_scrape(gcpe_app)
    assert value(m, "gcpe_gitlab_api_requests_count") == 3.0
    assert value(m, "gcpe_gitlab_api_requests_remaining") == 1500.0
    assert value(m, "gcpe_gitlab_api_requests_limit") == 2000.0
    # group/app, group/other (refs) and idle/app (a polled target without runs).
    assert value(m, "gcpe_projects_count") == 3.0
    assert value(m, "gcpe_refs_count") == 3.0
    exported = sum(
        len(samples(m, name)) for name in GCPE_METRIC_NAMES if name.startswith("gitlab_ci_")
    )
    assert value(m, "gcpe_metrics_count") == float(exported)


async def test_cached_renderer_with_gcpe_matches_render_and_is_never_stale(
    gcpe_app: FastAPI, store: SqlStore
) -> None:
    await fill(store)
    cache: SnapshotCache = gcpe_app.state.metrics_cache
    renderer: MetricsRenderer = gcpe_app.state.metrics_renderer
    snap = await cache.refresh()
    assert snap is not None
    refs = len(snap.refs)
    assert renderer.render() == render(gcpe_app.state.metrics_registry)
    assert renderer.rendered_refs == refs
    # The running job of main's newest run ends: only that ref is re-rendered, with new values.
    await store.upsert_jobs(
        [
            make_job(
                run_id="4",
                job_id="42",
                name="test",
                stage="test",
                status=Status.FAILED,
                provider_status="failed",
                created_at=at(3002),
                finished_at=at(3100),
                updated_at=at(3100),
                duration_seconds=98.0,
            )
        ]
    )
    await cache.refresh()
    text = renderer.render()
    assert text == render(gcpe_app.state.metrics_registry)
    assert renderer.rendered_refs == refs + 1
    m = Exposition(text.decode())
    test = {**MAIN, "stage": "test", "job_name": "test", "runner_description": "runner-1"}
    assert statuses(m, "gitlab_ci_pipeline_job_status", **test, **NO_JOB_DETAILS) == {"failed": 1.0}
    assert value(m, "gitlab_ci_pipeline_job_duration_seconds", **test, **NO_JOB_DETAILS) == 98.0
    # A newer merge request run moves the GCPE series from one ref to the other: both blocks
    # are re-rendered, and the older ref's series disappear.
    await store.upsert_runs(
        [
            make_run(run_id="80", ref="refs/merge-requests/8/head", created_at=at(800)),
            make_run(run_id="81", ref="refs/merge-requests/8/merge", created_at=at(810)),
        ]
    )
    await cache.refresh()
    assert renderer.render() == render(gcpe_app.state.metrics_registry)
    await store.upsert_run(
        make_run(run_id="82", ref="refs/merge-requests/8/head", created_at=at(820))
    )
    await cache.refresh()
    text = renderer.render()
    assert text == render(gcpe_app.state.metrics_registry)
    mr = {**MAIN, "kind": "merge-request", "ref": "8"}
    assert value(Exposition(text.decode()), "gitlab_ci_pipeline_id", **mr) == 82.0


async def test_promtool_finds_only_gcpes_own_names(gcpe_app: FastAPI, store: SqlStore) -> None:
    """promtool parses the exposition; its only complaints are the lint rules that GCPE's own
    names break (`_count` on gauges and counters, counters without `_total`), which a
    compatible family must keep."""
    promtool = require_tool("promtool")
    await fill(store)
    runtime: Runtime = gcpe_app.state.runtime
    runtime.metrics.api_request("gitlab-main", "200")
    runtime.metrics.rate_limit("gitlab-main", 10, 60)
    text = (await gcpe_scrape(gcpe_app)).text
    done = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode in (0, 3), done.stdout + done.stderr  # 3: lint problems only
    complaints = {line for line in (done.stdout + done.stderr).splitlines() if line.strip()}
    count = 'non-histogram and non-summary metrics should not have "_count" suffix'
    expected = {f"{spec.name} {count}" for spec in GCPE_METRICS if spec.name.endswith("_count")} | {
        f'{spec.name} counter metrics should have "_total" suffix'
        for spec in GCPE_METRICS
        if spec.type == "counter"
    }
    assert complaints == expected


# -- against GCPE's own list, and the documentation ------------------------------------------


def test_gcpe_specs_are_gcpes_definitions() -> None:
    for spec in GCPE_METRICS:
        defined = GCPE_DEFINED[spec.name]
        assert (spec.type, spec.help, list(spec.labels)) == (
            defined["type"],
            defined["help"],
            defined["labels"],
        ), spec.name


def test_every_gcpe_metric_is_produced_or_listed_as_not_provided() -> None:
    produced, missing = GCPE_METRIC_NAMES, set(GCPE_NOT_PROVIDED)
    assert produced.isdisjoint(missing)
    assert produced | missing == set(GCPE_DEFINED)


def _migration_rows() -> dict[str, list[str]]:
    rows: dict[str, list[str]] = {}
    for line in MIGRATING_MD.splitlines():
        found = re.match(r"\| `((?:gitlab_ci|gcpe)_\w+)` \|", line)
        if found:
            assert found.group(1) not in rows, f"two rows for {found.group(1)}"
            rows[found.group(1)] = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return rows


def test_the_migration_doc_maps_every_gcpe_metric() -> None:
    rows = _migration_rows()
    assert set(rows) == set(GCPE_DEFINED)
    for name, cells in rows.items():
        compatible = cells[-1]
        if name in GCPE_NOT_PROVIDED:
            assert compatible.startswith("not provided"), name
        else:
            assert compatible.startswith("yes"), name


@pytest.mark.parametrize("spec", GCPE_METRICS, ids=[spec.name for spec in GCPE_METRICS])
def test_every_gcpe_metric_is_in_metrics_md(spec: Any) -> None:
    rows = [line for line in METRICS_MD.splitlines() if line.startswith(f"| `{spec.name}` |")]
    assert len(rows) == 1, f"{spec.name}: one table row expected in docs/metrics.md"
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[1] == spec.type
    assert cells[2].strip("`").split() == list(spec.labels)


async def test_two_gitlab_sources_with_one_project_path_give_one_series(
    gcpe_app: FastAPI, store: SqlStore
) -> None:
    """GCPE's labels cannot tell two GitLab instances apart: the ref with the newest run has
    the series, and no series appears twice (Prometheus would reject the scrape)."""
    await fill(store)
    await store.upsert_run(
        make_run(source="gitlab-idle", run_id="900", created_at=at(9000), updated_at=at(9100))
    )
    m = await gcpe_scrape(gcpe_app)
    assert value(m, "gitlab_ci_pipeline_id", **MAIN) == 900.0
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for family in m.families.values():
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in seen, key
            seen.add(key)
    # ... while the native families keep both refs apart by their source.
    natives = {
        s.labels["source"]
        for s in m.samples("ci_ref_failing")
        if s.labels["project"] == "group/app" and s.labels["ref"] == "main"
    }
    assert natives == {"gitlab-main", "gitlab-idle"}


async def test_a_real_prometheus_answers_gcpe_dashboard_queries(
    store: SqlStore, tmp_path: Path
) -> None:
    """A real Prometheus scrapes ciwatch with the family on: the scrape is accepted (no
    duplicate series), and queries of the kind GCPE dashboards run answer as they would."""
    prometheus = require_tool("prometheus")
    await fill(store)
    app = create_app(gcpe_runtime(store), metrics_max_age=1.0)
    async with serve(app) as url:
        target = url.removeprefix("http://")
        port = free_port()
        log = (tmp_path / "prometheus.log").open("w")
        proc = await asyncio.create_subprocess_exec(
            prometheus,
            f"--config.file={_prometheus_config(tmp_path, target)}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
            stdout=log,
            stderr=log,
        )
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                running: list[dict[str, Any]] = []
                deadline = time.monotonic() + PROMETHEUS_WAIT
                while time.monotonic() < deadline and proc.returncode is None:
                    try:
                        running = await _query(
                            client, 'gitlab_ci_pipeline_status{status="running"} == 1'
                        )
                    except httpx.TransportError:
                        running = []
                    if running:
                        break
                    await asyncio.sleep(0.25)
                log.flush()
                assert running, (tmp_path / "prometheus.log").read_text()[-2000:]
                (metric,) = [r["metric"] for r in running]
                # Prometheus drops the empty topics and variables labels, as for GCPE's.
                assert {k: v for k, v in metric.items() if k not in ("job", "instance")} == {
                    "__name__": "gitlab_ci_pipeline_status",
                    "project": "group/app",
                    "kind": "branch",
                    "ref": "main",
                    "source": "push",
                    "status": "running",
                }
                up = await _query(client, 'up{job="ciwatch"}')
                assert [r["value"][1] for r in up] == ["1"]
                runs = await _query(
                    client,
                    'sum by (project, ref) (gitlab_ci_pipeline_run_count{project="group/app"})',
                )
                assert {r["metric"]["ref"]: r["value"][1] for r in runs} == {
                    "main": "3",
                    "feature/x": "1",
                }
                slowest = await _query(client, "topk(1, gitlab_ci_pipeline_job_duration_seconds)")
                assert [r["metric"]["job_name"] for r in slowest] == ["build"]
                github = await _query(client, '{__name__=~"gitlab_ci_.+", project="octo/repo"}')
                assert github == []
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            log.close()

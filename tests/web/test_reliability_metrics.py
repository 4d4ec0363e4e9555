"""`ci_job_flaky_runs_total` and `ci_ref_recovery_seconds` over a hand-built history (both
engines): the values, promtool's lint, and that they never go down as the window moves on."""

from __future__ import annotations

import asyncio
import subprocess
from datetime import timedelta

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from ciwatch.clock import FakeClock
from ciwatch.domain import Status
from ciwatch.runtime import Runtime
from ciwatch.store import SqlStore
from factories import at, make_job, make_run

from .harness import require_tool


async def _history(store: SqlStore) -> None:
    S, F = Status.SUCCESS, Status.FAILED
    runs = [
        make_run(run_id="1", status=S, created_at=at(0), finished_at=at(60), sha="a" * 40),
        # Red from 1h01m to 1h31m (30 minutes), then from 3h01m to 5h01m (2 hours).
        make_run(run_id="2", status=F, created_at=at(3600), finished_at=at(3660), sha="b" * 40),
        make_run(run_id="3", status=S, created_at=at(5400), finished_at=at(5460), sha="c" * 40),
        make_run(run_id="4", status=F, created_at=at(10800), finished_at=at(10860), sha="d" * 40),
        make_run(run_id="5", status=S, created_at=at(18000), finished_at=at(18060), sha="d" * 40),
    ]
    jobs = [
        make_job(run_id="4", job_id="41", name="test", status=F, finished_at=at(10850)),
        make_job(run_id="5", job_id="51", name="test", status=S, finished_at=at(18050)),
        make_job(run_id="4", job_id="42", name="lint", status=S, finished_at=at(10850)),
    ]
    await store.upsert_runs(runs, jobs)


def _families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    found: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        found[family.name] = [(s.name, s.labels, s.value) for s in family.samples]
    return found


async def test_flaky_and_recovery_metrics(
    client: httpx.AsyncClient, store: SqlStore, runtime: Runtime, app: FastAPI
) -> None:
    await _history(store)
    assert isinstance(runtime.clock, FakeClock)
    await app.state.metrics_cache.refresh()
    text = (await client.get("/metrics")).text
    families = _families(text)
    labels = {"source": "gitlab-main", "provider": "gitlab", "project": "group/app"}
    assert families["ci_job_flaky_runs"] == [
        ("ci_job_flaky_runs_total", {**labels, "job": "test"}, 1.0)
    ]
    histogram = {
        (name, sample.get("le")): value
        for name, sample, value in families["ci_ref_recovery_seconds"]
    }
    assert histogram[("ci_ref_recovery_seconds_count", None)] == 2.0
    assert histogram[("ci_ref_recovery_seconds_sum", None)] == 1800.0 + 7200.0
    assert histogram[("ci_ref_recovery_seconds_bucket", "900.0")] == 0.0
    assert histogram[("ci_ref_recovery_seconds_bucket", "1800.0")] == 1.0
    assert histogram[("ci_ref_recovery_seconds_bucket", "3600.0")] == 1.0
    assert histogram[("ci_ref_recovery_seconds_bucket", "7200.0")] == 2.0
    assert histogram[("ci_ref_recovery_seconds_bucket", "+Inf")] == 2.0
    # The ref is green now: no failing-since series for it.
    assert "ci_ref_failing_since_timestamp_seconds" not in {
        name for name, _, _ in families.get("ci_ref_failing_since_timestamp_seconds", [])
    }
    promtool = require_tool("promtool")
    done = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # A month later the history is out of both windows: the counters keep their values.
    runtime.clock.advance(timedelta(days=30).total_seconds())
    await app.state.metrics_cache.refresh()
    later = _families((await client.get("/metrics")).text)
    assert later["ci_job_flaky_runs"] == families["ci_job_flaky_runs"]
    assert later["ci_ref_recovery_seconds"] == families["ci_ref_recovery_seconds"]

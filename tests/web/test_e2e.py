"""End to end through real servers on 127.0.0.1: uvicorn serving the app, httpx as the client,
and a real Prometheus scraping /metrics every second."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from ciwatch.metrics import CONTENT_TYPE
from ciwatch.store import SqlStore
from ciwatch.web.app import create_app

from .harness import DEPLOY, fill, free_port, make_runtime, require_tool, serve
from .test_metrics import Exposition

PROMETHEUS_WAIT = 30.0


async def test_api_through_uvicorn(store: SqlStore) -> None:
    world = await fill(store)
    app = create_app(make_runtime(store))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/api/v1/runs", params=params)).json()
            seen += page["runs"]
            cursor = page["next"]
            if cursor is None:
                break
        assert len({(r["source"], r["project"], r["run_id"]) for r in seen}) == len(world["runs"])
        assert len(seen) == len(world["runs"])

        detail = (await client.get("/api/v1/runs/gitlab-main/group/app/4")).json()
        assert [job["name"] for job in detail["jobs"]] == ["build", "test"]

        projects = (await client.get("/api/v1/projects", params={"status": "failed"})).json()
        assert {p["project"] for p in projects["projects"]} == {"group/app", "octo/repo"}

        missing = await client.get("/api/v1/nothing-here")
        assert (missing.status_code, missing.json()["error"]) == (404, "not found")
        invalid = await client.get("/api/v1/runs", params={"limit": 9999})
        assert invalid.status_code == 422 and invalid.json()["detail"][0]["field"] == "limit"

        metrics = await client.get("/metrics")
        assert metrics.headers["content-type"] == CONTENT_TYPE
        parsed = Exposition(metrics.text)
        assert parsed.value("ciwatch_store_up") == 1.0
        assert len(parsed.samples("ci_pipeline_status")) == 4 * 7

        cc = await client.get("/cc.xml")
        assert cc.status_code == 200 and cc.text.count("<Project ") == 4


def _prometheus_config(tmp_path: Path, target: str) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(DEPLOY / "prometheus" / "rules.yml")],
        "scrape_configs": [{"job_name": "ciwatch", "static_configs": [{"targets": [target]}]}],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


async def _query(client: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    reply = await client.get("/api/v1/query", params={"query": expr})
    if reply.status_code != 200:
        return []
    body = reply.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def test_a_real_prometheus_scrapes_ciwatch(store: SqlStore, tmp_path: Path) -> None:
    prometheus = require_tool("prometheus")
    await fill(store)
    app = create_app(make_runtime(store), metrics_max_age=1.0)
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
                series: list[dict[str, Any]] = []
                deadline = time.monotonic() + PROMETHEUS_WAIT
                while time.monotonic() < deadline and proc.returncode is None:
                    try:
                        series = await _query(client, "ci_pipeline_status")
                    except httpx.TransportError:
                        series = []
                    if series:
                        break
                    await asyncio.sleep(0.25)
                log.flush()
                assert series, (tmp_path / "prometheus.log").read_text()[-2000:]

                labels = [s["metric"] for s in series]
                assert all(m["job"] == "ciwatch" and m["instance"] == target for m in labels)
                running = [
                    m for m in labels if m.get("ref") == "main" and m["project"] == "group/app"
                ]
                assert {m["status"] for m in running} == {
                    "queued",
                    "running",
                    "manual",
                    "success",
                    "failed",
                    "canceled",
                    "skipped",
                }
                names = {"__name__", "job", "instance", "source", "provider", "project", "status"}
                # Prometheus drops empty labels: the series of a ref-less run have no `ref`.
                assert sorted(m.get("ref", "") for m in labels if m["status"] == "success") == [
                    "",
                    "feature/x",
                    "main",
                    "main",
                ]
                assert all(set(m) - {"ref"} == names for m in labels)
                now_running = await _query(client, 'ci_pipeline_status{status="running"} == 1')
                assert [(m["metric"]["project"], m["metric"]["ref"]) for m in now_running] == [
                    ("group/app", "main")
                ]
                runs = await _query(client, "sum(ci_pipeline_runs_total)")
                assert float(runs[0]["value"][1]) == 7.0
                rules = (await client.get("/api/v1/rules")).json()["data"]["groups"]
                assert {g["name"] for g in rules} == {"ciwatch-pipelines", "ciwatch-self"}
                assert all(r["health"] == "ok" for g in rules for r in g["rules"])
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            log.close()

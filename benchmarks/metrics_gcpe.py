"""What the GCPE-compatible family (`metrics.gcpe_compatible`) costs `/metrics`: the exposition's
lines and bytes, and the time of `MetricsRenderer.render()`, with the option off and on.

A SQLite store in a temporary directory is filled with `--refs` GitLab refs (5 per project), one
run each with `--jobs` jobs; one snapshot is taken; then, for each setting, the first render
(every ref rendered) and `--renders` steady renders (no ref changed, every block reused) are
timed in this process. Figures only: nothing here asserts a time.

    PYTHONPATH=src python benchmarks/metrics_gcpe.py --refs 5000 --jobs 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ciwatch.domain import Job, Run, Status
from ciwatch.metrics import CiwatchCollector, MetricsRenderer, SnapshotCache
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import open_store

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SOURCE = "gitlab"


def world(refs: int, jobs: int) -> tuple[list[Run], list[Job]]:
    runs: list[Run] = []
    listed: list[Job] = []
    for i in range(refs):
        project, run_id = f"group/p{i // 5}", str(100_000 + i)
        created = T0 + timedelta(seconds=i)
        runs.append(
            Run(
                source=SOURCE,
                provider="gitlab",
                project=project,
                run_id=run_id,
                status=Status.SUCCESS,
                provider_status="success",
                updated_at=created + timedelta(seconds=300),
                ref=f"branch-{i % 5}",
                event="push",
                created_at=created,
                finished_at=created + timedelta(seconds=300),
                duration_seconds=290.0,
                queued_seconds=10.0,
            )
        )
        for j in range(jobs):
            listed.append(
                Job(
                    source=SOURCE,
                    project=project,
                    run_id=run_id,
                    job_id=f"{run_id}{j:02d}",
                    name=f"job-{j}",
                    stage=f"stage-{j}",
                    status=Status.SUCCESS,
                    provider_status="success",
                    updated_at=created + timedelta(seconds=200),
                    created_at=created,
                    duration_seconds=180.0,
                    queued_seconds=20.0,
                    runner="runner-1",
                )
            )
    return runs, listed


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as directory:
        store = open_store(f"sqlite:///{Path(directory) / 'bench.db'}")
        await store.upgrade()
        try:
            runs, jobs = world(args.refs, args.jobs)
            for start in range(0, len(runs), 1000):
                await store.upsert_runs(runs[start : start + 1000])
            for start in range(0, len(jobs), 2000):
                await store.upsert_jobs(jobs[start : start + 2000])
            now = T0 + timedelta(days=1)
            cache = SnapshotCache(store, lambda: now, max_age=0.0)
            await cache.refresh()
            print(f"refs={args.refs} jobs per newest run={args.jobs} renders={args.renders}")
            for gcpe in (False, True):
                collector = CiwatchCollector(
                    cache, CollectionMetrics(), gcpe=gcpe, gitlab_sources=[SOURCE]
                )
                renderer = MetricsRenderer(collector)
                began = time.perf_counter()
                body = renderer.render()
                first = time.perf_counter() - began
                steady: list[float] = []
                for _ in range(args.renders):
                    began = time.perf_counter()
                    renderer.render()
                    steady.append(time.perf_counter() - began)
                lines = body.count(b"\n")
                print(
                    f"gcpe_compatible={str(gcpe).lower():5}  lines {lines:>9,}"
                    f"  MB {len(body) / 1e6:6.1f}  first render ms {first * 1000:7.0f}"
                    f"  steady render ms (median) {statistics.median(steady) * 1000:7.0f}"
                )
            await cache.aclose()
        finally:
            await store.close()


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--refs", type=int, default=5_000, help="GitLab refs (5 per project)")
    parser.add_argument("--jobs", type=int, default=5, help="jobs of each ref's newest run")
    parser.add_argument("--renders", type=int, default=5, help="steady renders to time")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse(sys.argv[1:])))

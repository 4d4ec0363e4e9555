"""Flaky-job and time-to-recovery queries over a big store, SQLite and PostgreSQL. Prints
figures, asserts nothing.

    python benchmarks/reliability.py [--runs N] [--jobs J] [--engine sqlite|postgresql|both]

N runs (default 200,000; one every 30 s, so about 70 days of history) over N/200 refs (at most
5,000; five refs per project), each with J jobs (default 5). 15% of the runs fail with one failed
job; a third of those are re-run on the same commit (a new run, as a Jenkins rebuild; GitLab's
retry and GitHub's attempt 2 store the same rows: new job ids on the same SHA) and pass. Then
p50/p95 of `flaky_jobs` and `recovery_stats` over the default 14-day window: for every project
(the API without a filter, the metrics) and for one project (the dashboard's filter, the alert
engine's known-flaky look-up). PostgreSQL runs in a throw-away database on 127.0.0.1:5432.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import pg_database, quantile
from sqlalchemy import text

from ciwatch.domain import Job, Run, Status
from ciwatch.store import SqlStore, open_store
from ciwatch.store.reliability import flaky_jobs, recovery_stats

T0 = datetime(2025, 1, 1, tzinfo=UTC)
BATCH = 500


def history(count: int, jobs_per_run: int, seed: int = 1) -> tuple[list[Run], list[Job]]:
    rng = random.Random(seed)
    refs = min(max(count // 200, 1), 5000)
    runs: list[Run] = []
    jobs: list[Job] = []
    n = 0
    while len(runs) < count:
        ref_index = n % refs
        created = T0 + timedelta(seconds=30 * len(runs))
        failed = rng.random() < 0.15
        sha = f"{n:040x}"
        attempts = [Status.FAILED, Status.SUCCESS] if failed and rng.random() < 1 / 3 else []
        for status in attempts or [Status.FAILED if failed else Status.SUCCESS]:
            run_id = str(100_000 + len(runs))
            when = T0 + timedelta(seconds=30 * len(runs))
            run = Run(
                source="gitlab-main",
                provider="gitlab",
                project=f"group/project-{ref_index // 5:04d}",
                run_id=run_id,
                ref=f"branch-{ref_index % 5}",
                sha=sha,
                status=status,
                created_at=when,
                started_at=when + timedelta(seconds=5),
                finished_at=when + timedelta(seconds=300),
                updated_at=when + timedelta(seconds=300),
                duration_seconds=295.0,
            )
            runs.append(run)
            broken = rng.randrange(jobs_per_run) if status is Status.FAILED else -1
            for j in range(jobs_per_run):
                jobs.append(
                    Job(
                        source=run.source,
                        project=run.project,
                        run_id=run_id,
                        job_id=f"{run_id}-{j}",
                        name=f"job-{j}",
                        stage="test",
                        status=Status.FAILED if j == broken else Status.SUCCESS,
                        created_at=when,
                        finished_at=when + timedelta(seconds=60 * (j + 1)),
                        updated_at=when + timedelta(seconds=60 * (j + 1)),
                        url=f"https://gitlab.example.com/-/jobs/{run_id}{j}",
                    )
                )
        del created
        n += 1
    return runs[:count], jobs


async def fill(store: SqlStore, runs: list[Run], jobs: list[Job], per_run: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(runs), BATCH):
        await store.upsert_runs(runs[i : i + BATCH], jobs[i * per_run : (i + BATCH) * per_run])
    return time.perf_counter() - started


async def latency(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float, Any]:
    result = await call()  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = await call()
        times.append((time.perf_counter() - started) * 1000)
    return quantile(times, 0.5), quantile(times, 0.95), result


async def bench(
    store: SqlStore, runs: list[Run], jobs: list[Job], per_run: int, repeat: int
) -> None:
    seconds = await fill(store, runs, jobs, per_run)
    print(f"  stored {len(runs):,} runs, {len(jobs):,} jobs in {seconds:.0f} s")
    if store.dialect == "postgresql":
        # What autovacuum does after a bulk insert in production: without statistics the
        # planner takes the window for one row and merge-joins (sorting) every job.
        async def analyze(conn: Any) -> None:
            await conn.execute(text("ANALYZE"))

        await store.write("analyze", analyze)
    now = runs[-1].created_at + timedelta(minutes=10)  # type: ignore[operator]
    project = runs[-1].project
    cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        (
            "flaky_jobs, every project",
            lambda: store.read("b", lambda c: flaky_jobs(c, now=now, limit=500)),
        ),
        (
            "flaky_jobs, one project",
            lambda: store.read(
                "b", lambda c: flaky_jobs(c, now=now, source="gitlab-main", project=project)
            ),
        ),
        (
            "recovery_stats, every ref",
            lambda: store.read("b", lambda c: recovery_stats(c, now=now)),
        ),
        (
            "recovery_stats, one project",
            lambda: store.read(
                "b", lambda c: recovery_stats(c, now=now, source="gitlab-main", project=project)
            ),
        ),
    ]
    for label, call in cases:
        p50, p95, result = await latency(call, repeat)
        print(f"  {label:32} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms   ({len(result):,} rows)")


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200_000)
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--engine", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args(argv)
    runs, jobs = history(args.runs, args.jobs)
    window = [
        r for r in runs if r.created_at and r.created_at >= runs[-1].created_at - timedelta(days=14)
    ]  # type: ignore[operator]
    print(f"{len(runs):,} runs, {len(jobs):,} jobs; {len(window):,} runs in the 14-day window")
    if args.engine in ("sqlite", "both"):
        print("SQLite")
        with tempfile.TemporaryDirectory() as tmp:
            store = open_store(f"sqlite:///{Path(tmp) / 'bench.db'}")
            await store.upgrade()
            try:
                await bench(store, runs, jobs, args.jobs, args.repeat)
            finally:
                await store.close()
    if args.engine in ("postgresql", "both"):
        print("PostgreSQL")
        name = f"ciwatch_bench_{secrets.token_hex(4)}"
        await pg_database(True, name)
        try:
            store = open_store(f"postgresql://postgres@127.0.0.1:5432/{name}")
            await store.upgrade()
            try:
                await bench(store, runs, jobs, args.jobs, args.repeat)
            finally:
                await store.close()
        finally:
            await pg_database(False, name)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

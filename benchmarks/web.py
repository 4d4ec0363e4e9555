"""Latency of the web pages, the read API and /metrics over a large store. Prints figures only.

    python benchmarks/web.py [--runs N] [--refs R] [--engine sqlite|postgresql|both]
                             [--requests 200] [--concurrency 8] [--reuse PATH]

For each engine: fill a fresh store with N runs over R project/refs (five refs per project, the
runs of `benchmarks/store.py`) through the batched `upsert_runs`, plus `--jobs` jobs for the
newest run of every ref (`upsert_jobs`), so /metrics has job series. SQLite is a file in a
temporary folder (or `--reuse PATH`: filled once, reused while it matches N and R); PostgreSQL a
throw-away database `ciwatch_bench_<random>` on `--pg`, dropped afterwards.

Then `create_app(Runtime(...))` is served by uvicorn in a child process (this script with
`--serve`), on a clock that runs in real time but is set back so that "now" is ten minutes after
the newest run (the runs are dated 2025; the dashboard's 14-day charts need runs in their window).
A client here (aiohttp) measures p50/p95/p99 of each page with sequential requests after a
warm-up, then with `--concurrency` requests in flight; /metrics is measured cold (the first scrape
of a fresh process), on snapshot refreshes (a scrape after the 5 s snapshot age) and steady
(scrapes inside the snapshot age: rendering only). The server's RSS is read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ciwatch.domain import Job, Run, Status
from ciwatch.store import open_store
from store import make_runs  # benchmarks/store.py, next to this file

BATCH = 500
JOB_NAMES = (
    ("build", "build"),
    ("unit", "test"),
    ("lint", "test"),
    ("e2e", "test"),
    ("deploy", ""),
)
METRICS_MAX_AGE = 5.0
GOAL_PAGE_P95_MS = 100.0
GOAL_METRICS_MS = 150.0


# --- filling the store -------------------------------------------------------------------------


def make_jobs(run: Run, count: int) -> list[Job]:
    """`count` finished jobs of `run` (names from JOB_NAMES, then `job-<n>`)."""
    jobs = []
    for n in range(count):
        name, stage = JOB_NAMES[n] if n < len(JOB_NAMES) else (f"job-{n}", "test")
        assert run.started_at is not None
        started = run.started_at + timedelta(seconds=10 * n)
        status = Status.FAILED if run.status is Status.FAILED and n == 1 else Status.SUCCESS
        jobs.append(
            Job(
                source=run.source,
                project=run.project,
                run_id=run.run_id,
                job_id=f"{run.run_id}-{n}",
                name=name,
                stage=stage or None,
                status=status,
                provider_status=status.value,
                created_at=run.created_at,
                started_at=started,
                finished_at=started + timedelta(seconds=60),
                updated_at=started + timedelta(seconds=60),
                duration_seconds=60.0,
                queued_seconds=2.0,
                runner="bench-runner",
            )
        )
    return jobs


async def fill(url: str, runs: list[Run], refs: int, jobs_per_run: int) -> None:
    """Upsert `runs` in batches of one project's runs, then the jobs of each ref's newest run."""
    store = open_store(url)
    try:
        await store.upgrade()
        start = time.perf_counter()
        ordered = sorted(runs, key=lambda run: run.project)  # stable: time order within a project
        for offset in range(0, len(ordered), BATCH):
            await store.upsert_runs(ordered[offset : offset + BATCH])
        runs_s = time.perf_counter() - start
        newest = runs[-refs:]  # make_runs is round-robin over the refs, in time order
        jobs = [job for run in newest for job in make_jobs(run, jobs_per_run)]
        start = time.perf_counter()
        for offset in range(0, len(jobs), BATCH * 2):
            await store.upsert_jobs(jobs[offset : offset + BATCH * 2])
        jobs_s = time.perf_counter() - start
    finally:
        await store.close()
    print(
        f"  fill: {len(runs):,} runs in {runs_s:.1f} s ({len(runs) / runs_s:,.0f}/s), "
        f"{len(jobs):,} jobs in {jobs_s:.1f} s",
        flush=True,
    )


# --- the server (child process) ----------------------------------------------------------------


class ShiftedClock:
    """Real time, moved by a fixed offset (so the snapshot ages normally)."""

    def __init__(self, now: datetime) -> None:
        self._offset = now - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def serve(url: str, port: int, now: datetime) -> None:
    import uvicorn

    from ciwatch.config import Settings
    from ciwatch.runtime import Runtime
    from ciwatch.selfmetrics import CollectionMetrics
    from ciwatch.web.app import create_app

    store = open_store(url)
    runtime = Runtime(Settings(database=url), store, ShiftedClock(now), CollectionMetrics())
    app = create_app(runtime, metrics_max_age=METRICS_MAX_AGE)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="on"
    )
    try:
        await uvicorn.Server(config).serve()
    finally:
        await runtime.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command)


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of `pid` in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Figures:
    label: str
    samples: list[float]  # ms

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    def line(self, goal: float | None = None) -> str:
        p50, p95, p99 = statistics.median(self.samples), self.pct(0.95), self.pct(0.99)
        verdict = "" if goal is None else ("  goal met" if p95 <= goal else "  GOAL MISSED")
        return (
            f"  {self.label:<44} n={len(self.samples):<4} p50 {p50:8.1f}  p95 {p95:8.1f}  "
            f"p99 {p99:8.1f} ms{verdict}"
        )


async def get(session: aiohttp.ClientSession, path: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    async with session.get(path) as response:
        body = await response.read()
        elapsed = (time.perf_counter() - start) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
    return elapsed, body


async def sequential(
    session: aiohttp.ClientSession, label: str, path: str, requests: int, warmup: int = 3
) -> Figures:
    for _ in range(warmup):
        await get(session, path)
    return Figures(label, [(await get(session, path))[0] for _ in range(requests)])


async def concurrent(
    session: aiohttp.ClientSession, label: str, path: str, requests: int, concurrency: int
) -> tuple[Figures, float]:
    """Latencies with `concurrency` requests in flight, and the requests per second."""
    samples: list[float] = []
    queue = iter(range(requests))

    async def worker() -> None:
        for _ in queue:
            samples.append((await get(session, path))[0])

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Figures(label, samples), requests / (time.perf_counter() - start)


def series_of(body: bytes) -> tuple[int, dict[str, int]]:
    """Samples in an exposition, in total and per metric family."""
    total = 0
    families: dict[str, int] = {}
    for line in body.split(b"\n"):
        if not line or line.startswith(b"#"):
            continue
        total += 1
        name = line.split(b"{", 1)[0].split(b" ", 1)[0].decode()
        families[name] = families.get(name, 0) + 1
    return total, families


async def wait_ready(base: str, process: subprocess.Popen[bytes], wait: float = 60) -> None:
    deadline = time.monotonic() + wait
    async with aiohttp.ClientSession(base) as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}")
            try:
                async with session.get("/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the server did not become ready")


async def measure(url: str, now: datetime, project: str, args: argparse.Namespace) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        __file__,
        "--serve",
        url,
        "--port",
        str(port),
        "--now",
        now.isoformat(),
    ]
    process = start(command)
    try:
        await wait_ready(base, process)
        print(
            f"  server pid {process.pid}: RSS {rss_mb(process.pid)[0]:.0f} MB at start", flush=True
        )
        timeout = aiohttp.ClientTimeout(total=120)
        connector = aiohttp.TCPConnector(limit=args.concurrency * 2)
        async with aiohttp.ClientSession(base, timeout=timeout, connector=connector) as session:
            await measure_with(session, project, args)
        current, peak = rss_mb(process.pid)
        print(f"  server RSS {current:.0f} MB now, {peak:.0f} MB peak", flush=True)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def measure_with(
    session: aiohttp.ClientSession, project: str, args: argparse.Namespace
) -> None:
    n = args.requests
    # /metrics first: the first scrape of a fresh process builds the snapshot and counts runs.
    cold_ms, body = await get(session, "/metrics")
    total, families = series_of(body)
    jobs = families.get("ci_job_status", 0) + families.get("ci_job_last_duration_seconds", 0)
    print(
        f"  /metrics: {total:,} samples ({jobs:,} of jobs), {len(body) / 1e6:.1f} MB; "
        f"first scrape {cold_ms:,.0f} ms",
        flush=True,
    )
    steady = await sequential(session, "GET /metrics (steady, snapshot cached)", "/metrics", 5, 0)
    refresh: list[float] = []
    for _ in range(args.refreshes):
        await asyncio.sleep(METRICS_MAX_AGE + 0.5)
        refresh.append((await get(session, "/metrics"))[0])
    print(steady.line(GOAL_METRICS_MS), flush=True)
    if refresh:
        print(Figures("GET /metrics (snapshot refresh)", refresh).line(GOAL_METRICS_MS), flush=True)

    # The deep page: follow the cursor `--deep` pages down.
    deep_path = "/api/v1/runs?limit=50"
    walk_start = time.perf_counter()
    walked = 0
    for _ in range(args.deep):
        _, page = await get(session, deep_path)
        walked += 1
        cursor = json.loads(page)["next"]
        if cursor is None:  # a store with fewer than --deep pages of runs
            break
        deep_path = f"/api/v1/runs?limit=50&cursor={cursor}"
    walk_s = time.perf_counter() - walk_start
    print(f"  walked {walked} pages of 50 runs in {walk_s:.1f} s", flush=True)

    quoted = project  # slashes are part of the path
    pages = [
        ("GET /", "/?refresh=0", GOAL_PAGE_P95_MS),
        ("GET /?tv=1 (wall)", "/?tv=1&refresh=0", GOAL_PAGE_P95_MS),
        (
            f"GET /projects/gitlab-main/{project}",
            f"/projects/gitlab-main/{quoted}",
            GOAL_PAGE_P95_MS,
        ),
        ("GET /api/v1/runs?limit=50", "/api/v1/runs?limit=50", GOAL_PAGE_P95_MS),
        (f"GET /api/v1/runs?limit=50 (page {args.deep + 1})", deep_path, GOAL_PAGE_P95_MS),
        (
            "GET /api/v1/runs?project=...&status=failed",
            f"/api/v1/runs?limit=50&project={quoted}&status=failed",
            GOAL_PAGE_P95_MS,
        ),
        ("GET /api/v1/projects", "/api/v1/projects", GOAL_PAGE_P95_MS),
        # Glob filters (ciwatch.filters): GLOB on SQLite, `~` on PostgreSQL.
        ("GET /?project=group/project-00*", "/?project=group/project-00*&refresh=0", None),
        (
            "GET /api/v1/runs?project=group/project-00*,*-0999&ref=main",
            "/api/v1/runs?limit=50&project=group/project-00*,*-0999&ref=main",
            None,
        ),
        ("GET /api/v1/projects?limit=100", "/api/v1/projects?limit=100", GOAL_PAGE_P95_MS),
    ]
    print("  sequential (after 3 warm-up requests):", flush=True)
    for label, path, goal in pages:
        print((await sequential(session, label, path, n)).line(goal), flush=True)
    print(f"  concurrent ({args.concurrency} in flight):", flush=True)
    for label, path, _ in [*pages, ("GET /metrics", "/metrics", None)]:
        count = max(args.concurrency, n // 2 if label != "GET /metrics" else args.concurrency * 2)
        figures, per_s = await concurrent(session, label, path, count, args.concurrency)
        print(f"{figures.line()}  {per_s:6.1f} req/s", flush=True)


# --- engines -----------------------------------------------------------------------------------


def newest_moment(runs: Sequence[Run]) -> datetime:
    return max(run.created_at for run in runs) + timedelta(minutes=10)


def filled(path: Path, marker: Path, wanted: str) -> bool:
    """Whether `path` was filled with `wanted`; removes it (and its WAL) when not."""
    if path.exists() and marker.exists() and marker.read_text() == wanted:
        return True
    for stale in (path, marker, *path.parent.glob(path.name + "-*")):
        stale.unlink(missing_ok=True)
    return False


async def run_sqlite(runs: list[Run], refs: int, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder:
        if args.reuse:
            path = Path(args.reuse)
            marker = path.with_suffix(path.suffix + ".filled")
            wanted = f"{len(runs)} {refs} {args.jobs}"
            if not filled(path, marker, wanted):
                await fill(f"sqlite:///{path}", runs, refs, args.jobs)
                marker.write_text(wanted)
            else:
                print(f"  reusing {path} (filled earlier with {wanted})", flush=True)
        else:
            path = Path(folder) / "web.db"
            await fill(f"sqlite:///{path}", runs, refs, args.jobs)
        print(f"  database file {path.stat().st_size / 1e6:,.0f} MB", flush=True)
        await measure(f"sqlite:///{path}", newest_moment(runs), runs[0].project, args)


async def run_postgresql(runs: list[Run], refs: int, args: argparse.Namespace) -> None:
    name = f"ciwatch_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(f"{args.pg}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{args.pg}/{name}"
        await fill(url, runs, refs, args.jobs)
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("ANALYZE")
            size = await conn.fetchval("SELECT pg_database_size(current_database())")
        finally:
            await conn.close()
        print(f"  database {name}: {size / 1e6:,.0f} MB", flush=True)
        await measure(url, newest_moment(runs), runs[0].project, args)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main(args: argparse.Namespace) -> None:
    refs = min(args.refs, args.runs)
    start = time.perf_counter()
    runs = make_runs(args.runs, refs)
    load = os.getloadavg()
    print(
        f"{args.runs:,} runs over {refs:,} refs ({refs // 5:,} projects), {args.jobs} jobs per "
        f"newest run; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; "
        f"runs built in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    if args.engine in ("sqlite", "both"):
        print("SQLite (file, WAL)", flush=True)
        await run_sqlite(runs, refs, args)
    if args.engine in ("postgresql", "both"):
        print("PostgreSQL", flush=True)
        await run_postgresql(runs, refs, args)
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}", flush=True)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20_000, help="runs in the store")
    parser.add_argument("--refs", type=int, default=5_000, help="project/refs (5 per project)")
    parser.add_argument("--jobs", type=int, default=5, help="jobs of each ref's newest run")
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--requests", type=int, default=200, help="sequential requests per page")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--deep", type=int, default=200, help="pages to walk for the deep page")
    parser.add_argument("--refreshes", type=int, default=3, help="/metrics snapshot refreshes")
    parser.add_argument("--reuse", help="SQLite file to fill once and reuse")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server")
    parser.add_argument("--serve", help=argparse.SUPPRESS)  # child process: the database URL
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--now", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse(sys.argv[1:])
    if arguments.serve:
        asyncio.run(serve(arguments.serve, arguments.port, datetime.fromisoformat(arguments.now)))
    else:
        asyncio.run(main(arguments))

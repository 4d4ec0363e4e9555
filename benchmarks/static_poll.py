"""ciwatch's own cost of polling N targets, against a static server that costs next to nothing.

    python benchmarks/static_poll.py --targets 1000,10000 [--engine sqlite|postgresql]
        [--changed 0.1] [--cycles 2] [--runs 3] [--concurrency 64] [--loop 10] [--profile]
        [--baseline aiohttp|httpx|both|none] [--json]

Prints figures, asserts nothing. benchmarks/poll.py measures against the simulator, whose CPU
(it computes every answer from a timeline) competes with ciwatch's on the same cores; here the
answers are rendered beforehand and the server does a dictionary lookup per poll, so what is
measured is ciwatch.

The server runs in a separate process (`--serve`, started by this script; an aiohttp low-level
server: nginx is not on the machines this project runs on). Targets are listed explicitly (no
discovery): target i is GitLab project `bench/pNNNNN`, GitHub repository `bench-org/rNNNNN` or
Jenkins freestyle job `bench/jNNNNN`, round-robin. Each has `--runs` runs on `main`, and the
answers are the vendors' own samples (tests/fixtures/*/api) with ids, statuses and times
replaced:

- GitLab `GET /api/v4/projects/:id/pipelines`: the runs; with `updated_after`, only the runs
  updated after it (`[]` while nothing changed). A changed pipeline costs ciwatch
  `GET .../pipelines/:id` and `GET .../pipelines/:id/jobs` (rendered on request).
- GitHub `GET /repos/{owner}/{repo}/actions/runs`: the runs with an `ETag`; a matching
  `If-None-Match` is answered 304. A changed run costs `GET .../runs/:id/jobs`.
- Jenkins `GET /job/bench/job/jNNNNN/api/json?tree=...`: the job with its builds (Jenkins has no
  conditional request: always 200). Freestyle jobs have no stages, so no detail request.

`--changed F` flips F of the targets before every measured cycle (the same seeded choice for
every path): the newest run finishes, or a new one starts, and its `updated_at` is now.

Per target count four pollers are measured, each on its own figures:

1. `serve`: `Runtime.open` and `scheduler.run_once()` in this long-lived process, as
   `ciwatch serve` does: the first cycle is the backfill (every run new), then `--cycles`
   steady cycles. CPU is this process's CPU time (`time.process_time`).
2. `cron`: `python -m ciwatch poll --once` as a subprocess on the database the serve path
   filled, `--cycles` times. CPU is the child's, from `resource.getrusage(RUSAGE_CHILDREN)`.
3. `baseline`: plain aiohttp with the same concurrency, the first page of every target every
   cycle, no cursor, no ETag, the JSON decoded and nothing stored: the floor a poller that
   remembers nothing pays for the requests alone.
4. `httpx baseline`: the same requests through `httpx.AsyncClient` (a pool of `--concurrency`
   connections, a semaphore of as many), the JSON decoded, nothing stored, CPU by
   `time.process_time`: the plain baseline poller issue 14 states its goals against.

`--baseline aiohttp|httpx|both|none` picks the baselines (default both; `--no-baseline` is
`--baseline none`).

With `--loop SECONDS` the serve path also runs `scheduler.run()`, the loop `ciwatch serve` runs,
with every source's interval set to SECONDS: after one interval (the loop's first round, its
book loaded and discovery done), `--cycles` windows of one interval each are measured ("serve
loop N"): CPU per poll over the window, without `run_once`'s per-cycle read of every target
state and final write of every timestamp.

Requests and bytes (response bodies) are counted by the server. Peak RSS is the process's high
water mark, reset (Linux `/proc/self/clear_refs`) before each target count; for the cron path
it is the child's `ru_maxrss`. `--profile` adds one more steady serve cycle at the largest count
under cProfile (timed by `time.process_time`: CPU, waits excluded) and prints its top functions
(`--profile-sort tottime|cumulative`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import cProfile
import io
import json
import os
import pstats
import random
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from _common import free_port, pg_database
from aiohttp import web

PROVIDERS = ("gitlab", "github", "jenkins")
SOURCE = {"gitlab": "gl", "github": "gh", "jenkins": "jk"}
FIXTURES = Path(__file__).parents[1] / "tests" / "fixtures"
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
FREESTYLE = "hudson.model.FreeStyleProject"


# -- the static server (its own process) -------------------------------------------------------


def project_name(provider: str, i: int) -> str:
    return {"gitlab": "bench/p", "github": "bench-org/r", "jenkins": "bench/j"}[provider] + (
        f"{i:05d}"
    )


def provider_of(i: int) -> str:
    return PROVIDERS[i % len(PROVIDERS)]


def project_lists(targets: int) -> dict[str, list[str]]:
    lists: dict[str, list[str]] = {p: [] for p in PROVIDERS}
    for i in range(targets):
        lists[provider_of(i)].append(project_name(provider_of(i), i))
    return lists


def _load(path: str) -> Any:
    return json.loads((FIXTURES / path).read_text())


def _gl_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _gh_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakeRun:
    number: int  # 1, 2, ... per target
    running: bool
    created: datetime
    updated: datetime


class Templates:
    """One item of each vendor sample, copied and filled per run."""

    def __init__(self) -> None:
        self.gl_item = _load("gitlab/api/pipelines-list.json")[0]
        self.gl_detail = _load("gitlab/api/pipeline.json")
        self.gl_jobs = _load("gitlab/api/pipeline-jobs-list.json")
        runs = _load("github/api/workflow-runs-list.json")
        self.gh_run = runs["workflow_runs"][0]
        self.gh_jobs = _load("github/api/workflow-run-jobs-list.json")
        self.jk_build = _load("jenkins/api/build.json")


class Target:
    def __init__(self, i: int, runs: int, start: datetime) -> None:
        self.i = i
        self.provider = provider_of(i)
        self.project = project_name(self.provider, i)
        self.runs = [
            FakeRun(
                n + 1, False, start + timedelta(minutes=n), start + timedelta(minutes=n, seconds=90)
            )
            for n in range(runs)
        ]
        self.keep = runs
        self.version = 0

    def flip(self, now: datetime) -> None:
        newest = self.runs[-1]
        if newest.running:
            newest.running = False
            newest.updated = now
        else:
            self.runs.append(FakeRun(newest.number + 1, True, now, now))
            self.runs = self.runs[-self.keep :]
        self.version += 1

    def run_id(self, run: FakeRun) -> int:
        return self.i * 100_000 + run.number


class StaticWorld:
    """Every poll answer as bytes, keyed by the raw request path (without the query)."""

    def __init__(self, targets: int, runs: int) -> None:
        self.t = Templates()
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
        self.targets = [Target(i, runs, start) for i in range(targets)]
        self.by_path: dict[str, Target] = {}
        # per GitLab target: (newest updated_at, [(updated_at, item bytes)] newest first)
        self.gl_items: dict[int, list[tuple[datetime, bytes]]] = {}
        self.bodies: dict[str, tuple[bytes, str | None]] = {}
        self.details: dict[str, tuple[Target, int, str]] = {}
        for target in self.targets:
            self.by_path[self.list_path(target)] = target
            self.render(target)

    @staticmethod
    def list_path(target: Target) -> str:
        if target.provider == "gitlab":
            return f"/gitlab/api/v4/projects/{quote(target.project, safe='')}/pipelines"
        if target.provider == "github":
            return f"/github/repos/{target.project}/actions/runs"
        owner, job = target.project.split("/")
        return f"/jenkins/job/{owner}/job/{job}/api/json"

    def render(self, target: Target) -> None:
        path = self.list_path(target)
        for old in [k for k, (t, _, _) in self.details.items() if t is target]:
            del self.details[old]
        newest_first = list(reversed(target.runs))
        if target.provider == "gitlab":
            items = []
            for run in newest_first:
                item = copy.copy(self.t.gl_item)
                item.update(self._gl_fields(target, run))
                items.append((run.updated, json.dumps(item).encode()))
                rid = target.run_id(run)
                self.details[f"{path}/{rid}"] = (target, rid, "gl-detail")
                self.details[f"{path}/{rid}/jobs"] = (target, rid, "gl-jobs")
            self.gl_items[target.i] = items
            self.bodies[path] = (b"[" + b",".join(body for _, body in items) + b"]", None)
        elif target.provider == "github":
            listed = []
            for run in newest_first:
                item = copy.deepcopy(self.t.gh_run)
                rid = target.run_id(run)
                item.update(
                    id=rid,
                    run_number=run.number,
                    head_branch="main",
                    status="in_progress" if run.running else "completed",
                    conclusion=None if run.running else "success",
                    created_at=_gh_time(run.created),
                    updated_at=_gh_time(run.updated),
                    run_started_at=_gh_time(run.created),
                    html_url=f"https://github.com/{target.project}/actions/runs/{rid}",
                )
                item["repository"]["full_name"] = target.project
                listed.append(item)
                self.details[f"{path}/{rid}/jobs"] = (target, rid, "gh-jobs")
            body = json.dumps({"total_count": len(target.runs), "workflow_runs": listed})
            self.bodies[path] = (body.encode(), f'W/"{target.i:x}-{target.version}"')
        else:
            builds = []
            for run in newest_first:
                build = {
                    k: self.t.jk_build[k]
                    for k in ("actions", "duration", "number", "result", "timestamp", "url")
                }
                build.update(
                    number=run.number,
                    building=run.running,
                    result=None if run.running else "SUCCESS",
                    timestamp=int(run.created.timestamp() * 1000),
                    duration=0 if run.running else 90_000,
                    url=f"http://jenkins.example/job/{target.project}/{run.number}/",
                )
                builds.append(build)
            job = {
                "_class": FREESTYLE,
                "name": target.project.split("/")[1],
                "builds": builds,
                "inQueue": False,
                "nextBuildNumber": target.runs[-1].number + 1,
                "queueItem": None,
            }
            self.bodies[path] = (json.dumps(job).encode(), None)

    def _gl_fields(self, target: Target, run: FakeRun) -> dict[str, Any]:
        rid = target.run_id(run)
        return {
            "id": rid,
            "iid": run.number,
            "project_id": target.i + 1,
            "status": "running" if run.running else "success",
            "ref": "main",
            "web_url": f"https://gitlab.example/{target.project}/-/pipelines/{rid}",
            "created_at": _gl_time(run.created),
            "updated_at": _gl_time(run.updated),
        }

    def detail(self, path: str) -> bytes | None:
        found = self.details.get(path)
        if found is None:
            return None
        target, rid, kind = found
        run = next(r for r in target.runs if target.run_id(r) == rid)
        if kind == "gl-detail":
            item = copy.copy(self.t.gl_detail)
            item.update(self._gl_fields(target, run))
            item.update(
                started_at=_gl_time(run.created),
                finished_at=None if run.running else _gl_time(run.updated),
                duration=None if run.running else 90,
            )
            return json.dumps(item).encode()
        if kind == "gl-jobs":
            jobs = copy.deepcopy(self.t.gl_jobs)
            for n, job in enumerate(jobs):
                job["id"] = rid * 10 + n
                job["pipeline"].update(id=rid, project_id=target.i + 1, ref="main")
            return json.dumps(jobs).encode()
        page = copy.deepcopy(self.t.gh_jobs)
        for n, job in enumerate(page["jobs"]):
            job.update(id=rid * 10 + n, run_id=rid, head_branch="main")
        return json.dumps(page).encode()

    def flip(self, fraction: float, seed: int) -> int:
        chosen = random.Random(seed).sample(self.targets, round(fraction * len(self.targets)))
        now = datetime.now(UTC)
        for target in chosen:
            target.flip(now)
            self.render(target)
        return len(chosen)


def serve(port: int, targets: int, runs: int) -> None:
    world = StaticWorld(targets, runs)
    stats: Counter[str] = Counter()
    empty = b"[]"

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        path = request.rel_url.raw_path
        provider = path.split("/", 2)[1]
        stats["requests"] += 1
        stats[f"requests_{provider}"] += 1
        found = world.bodies.get(path)
        if found is not None:
            body, etag = found
            if etag is not None:
                if request.headers.get("If-None-Match") == etag:
                    stats["not_modified"] += 1
                    return web.Response(status=304, headers={"ETag": etag})
                headers = {"ETag": etag, "Content-Type": "application/json"}
                stats["bytes"] += len(body)
                return web.Response(body=body, headers=headers)
            after = request.rel_url.query.get("updated_after")
            if after is not None:
                items = world.gl_items[world.by_path[path].i]
                since = datetime.fromisoformat(after)
                if items[0][0] <= since:
                    body = empty
                else:
                    body = b"[" + b",".join(b for t, b in items if t > since) + b"]"
            stats["bytes"] += len(body)
            return web.Response(body=body, content_type="application/json")
        if path.startswith("/_static/"):
            return await control(request, path)
        body_or_none = world.detail(path)
        if body_or_none is None:
            stats["not_found"] += 1
            return web.Response(status=404, text=f"no answer for {path}")
        stats["details"] += 1
        stats["bytes"] += len(body_or_none)
        return web.Response(body=body_or_none, content_type="application/json")

    async def control(request: web.BaseRequest, path: str) -> web.StreamResponse:
        stats["requests"] -= 1  # not the poller's
        if path == "/_static/flip":
            fraction = float(request.rel_url.query["fraction"])
            n = world.flip(fraction, int(request.rel_url.query["seed"]))
            return web.json_response({"flipped": n})
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        return web.json_response({**stats, "cpu_s": cpu.ru_utime + cpu.ru_stime})

    async def main() -> None:
        server = web.Server(handle)
        runner = web.ServerRunner(server, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


class StaticServer:
    """This script with `--serve` in a child process, stopped with SIGTERM."""

    def __init__(self, targets: int, runs: int) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, __file__, "--serve", str(port), "--targets", str(targets)]
        self.proc = subprocess.Popen(
            [*command, "--runs", str(runs)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # after every answer is rendered
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"the static server did not start (exit {self.proc.wait()})")

    async def stats(self, session: aiohttp.ClientSession) -> Counter[str]:
        async with session.get(f"{self.url}/_static/stats") as resp:
            data = await resp.json()
            return Counter(data)

    async def flip(self, session: aiohttp.ClientSession, fraction: float, seed: int) -> int:
        params = {"fraction": str(fraction), "seed": str(seed)}
        async with session.post(f"{self.url}/_static/flip", params=params) as resp:
            return int((await resp.json())["flipped"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- figures -----------------------------------------------------------------------------------


@dataclass
class Row:
    targets: int
    engine: str
    changed: float
    path: str  # serve backfill, serve steady N, cron N, baseline N
    wall_s: float = 0.0
    cpu_s: float = 0.0
    requests: int = 0
    details: int = 0
    not_modified: int = 0
    bytes: int = 0
    peak_rss_mb: float = 0.0
    server_cpu_s: float = 0.0
    failed: int = 0
    polls: int = 0  # serve loop: the polls of the window (else one per target)

    @property
    def cpu_ms_per_target(self) -> float:
        return 1000 * self.cpu_s / (self.polls or self.targets)


def reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux 4.0+)


def peak_rss_mb() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Meter:
    def __init__(self, server: StaticServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    @contextlib.asynccontextmanager
    async def measure(self, row: Row, *, child: bool = False) -> AsyncIterator[Row]:
        before = await self.server.stats(self.session)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu, wall = time.process_time(), time.perf_counter()
        yield row
        row.wall_s = time.perf_counter() - wall
        if child:
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            row.cpu_s = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
            row.peak_rss_mb = after.ru_maxrss / 1024
        else:
            row.cpu_s = time.process_time() - cpu
            row.peak_rss_mb = peak_rss_mb()
        stats = await self.server.stats(self.session)
        stats.subtract(before)
        row.requests = stats["requests"]
        row.details = stats["details"]
        row.not_modified = stats["not_modified"]
        row.bytes = stats["bytes"]
        row.server_cpu_s = stats["cpu_s"]
        row.failed += stats["not_found"]


# -- the pollers -------------------------------------------------------------------------------


def settings_data(
    url: str, database: str, args: argparse.Namespace, targets: int
) -> dict[str, Any]:
    lists = project_lists(targets)
    common: dict[str, Any] = {
        "requests_per_second": 1_000_000.0,
        "backfill": args.runs,
        "token": "bench",
    }
    if args.loop:
        common.update(interval=f"{args.loop}s", active_interval=f"{args.loop}s")
    sources: list[dict[str, Any]] = []
    if lists["gitlab"]:
        sources.append(
            {"name": "gl", "type": "gitlab", "url": f"{url}/gitlab", "projects": lists["gitlab"]}
        )
    if lists["github"]:
        sources.append(
            {"name": "gh", "type": "github", "url": f"{url}/github", "repos": lists["github"]}
        )
    if lists["jenkins"]:
        sources.append(
            {
                "name": "jk",
                "type": "jenkins",
                "url": f"{url}/jenkins",
                "username": "bench",
                "jobs": lists["jenkins"],
                "builds": args.runs,
            }
        )
    return {
        "database": database,
        "collection": {"concurrency": args.concurrency, "retries": 0},
        "sources": [{**common, **s} for s in sources],
    }


async def flip(
    server: StaticServer, session: aiohttp.ClientSession, args: argparse.Namespace, seed: int
) -> None:
    if args.changed > 0:
        await server.flip(session, args.changed, seed)


async def bench_serve(
    config: Path, base: Row, meter: Meter, args: argparse.Namespace, out: Callable[[Row], None]
) -> list[Row]:
    from ciwatch.config.loader import load_settings
    from ciwatch.runtime import Runtime

    runtime = await Runtime.open(load_settings(config))
    rows = []
    try:
        scheduler = runtime.scheduler
        assert scheduler is not None
        for cycle in range(args.cycles + 1):
            row = Row(
                **{
                    **asdict(base),
                    "path": "serve backfill" if cycle == 0 else f"serve steady {cycle}",
                }
            )
            if cycle:
                await flip(meter.server, meter.session, args, seed=cycle)
            async with meter.measure(row):
                report = await scheduler.run_once()
            row.failed += sum(1 for o in report.outcomes if not o.ok)
            rows.append(row)
            out(row)
        if args.loop:
            rows += await bench_loop(scheduler, base, meter, args, out)
        if args.profile and base.targets == max(args.targets):
            await flip(meter.server, meter.session, args, seed=args.cycles + 1)
            # CPU time, not the wall clock: waits (for the database's thread, a connection, the
            # server) cost nothing here, as in the CPU columns.
            profiler = cProfile.Profile(time.process_time)
            profiler.enable()
            await scheduler.run_once()
            profiler.disable()
            text = io.StringIO()
            stats = pstats.Stats(profiler, stream=text).sort_stats(args.profile_sort)
            stats.print_stats(args.profile_top)
            print(
                f"\ncProfile of one steady serve cycle at {base.targets:,} targets "
                f"(CPU, by {args.profile_sort}):"
            )
            print("\n".join(text.getvalue().splitlines()[: args.profile_top + 12]), flush=True)
    finally:
        await runtime.close()
    return rows


async def bench_loop(
    scheduler: Any, base: Row, meter: Meter, args: argparse.Namespace, out: Callable[[Row], None]
) -> list[Row]:
    """`scheduler.run()` as `ciwatch serve` runs it: windows of one interval each."""
    stop = asyncio.Event()
    task = asyncio.create_task(scheduler.run(stop))
    rows = []
    try:
        await asyncio.sleep(args.loop)  # the first round: the book loaded, discovery done
        for window in range(1, args.cycles + 1):
            row = Row(**{**asdict(base), "path": f"serve loop {window}"})
            await flip(meter.server, meter.session, args, seed=300 + window)
            async with meter.measure(row):
                await asyncio.sleep(args.loop)
            row.polls = row.requests - row.details
            rows.append(row)
            out(row)
    finally:
        stop.set()
        await task
    return rows


async def bench_cron(
    config: Path, base: Row, meter: Meter, args: argparse.Namespace, out: Callable[[Row], None]
) -> list[Row]:
    rows = []
    for cycle in range(1, args.cycles + 1):
        row = Row(**{**asdict(base), "path": f"cron {cycle}"})
        await flip(meter.server, meter.session, args, seed=100 + cycle)
        command = [
            sys.executable,
            "-m",
            "ciwatch",
            "poll",
            "--once",
            "--json",
            "--config",
            str(config),
        ]
        async with meter.measure(row, child=True):
            proc = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            _, err = await proc.communicate()
        if proc.returncode not in (0, 3):
            raise RuntimeError(
                f"ciwatch poll --once exited {proc.returncode}: {err.decode()[-2000:]}"
            )
        if proc.returncode == 3:
            row.failed += 1
        rows.append(row)
        out(row)
    return rows


def baseline_requests(url: str, targets: int) -> list[tuple[str, dict[str, str]]]:
    """The first page of every target: no cursor, no ETag (the same for both baselines)."""
    lists = project_lists(targets)
    tree = "_class,name,builds[number,url,result,building,timestamp,duration]{0,100}"
    requests = [
        (f"{url}/gitlab/api/v4/projects/{quote(p, safe='')}/pipelines", {"per_page": "100"})
        for p in lists["gitlab"]
    ]
    requests += [
        (f"{url}/github/repos/{p}/actions/runs", {"per_page": "100"}) for p in lists["github"]
    ]
    requests += [
        (f"{url}/jenkins/job/{p.split('/')[0]}/job/{p.split('/')[1]}/api/json", {"tree": tree})
        for p in lists["jenkins"]
    ]
    return requests


One = Callable[[str, dict[str, str]], Awaitable[int]]


async def _baseline_cycles(
    label: str,
    seed: int,
    one: One,
    requests: list[tuple[str, dict[str, str]]],
    base: Row,
    meter: Meter,
    args: argparse.Namespace,
    out: Callable[[Row], None],
) -> list[Row]:
    """`--cycles` measured cycles of a baseline: every request once, through `one` (the
    number of items decoded, -1 for a failed request)."""
    rows = []
    for cycle in range(1, args.cycles + 1):
        row = Row(**{**asdict(base), "path": f"{label} {cycle}"})
        await flip(meter.server, meter.session, args, seed=seed + cycle)
        async with meter.measure(row):
            seen = await asyncio.gather(*(one(u, p) for u, p in requests))
        row.failed += sum(1 for n in seen if n < 0)
        rows.append(row)
        out(row)
    return rows


async def bench_baseline(
    url: str, base: Row, meter: Meter, args: argparse.Namespace, out: Callable[[Row], None]
) -> list[Row]:
    requests = baseline_requests(url, base.targets)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        semaphore = asyncio.Semaphore(args.concurrency)

        async def one(target_url: str, params: dict[str, str]) -> int:
            async with semaphore, session.get(target_url, params=params) as resp:
                data = json.loads(await resp.read())
                return len(data) if resp.status == 200 else -1

        return await _baseline_cycles("baseline", 200, one, requests, base, meter, args, out)


async def bench_httpx(
    url: str, base: Row, meter: Meter, args: argparse.Namespace, out: Callable[[Row], None]
) -> list[Row]:
    """Issue 14's baseline: the same requests through `httpx.AsyncClient`, a pool of
    `--concurrency` connections and a semaphore of as many, the JSON decoded, nothing stored."""
    import httpx

    requests = baseline_requests(url, base.targets)
    limits = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(300.0)) as client:
        semaphore = asyncio.Semaphore(args.concurrency)

        async def one(target_url: str, params: dict[str, str]) -> int:
            async with semaphore:
                resp = await client.get(target_url, params=params)
                data = json.loads(resp.content)
                return len(data) if resp.status_code == 200 else -1

        return await _baseline_cycles("httpx baseline", 400, one, requests, base, meter, args, out)


@contextlib.asynccontextmanager
async def database(engine: str, folder: Path) -> AsyncIterator[str]:
    if engine == "sqlite":
        yield f"sqlite:///{folder / 'ciwatch.db'}"
        return
    name = f"ciwatch_static_{secrets.token_hex(4)}"
    await pg_database(True, name)
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        await pg_database(False, name)


# -- output ------------------------------------------------------------------------------------

COLUMNS: tuple[tuple[str, int, Callable[[Row], str]], ...] = (
    ("targets", 7, lambda r: f"{r.targets:,}"),
    ("engine", 10, lambda r: r.engine),
    ("changed", 7, lambda r: f"{r.changed:.0%}"),
    ("path", 16, lambda r: r.path),
    ("wall s", 7, lambda r: f"{r.wall_s:.2f}"),
    ("CPU s", 7, lambda r: f"{r.cpu_s:.2f}"),
    ("CPU ms/tgt", 10, lambda r: f"{r.cpu_ms_per_target:.3f}"),
    ("requests", 8, lambda r: f"{r.requests:,}"),
    ("details", 7, lambda r: f"{r.details:,}"),
    ("304", 6, lambda r: f"{r.not_modified:,}"),
    ("MB recv", 8, lambda r: f"{r.bytes / 1e6:.2f}"),
    ("RSS MB", 6, lambda r: f"{r.peak_rss_mb:.0f}"),
    ("srv CPU", 7, lambda r: f"{r.server_cpu_s:.2f}"),
    ("fail", 4, lambda r: f"{r.failed}"),
)


def line(cells: list[str]) -> str:
    return "  ".join(
        c.ljust(w) if n in (1, 3) else c.rjust(w)
        for n, (c, (_, w, _)) in enumerate(zip(cells, COLUMNS, strict=True))
    )


def header() -> str:
    return line([name for name, _, _ in COLUMNS])


def row_text(row: Row) -> str:
    return line([cell(row) for _, _, cell in COLUMNS])


LEGEND = (
    "CPU ms/tgt: per target (serve loop: per poll of the window); "
    "CPU s: the poller's process CPU (cron: the `ciwatch poll --once` child's, start-up and "
    "imports included); requests, details (GitLab pipeline/jobs and GitHub jobs requests), 304 "
    "and MB recv (response bodies) as the static server counted them; RSS MB: peak; srv CPU: "
    "the static server's CPU meanwhile; fail: failed targets or unknown URLs; baseline: plain "
    "aiohttp, httpx baseline: plain httpx (issue 14's), both without cursor or ETag."
)


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--targets", default="1000", help="comma-separated target counts")
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--changed", type=float, default=0.0, help="fraction flipped per cycle")
    parser.add_argument("--cycles", type=int, default=2, help="measured cycles per path")
    parser.add_argument("--runs", type=int, default=3, help="runs per target")
    parser.add_argument("--concurrency", type=int, default=64, help="polls in flight")
    parser.add_argument(
        "--loop", type=float, default=0.0, metavar="SECONDS", help="also measure the serve loop"
    )
    parser.add_argument("--no-cron", action="store_true", help="skip the cron path")
    parser.add_argument(
        "--baseline",
        choices=["aiohttp", "httpx", "both", "none"],
        default="both",
        help="which plain baseline poller(s) to measure",
    )
    parser.add_argument(
        "--no-baseline", action="store_const", const="none", dest="baseline", help=argparse.SUPPRESS
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one steady cycle")
    parser.add_argument("--profile-top", type=int, default=25, help="functions shown")
    parser.add_argument(
        "--profile-sort",
        choices=("tottime", "cumulative"),
        default="tottime",
        help="order of the profile's functions",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON list instead")
    args = parser.parse_args(argv)
    try:
        args.targets = [int(t) for t in str(args.targets).split(",")]
    except ValueError:
        parser.error("--targets: comma-separated integers")
    if min(args.targets) < 1 or args.cycles < 1 or args.runs < 1 or args.concurrency < 1:
        parser.error("--targets, --cycles, --runs and --concurrency must be 1 or more")
    if args.loop < 0:
        parser.error("--loop must be 0 (off) or a number of seconds")
    if not 0.0 <= args.changed <= 1.0:
        parser.error("--changed must be between 0 and 1")
    return args


async def run(args: argparse.Namespace) -> list[Row]:
    def out(row: Row) -> None:
        if not args.json:
            print(row_text(row), flush=True)

    rows: list[Row] = []
    if not args.json:
        print(
            f"{args.engine}; {args.runs} runs per target; concurrency {args.concurrency}; "
            f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
            f"Python {sys.version.split()[0]}"
        )
        print(header(), flush=True)
    for targets in args.targets:
        reset_peak_rss()
        server = StaticServer(targets, args.runs)
        try:
            with tempfile.TemporaryDirectory(prefix="ciwatch-static-") as folder:
                async with (
                    aiohttp.ClientSession() as control,
                    database(args.engine, Path(folder)) as db,
                ):
                    meter = Meter(server, control)
                    config = Path(folder) / "ciwatch.yaml"
                    config.write_text(json.dumps(settings_data(server.url, db, args, targets)))
                    base = Row(targets, args.engine, args.changed, "")
                    rows += await bench_serve(config, base, meter, args, out)
                    if not args.no_cron:
                        rows += await bench_cron(config, base, meter, args, out)
                    if args.baseline in ("aiohttp", "both"):
                        rows += await bench_baseline(server.url, base, meter, args, out)
                    if args.baseline in ("httpx", "both"):
                        rows += await bench_httpx(server.url, base, meter, args, out)
        finally:
            server.stop()
    return rows


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.targets[0], args.runs)
        return
    rows = asyncio.run(run(args))
    if args.json:
        print(json.dumps([{**asdict(r), "cpu_ms_per_target": r.cpu_ms_per_target} for r in rows]))
    else:
        print(LEGEND)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Collection over N simulated targets: ciwatch's poll cycles against a naive poller.

    python benchmarks/poll.py --targets 1000 [--cycles 3] [--engine sqlite|postgresql]
        [--concurrency 16] [--backfill N] [--explicit] [--tests] [--no-naive] [--json]

Prints figures, asserts nothing. Steps:

1. `python -m ciwatch simulate --targets N` starts in a separate process: `generated_scenario(N)`,
   N projects round-robin over GitLab, GitHub and Jenkins, a run every 2 to 30 minutes each on
   real time, about twenty runs visible per project at the start.
2. ciwatch gets one source per provider pointed at the simulator, with the simulator's default
   credentials. Targets come from discovery (GitLab group `gen`, GitHub orgs `gen-org-NNN`,
   Jenkins folder `gen`), or with `--explicit` from the project lists of `generated_scenario(N)`.
   `requests_per_second` is raised so that the token bucket never waits. The store is a
   temporary SQLite file, or with `--engine postgresql` a throw-away database on `--pg`, dropped
   afterwards. `--backfill N` sets every source's `backfill` and the Jenkins `builds` window
   (at most 20) to N. `--tests` sets every source's `tests: true` (issue 13's test reports):
   the per-provider table's "detail/changed" column then includes the test-report requests.
3. `Runtime.open`, one `scheduler.run_once()` as the backfill cycle, then `--cycles` steady-state
   cycles back to back. The simulator runs on real time, so runs keep arriving meanwhile.
4. A naive poller with plain aiohttp and the same concurrency: for every target the full first
   page of runs (GitLab `per_page=100` without `updated_after`, GitHub `per_page=100` without an
   ETag, Jenkins `builds{0,100}`), every run upserted into a second store, and the jobs of every
   run fetched and upserted, with no change detection. A warm-up pass stores the runs only, so
   that its store is not empty, then one full cycle is measured.

For each cycle the benchmark prints wall and process CPU seconds, API requests (ciwatch's
self-metrics, discovery shown apart, and the simulator's own count), requests per target, GitHub
304s and 200s, runs seen and changed, store calls, peak RSS (`ru_maxrss`, which only grows over
the process's life) and the simulator process's CPU. A per-provider table and the ciwatch/naive
ratios follow.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote, unquote

import aiohttp
import asyncpg
import msgspec

from ciwatch.config import GitHubSource, GitLabSource, JenkinsSource, Settings
from ciwatch.domain import Job, Run
from ciwatch.providers import github, gitlab, jenkins
from ciwatch.providers.jenkins_poll import BUILD_FIELDS, MULTIBRANCH, PIPELINE, job_path
from ciwatch.runtime import Runtime
from ciwatch.scheduler.loop import CycleReport
from ciwatch.simulator import (
    DEFAULT_GITHUB_TOKEN,
    DEFAULT_GITLAB_TOKEN,
    DEFAULT_JENKINS_TOKEN,
    DEFAULT_JENKINS_USER,
    generated_scenario,
)
from ciwatch.store import Store, open_store

PROVIDERS = ("gitlab", "github", "jenkins")
SOURCE = {"gitlab": "gl", "github": "gh", "jenkins": "jk"}  # source name per provider
FAST = 1_000_000.0  # requests per second: the token bucket never waits
PG_SERVER = "postgresql://postgres@127.0.0.1:5432"


# -- the simulator, in its own process ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SimulatorProcess:
    """`python -m ciwatch simulate --targets N` on a free port, stopped with SIGTERM.

    Its stderr goes to an unnamed temporary file, read if it exits early: a pipe that nobody
    reads during a long run would block the simulator once its buffer is full."""

    def __init__(self, targets: int, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "ciwatch", "simulate"]
        command += ["--listen", f"127.0.0.1:{port}", "--targets", str(targets)]
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        try:
            self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.stderr)
        except BaseException:
            self.stderr.close()
            raise

    async def wait_ready(self, session: aiohttp.ClientSession, within: float = 60.0) -> float:
        """Seconds until the simulator answers; RuntimeError if it exits or stays silent."""
        started = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                self.stderr.seek(0)
                err = self.stderr.read().decode(errors="replace")
                raise RuntimeError(f"the simulator exited with {self.proc.returncode}: {err}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{self.url}/_simulator/stats") as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            if time.monotonic() - started > within:
                raise RuntimeError(f"the simulator did not answer on {self.url} in {within}s")
            await asyncio.sleep(0.1)

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the simulator process (Linux /proc), or None."""
        try:
            stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            self.stderr.close()


class SimStats(msgspec.Struct):
    total: int
    by_provider: dict[str, int]
    not_modified: int


async def sim_stats(session: aiohttp.ClientSession, url: str) -> SimStats:
    """The simulator's counters, without `by_path`: one key per distinct path is megabytes at
    10,000 targets, and decoding it would inflate this process's peak RSS. `by_path` comes last
    in the answer, so reading stops there; if it ever moves, the whole answer is decoded."""
    buffer = bytearray()
    async with session.get(f"{url}/_simulator/stats") as resp:
        resp.raise_for_status()
        async for chunk in resp.content.iter_chunked(1 << 16):
            buffer += chunk
            for marker in (b',"by_path"', b', "by_path"'):
                cut = buffer.find(marker)
                if cut >= 0:
                    return msgspec.json.decode(bytes(buffer[:cut]) + b"}", type=SimStats)
    return msgspec.json.decode(bytes(buffer), type=SimStats)


# -- figures -----------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class ProviderFigures:
    """One provider's share of a cycle. `requests` leaves discovery out."""

    targets: int = 0
    requests: int = 0
    discovery_requests: int = 0
    sim_requests: int = 0
    runs_seen: int = 0
    runs_changed: int = 0
    not_modified: int = 0  # polls answered 304
    ok_changed: int = 0  # polls answered with a body in which a run had changed
    ok_unchanged: int = 0  # ... in which nothing had (a wasted body, for GitHub)
    failed: int = 0

    @property
    def detail_requests(self) -> int:
        """Requests beyond one list request per successful poll: details, jobs, extra pages,
        and whatever failed polls sent."""
        return self.requests - self.targets + self.failed


@dataclass
class Figures:
    """One measured cycle."""

    label: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    sim_cpu_s: float | None = None
    sim_requests: int = 0  # as the simulator counted them, discovery included
    store_reads: int = 0
    store_writes: int = 0
    peak_rss_mb: float = 0.0
    providers: dict[str, ProviderFigures] = field(
        default_factory=lambda: {p: ProviderFigures() for p in PROVIDERS}
    )

    def total(self, name: str) -> int:
        return sum(int(getattr(p, name)) for p in self.providers.values())

    @property
    def targets(self) -> int:
        return self.total("targets")

    @property
    def requests(self) -> int:
        return self.total("requests")

    @property
    def requests_per_target(self) -> float:
        return self.requests / max(self.targets, 1)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name, figures in self.providers.items():
            data["providers"][name]["detail_requests"] = figures.detail_requests
        data["targets"] = self.targets
        data["requests"] = self.requests
        data["discovery_requests"] = self.total("discovery_requests")
        data["requests_per_target"] = self.requests_per_target
        data["runs_seen"] = self.total("runs_seen")
        data["runs_changed"] = self.total("runs_changed")
        data["failed"] = self.total("failed")
        return data


class CountingStore:
    """A store that counts its reads and its write transactions."""

    READS = frozenset({"get_run", "get_target_state", "target_states"})
    WRITES = frozenset(
        {"upsert_run", "upsert_runs", "upsert_jobs", "save_target_state", "save_target_states"}
    )

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in self.READS | self.WRITES:
            return attr

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await attr(*args, **kwargs)

        return counted

    def counts(self) -> tuple[int, int]:
        reads = sum(n for name, n in self.calls.items() if name in self.READS)
        return reads, sum(self.calls.values()) - reads


class Meter:
    """Wall, CPU, store calls, simulator requests and CPU around one cycle."""

    def __init__(self, sim: SimulatorProcess, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.session = session

    @contextlib.asynccontextmanager
    async def measure(self, figures: Figures, store: CountingStore) -> AsyncIterator[Figures]:
        before = await sim_stats(self.session, self.sim.url)
        sim_cpu = self.sim.cpu_seconds()
        reads, writes = store.counts()
        cpu, wall = time.process_time(), time.perf_counter()
        yield figures
        figures.wall_s = time.perf_counter() - wall
        figures.cpu_s = time.process_time() - cpu
        figures.store_reads = store.counts()[0] - reads
        figures.store_writes = store.counts()[1] - writes
        after = await sim_stats(self.session, self.sim.url)
        sim_cpu_after = self.sim.cpu_seconds()
        if sim_cpu is not None and sim_cpu_after is not None:
            figures.sim_cpu_s = sim_cpu_after - sim_cpu
        figures.sim_requests = after.total - before.total
        for name, share in figures.providers.items():
            share.sim_requests = after.by_provider.get(name, 0) - before.by_provider.get(name, 0)
        figures.peak_rss_mb = peak_rss_mb()


# -- ciwatch -----------------------------------------------------------------------------------


def project_lists(targets: int) -> dict[str, list[str]]:
    """The generated scenario's project paths per provider (the simulator uses seed 1 too)."""
    lists: dict[str, list[str]] = {name: [] for name in PROVIDERS}
    for project in generated_scenario(targets).projects:
        lists[project.provider].append(project.path)
    return lists


def build_settings(
    sim_url: str, database: str, args: argparse.Namespace, lists: dict[str, list[str]]
) -> Settings:
    common: dict[str, Any] = {"requests_per_second": FAST}
    if args.tests:
        common["tests"] = True
    builds: dict[str, Any] = {}
    if args.backfill is not None:
        common["backfill"] = args.backfill
        # After the first sight Jenkins polls the newest `builds` (20): with a smaller backfill
        # the first steady-state cycle would fetch the rest. Keep the window at the backfill.
        builds["builds"] = max(1, min(args.backfill, 20))
    if args.explicit:
        watch: dict[str, dict[str, Any]] = {
            "gitlab": {"projects": lists["gitlab"]},
            "github": {"repos": lists["github"]},
            "jenkins": {"jobs": lists["jenkins"]},
        }
    else:
        orgs = sorted({name.split("/", 1)[0] for name in lists["github"]})
        watch = {
            "gitlab": {"groups": ["gen"]},
            "github": {"orgs": orgs},
            "jenkins": {"folders": ["gen"]},
        }
    sources: list[Any] = []
    if lists["gitlab"]:
        gl = GitLabSource(
            name=SOURCE["gitlab"],
            url=f"{sim_url}/gitlab",
            token=DEFAULT_GITLAB_TOKEN,
            **watch["gitlab"],
            **common,
        )
        sources.append(gl)
    if lists["github"]:
        gh = GitHubSource(
            name=SOURCE["github"],
            url=f"{sim_url}/github",
            token=DEFAULT_GITHUB_TOKEN,
            **watch["github"],
            **common,
        )
        sources.append(gh)
    if lists["jenkins"]:
        jk = JenkinsSource(
            name=SOURCE["jenkins"],
            url=f"{sim_url}/jenkins",
            username=DEFAULT_JENKINS_USER,
            token=DEFAULT_JENKINS_TOKEN,
            **watch["jenkins"],
            **common,
            **builds,
        )
        sources.append(jk)
    return Settings(
        database=database,
        collection={"concurrency": args.concurrency, "retries": 2},
        sources=sources,
    )


def fill_from_report(
    figures: Figures, report: CycleReport, requests: Counter[str], discovery: Counter[str]
) -> None:
    provider_of = {source: provider for provider, source in SOURCE.items()}
    for provider, share in figures.providers.items():
        share.requests = requests[SOURCE[provider]] - discovery[SOURCE[provider]]
        share.discovery_requests = discovery[SOURCE[provider]]
    for outcome in report.outcomes:
        share = figures.providers[provider_of[outcome.target.source]]
        share.targets += 1
        share.runs_seen += outcome.seen
        share.runs_changed += outcome.changed
        if not outcome.ok:
            share.failed += 1
        elif outcome.not_modified:
            share.not_modified += 1
        elif outcome.changed:
            share.ok_changed += 1
        elif not outcome.first:
            share.ok_unchanged += 1


async def bench_ciwatch(
    settings: Settings, args: argparse.Namespace, meter: Meter, out: Callable[[Figures], None]
) -> list[Figures]:
    store = CountingStore(open_store(settings.database))
    try:
        runtime = await Runtime.open(settings, store=cast(Store, store))
    except BaseException:
        await store.close()  # Runtime.open closes only a store it opened itself
        raise
    try:
        scheduler = runtime.scheduler
        if scheduler is None:
            raise RuntimeError("Runtime.open built no scheduler")
        discovery: Counter[str] = Counter()
        for source, provider in runtime.providers.items():
            # `run_once` discovers before it polls, nothing else runs meanwhile: count it apart.
            provider.discover = counting_discovery(  # type: ignore[method-assign]
                provider.discover, runtime, source, discovery
            )
        results = []
        for cycle in range(args.cycles + 1):
            figures = Figures("ciwatch backfill" if cycle == 0 else f"ciwatch cycle {cycle}")
            before = Counter(runtime.metrics.api_requests)
            discovery.clear()
            async with meter.measure(figures, store):
                report = await scheduler.run_once()
            codes = Counter(runtime.metrics.api_requests)
            codes.subtract(before)
            by_source: Counter[str] = Counter()
            for (source, _), n in codes.items():
                by_source[source] += n
            fill_from_report(figures, report, by_source, discovery)
            counted = codes[(SOURCE["github"], "304")]
            if counted != figures.providers["github"].not_modified:
                print(
                    f"warning: the HTTP client counted {counted} GitHub 304s, the polls "
                    f"reported {figures.providers['github'].not_modified}",
                    file=sys.stderr,
                )
            results.append(figures)
            out(figures)
        return results
    finally:
        await runtime.close()


def counting_discovery(
    discover: Callable[[], Any], runtime: Runtime, source: str, counter: Counter[str]
) -> Callable[[], Any]:
    async def counted() -> Any:
        before = runtime.metrics.requests_total(source)
        try:
            return await discover()
        finally:
            counter[source] += runtime.metrics.requests_total(source) - before

    return counted


# -- the naive poller --------------------------------------------------------------------------


class NaivePoller:
    """Full first page of every target, every run upserted, the jobs of every run fetched."""

    def __init__(self, sim_url: str, store: Store, concurrency: int) -> None:
        self.sim_url = sim_url
        self.store = store
        self.concurrency = concurrency
        self.requests: Counter[str] = Counter()
        self.sessions: dict[str, aiohttp.ClientSession] = {}

    def open(self) -> None:
        pair = f"{DEFAULT_JENKINS_USER}:{DEFAULT_JENKINS_TOKEN}".encode()
        auth = {
            "gitlab": {"PRIVATE-TOKEN": DEFAULT_GITLAB_TOKEN},
            "github": {"Authorization": f"Bearer {DEFAULT_GITHUB_TOKEN}"},
            "jenkins": {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")},
        }
        for provider, headers in auth.items():
            self.sessions[provider] = aiohttp.ClientSession(
                f"{self.sim_url}/",
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                headers={"Accept": "application/json", **headers},
            )

    async def close(self) -> None:
        for session in self.sessions.values():
            await session.close()

    async def get(self, provider: str, path: str, params: dict[str, Any] | None = None) -> bytes:
        self.requests[provider] += 1
        async with self.sessions[provider].get(path, params=params) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"naive GET {path}: HTTP {resp.status}")
            return body

    async def cycle(
        self, projects: list[tuple[str, str]], figures: Figures, *, jobs: bool = True
    ) -> None:
        semaphore = asyncio.Semaphore(self.concurrency)

        async def one(provider: str, project: str) -> None:
            share = figures.providers[provider]
            share.targets += 1
            async with semaphore:
                try:
                    runs, found = await self.poll(provider, project, jobs=jobs)
                except (RuntimeError, aiohttp.ClientError):
                    share.failed += 1
                    return
                changed = await self.store.upsert_runs(runs)
                share.runs_seen += len(runs)
                share.runs_changed += changed
                if changed:
                    share.ok_changed += 1
                else:
                    share.ok_unchanged += 1
                if found:
                    await self.store.upsert_jobs(found)

        before = Counter(self.requests)
        await asyncio.gather(*(one(provider, project) for provider, project in projects))
        for provider, share in figures.providers.items():
            share.requests = self.requests[provider] - before[provider]

    async def poll(self, provider: str, project: str, *, jobs: bool) -> tuple[list[Run], list[Job]]:
        source = SOURCE[provider]
        found: list[Job] = []
        if provider == "gitlab":
            base = f"gitlab/api/v4/projects/{quote(project, safe='')}/pipelines"
            runs = gitlab.parse_pipelines(
                source, project, await self.get(provider, base, {"per_page": 100})
            )
            for run in runs if jobs else []:
                body = await self.get(provider, f"{base}/{run.run_id}/jobs", {"per_page": 100})
                found += gitlab.parse_jobs(source, project, run.run_id, body)
        elif provider == "github":
            base = f"github/repos/{project}/actions/runs"
            runs = github.parse_runs(
                source, project, await self.get(provider, base, {"per_page": 100})
            )
            for run in runs if jobs else []:
                body = await self.get(provider, f"{base}/{run.run_id}/jobs", {"per_page": 100})
                found += github.parse_jobs(source, project, run.run_id, body)
        else:
            runs, paths = await self.jenkins_builds(project)
            for run, path in zip(runs, paths, strict=True) if jobs else []:
                if path is not None:
                    body = await self.get(provider, f"{path}/wfapi/describe")
                    found += jenkins.parse_stages(source, project, run.run_id, body)
        return runs, found

    async def jenkins_builds(self, project: str) -> tuple[list[Run], list[str | None]]:
        """The builds of a job (of every branch of a multibranch project), each with the path
        of its build for `wfapi/describe`, or None for a freestyle build (no stages)."""
        source = SOURCE["jenkins"]
        builds = f"builds[{BUILD_FIELDS}]{{0,100}}"
        path = f"jenkins/{job_path(project)}"
        tree = f"_class,name,{builds},jobs[name,_class,{builds}]"
        job = jenkins.parse_job(
            source, await self.get("jenkins", f"{path}/api/json", {"tree": tree})
        )
        runs: list[Run] = []
        paths: list[str | None] = []
        if job.class_ == MULTIBRANCH:
            for branch in job.jobs:
                for build in branch.builds:
                    run = jenkins.build_to_run(source, project, build)
                    run_id, ref = f"{branch.name}/{build.number}", unquote(branch.name)
                    runs.append(replace(run, run_id=run_id, ref=ref))
                    paths.append(f"{path}/job/{quote(branch.name, safe='')}/{build.number}")
        else:
            for build in job.builds:
                runs.append(jenkins.build_to_run(source, project, build))
                paths.append(f"{path}/{build.number}" if job.class_ == PIPELINE else None)
        return runs, paths


async def bench_naive(
    store: CountingStore,
    sim_url: str,
    args: argparse.Namespace,
    lists: dict[str, list[str]],
    meter: Meter,
    out: Callable[[Figures], None],
) -> list[Figures]:
    await store.upgrade()
    projects = [(provider, name) for provider, names in lists.items() for name in names]
    naive = NaivePoller(sim_url, cast(Store, store), args.concurrency)
    naive.open()
    try:
        warm = Figures("naive warm-up (runs only)")
        async with meter.measure(warm, store):
            await naive.cycle(projects, warm, jobs=False)
        out(warm)
        figures = Figures("naive cycle")
        async with meter.measure(figures, store):
            await naive.cycle(projects, figures)
        out(figures)
        return [warm, figures]
    finally:
        await naive.close()


# -- stores ------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def databases(engine: str, server: str) -> AsyncIterator[list[str]]:
    """Two fresh database URLs (ciwatch's and the naive poller's), removed afterwards."""
    if engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ciwatch-bench-") as folder:
            yield [f"sqlite:///{Path(folder) / name}.db" for name in ("ciwatch", "naive")]
        return
    names = [f"ciwatch_bench_{secrets.token_hex(4)}" for _ in range(2)]
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
        yield [f"{server}/{name}" for name in names]
    finally:
        try:
            for name in names:  # each one tried, even if dropping another failed
                try:
                    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                except Exception as exc:
                    print(f"warning: database {name} not dropped: {exc}", file=sys.stderr)
        finally:
            await admin.close()


# -- output ------------------------------------------------------------------------------------


def _github(f: Figures) -> ProviderFigures:
    return f.providers["github"]


Column = tuple[str, int, Callable[[Figures], str]]
COLUMNS: tuple[Column, ...] = (
    ("cycle", 25, lambda f: f.label),
    ("wall s", 7, lambda f: f"{f.wall_s:.1f}"),
    ("CPU s", 7, lambda f: f"{f.cpu_s:.1f}"),
    ("sim CPU", 7, lambda f: "-" if f.sim_cpu_s is None else f"{f.sim_cpu_s:.1f}"),
    ("requests", 8, lambda f: f"{f.requests:,}"),
    ("req/tgt", 7, lambda f: f"{f.requests_per_target:.3f}"),
    ("disc", 4, lambda f: f"{f.total('discovery_requests')}"),
    ("sim req", 8, lambda f: f"{f.sim_requests:,}"),
    ("GH 304", 6, lambda f: f"{_github(f).not_modified:,}"),
    ("GH 200", 6, lambda f: f"{_github(f).ok_changed:,}"),
    ("GH 200=", 7, lambda f: f"{_github(f).ok_unchanged:,}"),
    ("seen", 7, lambda f: f"{f.total('runs_seen'):,}"),
    ("changed", 7, lambda f: f"{f.total('runs_changed'):,}"),
    ("st rd", 6, lambda f: f"{f.store_reads:,}"),
    ("st wr", 6, lambda f: f"{f.store_writes:,}"),
    ("fail", 4, lambda f: f"{f.total('failed')}"),
    ("RSS MB", 6, lambda f: f"{f.peak_rss_mb:.0f}"),
)

LEGEND = (
    "requests: API requests made by the poller, discovery excluded (disc); sim req: as the "
    "simulator counted them, discovery included; GH 304 / GH 200 / GH 200=: GitHub polls "
    "answered 304, 200 with a changed run, 200 with nothing changed; seen/changed: runs in the "
    "lists / runs the store changed; st rd / st wr: store reads and write transactions; "
    "RSS: peak so far."
)


def _line(cells: Iterable[str]) -> str:
    parts = [
        text.ljust(width) if i == 0 else text.rjust(width)
        for i, (text, (_, width, _)) in enumerate(zip(cells, COLUMNS, strict=True))
    ]
    return "  ".join(parts)


def header() -> str:
    return _line(name for name, _, _ in COLUMNS)


def row(figures: Figures) -> str:
    return _line(cell(figures) for _, _, cell in COLUMNS)


def provider_table(rows: list[Figures]) -> list[str]:
    lines = [
        f"{'per provider':<25}  {'':8}  {'targets':>7}  {'requests':>8}  {'detail':>7}  "
        f"{'changed':>7}  {'det/chg':>7}  {'304':>6}  {'sim req':>8}"
    ]
    for figures in rows:
        for name, share in figures.providers.items():
            if not share.targets:
                continue
            per_change = (
                f"{share.detail_requests / share.runs_changed:.2f}" if share.runs_changed else "-"
            )
            lines.append(
                f"{figures.label:<25}  {name:8}  {share.targets:>7,}  {share.requests:>8,}  "
                f"{share.detail_requests:>7,}  {share.runs_changed:>7,}  {per_change:>7}  "
                f"{share.not_modified:>6,}  {share.sim_requests:>8,}"
            )
    return lines


def mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items) if items else 0.0


def ratios(steady: list[Figures], naive: Figures) -> dict[str, float | None]:
    def ratio(value: float, base: float) -> float | None:
        return value / base if base else None

    return {
        "requests": ratio(mean(f.requests for f in steady), naive.requests),
        "wall": ratio(mean(f.wall_s for f in steady), naive.wall_s),
        "cpu": ratio(mean(f.cpu_s for f in steady), naive.cpu_s),
    }


def summary(result: dict[str, Any], steady: list[Figures]) -> list[str]:
    lines = []
    github_polls = sum(
        _github(f).not_modified + _github(f).ok_changed + _github(f).ok_unchanged for f in steady
    )
    lines.append(
        "steady state (mean of {} cycles): {:.3f} requests per target, of which list requests "
        "{:.3f} and detail requests {:.3f} for {:,.1f} changed runs; discovery {:,.0f} requests "
        "per cycle".format(
            len(steady),
            mean(f.requests_per_target for f in steady),
            mean((f.requests - f.total("detail_requests")) / max(f.targets, 1) for f in steady),
            mean(f.total("detail_requests") / max(f.targets, 1) for f in steady),
            mean(f.total("runs_changed") for f in steady),
            mean(f.total("discovery_requests") for f in steady),
        )
    )
    answered = {
        "304": sum(_github(f).not_modified for f in steady),
        "changed": sum(_github(f).ok_changed for f in steady),
        "unchanged": sum(_github(f).ok_unchanged for f in steady),
    }
    lines.append(
        f"GitHub steady-state polls: {github_polls:,}; 304: {answered['304']:,}; 200 with a "
        f"change: {answered['changed']:,}; 200 with nothing changed: {answered['unchanged']:,}"
    )
    lines.append(
        f"peak RSS after the last ciwatch cycle: {steady[-1].peak_rss_mb:.0f} MB (before the "
        f"runtime was opened: {result['rss_before_mb']:.0f} MB)"
    )
    load = result["load_average"]
    lines.append(
        f"load average (1 min) at the start {load['start']:.1f}, at the end {load['end']:.1f}"
    )
    if "ratios" in result:
        r = result["ratios"]
        shown = {k: "-" if v is None else f"{v:.3f}" for k, v in r.items()}
        lines.append(
            f"ciwatch steady-state cycle / naive cycle: requests {shown['requests']}, "
            f"wall {shown['wall']}, CPU {shown['cpu']}"
        )
    return lines


# -- main --------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=1_000, help="simulated targets")
    parser.add_argument("--cycles", type=int, default=3, help="steady-state cycles")
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--pg", default=PG_SERVER, help="PostgreSQL server (user with CREATEDB)")
    parser.add_argument("--concurrency", type=int, default=16, help="polls in flight")
    parser.add_argument(
        "--backfill",
        type=int,
        default=None,
        help="runs fetched on first sight, and the Jenkins builds window (ciwatch: 50 and 20)",
    )
    parser.add_argument(
        "--explicit", action="store_true", help="list the projects instead of discovering them"
    )
    parser.add_argument(
        "--tests", action="store_true", help="`tests: true` on every source (test reports)"
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    args = parser.parse_args(argv)
    if args.targets < 1 or args.cycles < 1 or args.concurrency < 1:
        parser.error("--targets, --cycles and --concurrency must be 1 or more")
    if args.backfill is not None and args.backfill < 1:
        parser.error("--backfill must be 1 or more")
    return args


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[Figures], list[Figures]]:
    def out(figures: Figures) -> None:
        if not args.json:
            print(row(figures), flush=True)

    # SIGTERM cancels this task, as asyncio.run does on the first Ctrl-C: the `finally` blocks
    # then stop the simulator and drop the databases. A repeated signal is ignored, so that it
    # does not cancel that clean-up in turn.
    task = cast("asyncio.Task[Any]", asyncio.current_task())  # asyncio.run's main task

    def terminate() -> None:
        if not task.cancelling():
            task.cancel()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, terminate)
    load_start = os.getloadavg()[0]
    lists = project_lists(args.targets)
    rss_start = peak_rss_mb()  # imports (ciwatch, the simulator's modules) and the lists
    sim = SimulatorProcess(args.targets, free_port())
    naive: list[Figures] = []
    try:
        async with aiohttp.ClientSession() as control:
            ready = await sim.wait_ready(control)
            if not args.json:
                counts = ", ".join(f"{p} {len(lists[p]):,}" for p in PROVIDERS)
                print(
                    f"{args.targets:,} targets ({counts}); {args.engine}; concurrency "
                    f"{args.concurrency}; backfill {args.backfill or 'default'}; "
                    f"{'explicit lists' if args.explicit else 'discovery'}; simulator ready in "
                    f"{ready:.1f}s; {os.cpu_count()} cores, load average "
                    f"{os.getloadavg()[0]:.1f}; Python {sys.version.split()[0]}",
                    flush=True,
                )
                print(header(), flush=True)
            meter = Meter(sim, control)
            async with databases(args.engine, args.pg) as (ours, theirs):
                settings = build_settings(sim.url, ours, args, lists)
                cycles = await bench_ciwatch(settings, args, meter, out)
                if not args.no_naive:
                    store = CountingStore(open_store(theirs))
                    try:
                        naive = await bench_naive(store, sim.url, args, lists, meter, out)
                    finally:
                        await store.close()
    finally:
        sim.stop()
    result: dict[str, Any] = {
        "targets": args.targets,
        "engine": args.engine,
        "concurrency": args.concurrency,
        "backfill": args.backfill,
        "discovery": not args.explicit,
        "cores": os.cpu_count(),
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "rss_before_mb": rss_start,
        "python": sys.version.split()[0],
        "ciwatch": [f.as_dict() for f in cycles],
        "naive": [f.as_dict() for f in naive],
    }
    if naive:
        result["ratios"] = ratios(cycles[1:], naive[-1])
    return result, cycles, naive


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    try:
        result, cycles, naive = asyncio.run(run(args))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C, SIGTERM
        sys.exit("interrupted")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(LEGEND)
    print()
    print("\n".join(provider_table([cycles[-1], *naive[-1:]])))
    print()
    print("\n".join(summary(result, cycles[1:])))


if __name__ == "__main__":
    main(sys.argv[1:])

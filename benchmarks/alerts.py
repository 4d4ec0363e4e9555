"""Alert latency: from a webhook that breaks a ref to the notification reaching a receiver.
Prints figures, asserts nothing.

    python benchmarks/alerts.py [--engine sqlite|postgresql] [--rate 200] [--seconds 15]
        [--group-wait 0s] [--drain 30] [--settle 2] [--server-log PATH] [--json]

`ciwatch serve` runs in a separate process on a fresh store (a temporary SQLite file, or with
`--engine postgresql` a throw-away database on 127.0.0.1:5432, user postgres, dropped
afterwards), with one GitLab source that accepts webhooks and one `webhook` channel routed every
`broken` alert, with `alerts.group_wait` = `--group-wait`. The source's one polled project lives
on a fake GitLab here that has no pipelines, polled once a day, so all the traffic is webhooks.

This process plays the channel's target: an aiohttp server on 127.0.0.1 that records the
arrival of every notice (a grouped message names several, each counted). It sends GitLab
Pipeline Hooks (the vendor's example payload, tests/fixtures/gitlab/webhooks/pipeline-hook.json)
on an open-loop schedule of `--rate` per second for `--seconds`: each one a **failed** pipeline on
a project/ref never seen before (50 projects, a new branch each time), so each must give exactly
one `broken` notice. After the last send it waits up to `--drain` seconds for the notices still
due, then `--settle` more seconds for late duplicates.

Figures: offered and achieved rate, the webhook's 202 latency p50/p99, the latency from sending
the webhook to its notice arriving p50/p90/p99/max, notices missing after the drain, duplicated,
or about refs never sent, messages and notices per message, and the server's RSS (current and
peak, from /proc). The receiver shares its event loop with the sender, so a busy sender can delay
an arrival's timestamp by a little.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from _common import free_port, pg_database, quantile
from aiohttp import web

ROOT = Path(__file__).parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "gitlab" / "webhooks" / "pipeline-hook.json"
SOURCE = "gl"
SECRET = "bench-secret"  # noqa: S105 - a throw-away server's webhook secret
PROJECTS = 50
IDLE_PROJECT = "bench/idle"


def config(
    tmp: Path, database: str, port: int, gitlab: str, receiver: str, group_wait: str
) -> Path:
    path = tmp / "ciwatch.yaml"
    path.write_text(
        f"""\
database: "{database}"
server: {{listen: "127.0.0.1:{port}"}}
sources:
  - name: {SOURCE}
    type: gitlab
    url: "{gitlab}"
    webhook_secret: {SECRET}
    webhooks_accept_unwatched: true
    projects: [{IDLE_PROJECT}]
    interval: 1d
    active_interval: 1d
alerts:
  group_wait: "{group_wait}"
  channels:
    - {{name: bench, type: webhook, url: "{receiver}"}}
  routes:
    - {{channels: [bench], events: [broken]}}
"""
    )
    return path


def gitlab_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def project_of(i: int) -> str:
    return f"bench-group/app{i % PROJECTS}"


def ref_of(i: int) -> str:
    return f"feature/bench-{i}"


def pipeline_hook(template: dict[str, Any], i: int) -> bytes:
    """The vendor's example Pipeline Hook as a failed pipeline of event `i`: its own project (one
    of PROJECTS), a branch never seen before, its own pipeline, job ids and SHA, finished now."""
    payload = json.loads(json.dumps(template))
    project_id = 1000 + i % PROJECTS
    path = project_of(i)
    pipeline_id = 500_000 + i
    now = datetime.now(UTC)
    sha = secrets.token_hex(20)
    attrs = payload["object_attributes"]
    attrs.update(
        id=pipeline_id,
        iid=i + 1,
        name=f"Pipeline for branch: {ref_of(i)}",
        ref=ref_of(i),
        sha=sha,
        before_sha=sha,
        status="failed",
        created_at=gitlab_time(now - timedelta(minutes=3)),
        finished_at=gitlab_time(now),
        url=f"http://gitlab.example.com/{path}/-/pipelines/{pipeline_id}",
    )
    project = payload["project"]
    project.update(
        id=project_id,
        name=path.rsplit("/", 1)[1],
        path_with_namespace=path,
        web_url=f"http://gitlab.example.com/{path}",
        git_ssh_url=f"git@gitlab.example.com:{path}.git",
        git_http_url=f"http://gitlab.example.com/{path}.git",
    )
    payload["merge_request"]["source_project_id"] = project_id
    payload["merge_request"]["target_project_id"] = project_id
    payload["merge_request"]["source_branch"] = ref_of(i)
    payload["commit"]["id"] = sha
    payload["commit"]["url"] = f"http://gitlab.example.com/{path}/commit/{sha}"
    for n, build in enumerate(payload["builds"]):
        build["id"] = pipeline_id * 10 + n
    return json.dumps(payload).encode()


def headers() -> dict[str, str]:
    """Pipeline Hook headers with a fresh delivery id (a constant one would read as a replay)."""
    event_id = str(uuid.uuid4())
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitLab/15.5.0-pre",
        "X-Gitlab-Event": "Pipeline Hook",
        "X-Gitlab-Event-UUID": event_id,
        "Idempotency-Key": event_id,
        "X-Gitlab-Token": SECRET,
    }


@dataclass
class Receiver:
    """The webhook channel's target: when each notice arrived, keyed by (project, ref)."""

    arrivals: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    events: Counter[str] = field(default_factory=Counter)
    messages: int = 0
    sizes: list[int] = field(default_factory=list)
    bad: int = 0
    waiting: set[tuple[str, str]] = field(default_factory=set)
    all_in: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        arrived = time.perf_counter()
        try:
            document = json.loads(body)
            notices = document.get("events", [document])
            keys = [(n["project"], n["ref"], n["event"]) for n in notices]
        except (ValueError, KeyError, TypeError):
            self.bad += 1
            return web.json_response({"ok": False}, status=400)
        self.messages += 1
        self.sizes.append(len(keys))
        for project, ref, kind in keys:
            self.events[kind] += 1
            self.arrivals.setdefault((project, ref), []).append(arrived)
            self.waiting.discard((project, ref))
        if not self.waiting:
            self.all_in.set()
        return web.json_response({"ok": True})


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def fake_gitlab() -> tuple[web.AppRunner, str]:
    """A GitLab with no pipelines: the idle project's daily poll finds nothing."""

    async def empty(request: web.Request) -> web.Response:
        return web.json_response([])

    app = web.Application()
    app.router.add_get("/{tail:.*}", empty)
    return await serve_app(app)


async def wait_ready(url: str, proc: asyncio.subprocess.Process, log: Path) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            if proc.returncode is not None:
                tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-2000:]
                raise SystemExit(f"ciwatch serve exited with {proc.returncode}:\n{tail}")
            try:
                async with session.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"ciwatch did not start at {url}")


def ms(values: list[float], q: float) -> float | None:
    return 1000 * quantile(values, q) if values else None


def rss_mb(pid: int) -> dict[str, float | None]:
    """The process's resident set now and its peak, from /proc (None elsewhere)."""
    found: dict[str, float | None] = {"rss_mb": None, "peak_rss_mb": None}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                key = "rss_mb" if name == "VmRSS" else "peak_rss_mb"
                found[key] = int(value.split()[0]) / 1024  # kB
    return found


async def load(
    url: str, receiver: Receiver, rate: float, seconds: float, drain: float, settle: float
) -> dict[str, Any]:
    template = json.loads(FIXTURE.read_text())
    total = int(rate * seconds)
    sent_at: dict[tuple[str, str], float] = {}
    answer: list[float] = []
    errors: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            key = (project_of(i), ref_of(i))
            body = pipeline_hook(template, i)
            # Counted as awaited before the request goes out: the notice may beat the 202 back.
            receiver.waiting.add(key)
            receiver.all_in.clear()
            sent = time.perf_counter()
            sent_at[key] = sent
            try:
                async with session.post(
                    f"{url}/hooks/gitlab/{SOURCE}", data=body, headers=headers()
                ) as resp:
                    reply = await resp.json(content_type=None)
                    status = resp.status
            except (aiohttp.ClientError, ValueError) as exc:
                status, reply = 0, {"error": type(exc).__name__}
            if status == 202 and reply.get("status") == "accepted":
                answer.append(time.perf_counter() - sent)
                return
            errors[f"{status} {reply.get('status') or reply.get('error')}"] += 1
            del sent_at[key]
            receiver.waiting.discard(key)
            if not receiver.waiting:
                receiver.all_in.set()

        began = time.perf_counter()
        tasks = []
        for i in range(total):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    waited = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(receiver.all_in.wait(), drain)
    drained = time.perf_counter() - waited
    await asyncio.sleep(settle)  # a duplicate would come after the first copy

    latency = [
        receiver.arrivals[key][0] - sent
        for key, sent in sent_at.items()
        if key in receiver.arrivals
    ]
    duplicates = sum(len(times) - 1 for times in receiver.arrivals.values() if len(times) > 1)
    unexpected = sum(len(times) for key, times in receiver.arrivals.items() if key not in sent_at)
    return {
        "sent": total,
        "accepted": len(answer),
        "errors": dict(errors),
        "achieved_per_s": len(answer) / elapsed,
        "send_seconds": elapsed,
        "drain_seconds": drained,
        "answer_p50_ms": ms(answer, 0.5),
        "answer_p99_ms": ms(answer, 0.99),
        "notified": len(latency),
        "missing": len(sent_at) - len(latency),
        "duplicates": duplicates,
        "unexpected": unexpected,
        "notice_events": dict(receiver.events),
        "messages": receiver.messages,
        "bad_messages": receiver.bad,
        "max_notices_per_message": max(receiver.sizes, default=0),
        "notify_p50_ms": ms(latency, 0.5),
        "notify_p90_ms": ms(latency, 0.9),
        "notify_p99_ms": ms(latency, 0.99),
        "notify_max_ms": 1000 * max(latency) if latency else None,
    }


async def bench(
    tmp: Path,
    database: str,
    rate: float,
    seconds: float,
    group_wait: str,
    drain: float,
    settle: float,
) -> dict[str, Any]:
    """The receiver and fake GitLab here, `ciwatch serve` in its own process, then the load."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/notify", receiver.handle)
    receiver_runner, receiver_url = await serve_app(app)
    gitlab_runner, gitlab = await fake_gitlab()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    path = config(tmp, database, port, gitlab, receiver_url + "/notify", group_wait)
    log_path = tmp / "serve.log"
    try:
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ciwatch", "serve", "--config", str(path),
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
            try:
                await wait_ready(url, proc, log_path)
                result = await load(url, receiver, rate, seconds, drain, settle)
                result.update(rss_mb(proc.pid))
                return result
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(proc.wait(), timeout=60)
    finally:
        await gitlab_runner.cleanup()
        await receiver_runner.cleanup()


def figure(value: float | None, unit: str = " ms") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def report(result: dict[str, Any]) -> None:
    load_start, load_end = result["load_average"]["start"], result["load_average"]["end"]
    print(
        f"engine {result['engine']}, group_wait {result['group_wait']}: "
        f"{result['rate']:.0f}/s offered for {result['seconds']:.0f}s; "
        f"{os.cpu_count()} CPUs, load average {load_start:.1f} at the start, {load_end:.1f} at "
        "the end"
    )
    print(
        f"  webhooks      accepted {result['accepted']}/{result['sent']} "
        f"({result['achieved_per_s']:.0f}/s), errors {result['errors'] or 'none'}"
    )
    print(
        f"  202 latency   p50 {figure(result['answer_p50_ms'])}   "
        f"p99 {figure(result['answer_p99_ms'])}"
    )
    print(
        f"  notification latency  p50 {figure(result['notify_p50_ms'])}   "
        f"p90 {figure(result['notify_p90_ms'])}   p99 {figure(result['notify_p99_ms'])}   "
        f"max {figure(result['notify_max_ms'])}"
    )
    print(
        f"  notified      {result['notified']}/{result['accepted']} in {result['messages']} "
        f"messages (at most {result['max_notices_per_message']} notices in one), "
        f"drained {result['drain_seconds']:.1f}s after the last 202"
    )
    print(
        f"  missing {result['missing']}   duplicates {result['duplicates']}   "
        f"unexpected {result['unexpected']}   bad messages {result['bad_messages']}"
    )
    print(
        f"  server RSS    {figure(result['rss_mb'], ' MB')} at the end, "
        f"peak {figure(result['peak_rss_mb'], ' MB')}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rate", type=float, default=200.0, help="webhooks per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--group-wait", default="0s", help="alerts.group_wait (a duration)")
    parser.add_argument(
        "--drain", type=float, default=30.0, help="seconds to wait for notices after the last send"
    )
    parser.add_argument(
        "--settle", type=float, default=2.0, help="seconds to listen for duplicates after that"
    )
    parser.add_argument("--server-log", type=Path, help="keep the server's log (stderr) here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ciwatch-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        pg_name = f"ciwatch_bench_{secrets.token_hex(4)}"
        if args.engine == "postgresql":
            asyncio.run(pg_database(True, pg_name))
            database = f"postgresql://postgres@127.0.0.1:5432/{pg_name}"
        else:
            database = f"sqlite:///{tmp / 'bench.db'}"
        try:
            result = asyncio.run(
                bench(
                    tmp, database, args.rate, args.seconds, args.group_wait, args.drain, args.settle
                )
            )
        finally:
            if args.engine == "postgresql":
                asyncio.run(pg_database(False, pg_name))
            if args.server_log is not None and (tmp / "serve.log").exists():
                shutil.copyfile(tmp / "serve.log", args.server_log)
    result.update(
        engine=args.engine,
        rate=args.rate,
        seconds=args.seconds,
        group_wait=args.group_wait,
        load_average={"start": load_start, "end": os.getloadavg()[0]},
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result)


if __name__ == "__main__":
    main()

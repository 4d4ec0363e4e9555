"""Webhook ingest: the sustained rate of accepted webhooks and the latency from sending one to its
run being visible through the JSON API. Prints figures, asserts nothing.

    python benchmarks/webhooks.py [--engine sqlite|postgresql] [--rate 200] [--seconds 15]

`ciwatch serve` runs in a separate process on a fresh store. This process sends GitHub
`workflow_run` deliveries (the vendor's example payload with fresh run ids, signed with the
source's secret, spread over 50 repositories) on an open-loop schedule of `--rate` per second:
half are new runs (`requested`), half complete a run sent earlier (`completed`). For every
delivery it records the time to the 202, and for one in ten completing deliveries it then reads
the run from the API until it shows as finished: receipt-to-visible latency.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from _common import free_port, pg_database, quantile
from aiohttp import web

ROOT = Path(__file__).parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "github" / "webhooks" / "workflow_run.completed.json"
SECRET = "bench-secret"  # noqa: S105 - a throw-away server's webhook secret


def config(tmp: Path, database: str, port: int, github: str) -> Path:
    path = tmp / "ciwatch.yaml"
    path.write_text(
        f"""\
database: "{database}"
server: {{listen: "127.0.0.1:{port}"}}
sources:
  - name: gh
    type: github
    url: "{github}"
    webhook_secret: {SECRET}
    webhooks_accept_unwatched: true
    repos: [octo-org/bench]
    interval: 1d
    active_interval: 1d
"""
    )
    return path


REPOS = 50


def delivery(template: dict[str, Any], run_id: int, completed: bool) -> bytes:
    """The vendor's example event for run `run_id`, in one of REPOS repositories of the org (an
    organisation webhook's traffic), requested or completed."""
    payload = json.loads(json.dumps(template))
    payload["repository"]["full_name"] = repo_of(run_id)
    run = payload["workflow_run"]
    run["id"] = run_id
    run["run_number"] = run_id
    run["status"] = "completed" if completed else "queued"
    run["conclusion"] = "success" if completed else None
    run["updated_at"] = "2026-01-01T00:05:00Z" if completed else "2026-01-01T00:00:00Z"
    payload["action"] = "completed" if completed else "requested"
    return json.dumps(payload).encode()


def repo_of(run_id: int) -> str:
    return f"octo-org/repo{run_id % REPOS}"


def headers(body: bytes, delivery_id: str) -> dict[str, str]:
    sig = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "workflow_run",
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": f"sha256={sig}",
    }


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            try:
                async with session.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"ciwatch did not start at {url}")


async def visible(
    session: aiohttp.ClientSession, url: str, project: str, run_id: str, status: str
) -> None:
    while True:
        async with session.get(f"{url}/api/v1/runs/gh/{project}/{run_id}") as resp:
            if resp.status == 200 and (await resp.json())["run"]["status"] == status:
                return
        await asyncio.sleep(0.002)


async def fake_github() -> tuple[web.AppRunner, str]:
    """Answers the jobs request each accepted `workflow_run` triggers, as GitHub would for a
    run with no jobs yet: the webhook path's follow-up work without the network."""

    async def jobs(request: web.Request) -> web.Response:
        return web.json_response({"total_count": 0, "jobs": []})

    app = web.Application()
    app.router.add_get("/repos/{owner}/{repo}/actions/runs/{run}/jobs", jobs)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}"


async def load(url: str, rate: float, seconds: float) -> dict[str, Any]:
    template = json.loads(FIXTURE.read_text())
    total = int(rate * seconds)
    accept: list[float] = []
    seen: list[float] = []
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int, start: float) -> None:
            run_id = 9_000_000 + i // 2
            completed = i % 2 == 1
            body = delivery(template, run_id, completed)
            sent = time.perf_counter()
            try:
                async with session.post(
                    url + "/hooks/github/gh", data=body, headers=headers(body, f"d{i}")
                ) as resp:
                    await resp.read()
                    if resp.status != 202:
                        errors[str(resp.status)] = errors.get(str(resp.status), 0) + 1
                        return
            except aiohttp.ClientError as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            accept.append(time.perf_counter() - sent)
            if i % 10 == 1:  # a completing delivery: wait until the API shows the run finished
                try:
                    await asyncio.wait_for(
                        visible(session, url, repo_of(run_id), str(run_id), "success"),
                        timeout=10,
                    )
                except TimeoutError:
                    errors["not visible after 10 s"] = errors.get("not visible after 10 s", 0) + 1
                    return
                seen.append(time.perf_counter() - sent)

        began = time.perf_counter()
        tasks = []
        for i in range(total):
            due = began + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    return {
        "sent": total,
        "accepted": len(accept),
        "errors": errors,
        "achieved_per_s": len(accept) / elapsed,
        "accept_p50_ms": 1000 * statistics.median(accept) if accept else None,
        "accept_p99_ms": 1000 * quantile(accept, 0.99) if accept else None,
        "visible_p50_ms": 1000 * statistics.median(seen) if seen else None,
        "visible_p99_ms": 1000 * quantile(seen, 0.99) if seen else None,
    }


async def bench(tmp: Path, database: str, rate: float, seconds: float) -> dict[str, Any]:
    """Fake GitHub here, `ciwatch serve` in its own process, then the load."""
    runner, github = await fake_github()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    path = config(tmp, database, port, github)
    with (tmp / "serve.log").open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ciwatch", "serve", "--config", str(path),
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        try:
            await wait_ready(url)
            return await load(url, rate, seconds)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=60)
            await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--rate", type=float, default=200.0, help="deliveries per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ciwatch-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        pg_name = f"ciwatch_bench_{secrets.token_hex(4)}"
        if args.engine == "postgresql":
            asyncio.run(pg_database(True, pg_name))
            database = f"postgresql://postgres@127.0.0.1:5432/{pg_name}"
        else:
            database = f"sqlite:///{tmp / 'bench.db'}"
        result = asyncio.run(bench(tmp, database, args.rate, args.seconds))
        if args.engine == "postgresql":
            asyncio.run(pg_database(False, pg_name))
    result.update(engine=args.engine, rate=args.rate, seconds=args.seconds)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"engine {args.engine}: {args.rate:.0f}/s offered for {args.seconds:.0f}s")
    print(
        f"  accepted {result['accepted']}/{result['sent']} "
        f"({result['achieved_per_s']:.0f}/s), errors {result['errors'] or 'none'}"
    )
    for label, key in (("202 latency   ", "accept"), ("visible in API", "visible")):
        p50, p99 = result[f"{key}_p50_ms"], result[f"{key}_p99_ms"]
        print(f"  {label}  p50 {p50:.1f} ms   p99 {p99:.1f} ms")


if __name__ == "__main__":
    main()

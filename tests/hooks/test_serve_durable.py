"""202 means durable (issue 10), on a real `ciwatch serve` process over SQLite: every webhook and
report answered 202 is committed, so `kill -9` right after the last answer loses none of them,
and neither does SIGTERM. Each source's API is a real loopback server that takes requests and
never answers, so no answer can depend on it (the Jenkins build reads and GitHub job fetches
stay in the background)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ciwatch.domain import RunKey, Status
from ciwatch.store import open_store
from factories import free_port

from .payloads import RECEIVERS, REPORT_TOKEN, SECRETS, Delivery, delivery

N = 30


@asynccontextmanager
async def silent_ci() -> AsyncIterator[tuple[str, list[str]]]:
    """An HTTP server that reads every request and never answers it; the paths it was asked."""
    asked: list[str] = []
    never = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        asked.append(request.path)
        await never.wait()
        return web.Response(status=500)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", asked
    finally:
        never.set()
        await runner.cleanup()


def write_config(tmp_path: Path, ci: str) -> tuple[Path, str]:
    database = f"sqlite:///{tmp_path / 'ci.db'}"
    config = tmp_path / "ciwatch.yaml"
    config.write_text(
        f"""\
database: "{database}"
server: {{listen: "127.0.0.1:{free_port()}", report_token: "{REPORT_TOKEN}"}}
collection: {{timeout: 2s, retries: 0}}
sources:
  - {{name: gl, type: gitlab, url: "{ci}/gitlab", token: glpat-x, projects: [a/b],
     webhook_secret: "{SECRETS["gl"]}", webhooks_accept_unwatched: true}}
  - {{name: gh, type: github, url: "{ci}/github", token: ghp-x, repos: [o/r],
     webhook_secret: "{SECRETS["gh"]}", webhooks_accept_unwatched: true}}
  - {{name: jk, type: jenkins, url: "{ci}/jenkins", jobs: [asgard],
     webhook_secret: "{SECRETS["jk"]}", webhooks_accept_unwatched: true}}
"""
    )
    return config, database


@dataclass
class Serve:
    process: asyncio.subprocess.Process
    url: str
    log: Path

    def errors(self) -> str:
        return self.log.read_text()


@asynccontextmanager
async def serve(config: Path, log: Path) -> AsyncIterator[Serve]:
    """`ciwatch serve` (this interpreter, this PYTHONPATH) until it answers; killed at the end
    if the test left it running."""
    with log.open("w") as errors:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ciwatch",
            "serve",
            "--config",
            str(config),
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        server = Serve(process, banner.split()[2].rstrip("/"), log)
        assert banner.startswith("ciwatch serving http://"), banner + server.errors()
        yield server
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def send(http: aiohttp.ClientSession, url: str, item: Delivery) -> None:
    async with http.post(url + item.path, data=item.body, headers=item.headers) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == 202, body
    # A report answers with the stored run; a webhook says "accepted".
    assert body.get("status") in ("accepted", item.status.value), body


async def stored(database: str, items: list[Delivery]) -> dict[RunKey, Status | None]:
    """The status of each delivery's run, read from the database after the process ended."""
    store = open_store(database)
    try:
        found = {item.key: await store.get_run(item.key) for item in items}
        return {key: run.status if run is not None else None for key, run in found.items()}
    finally:
        await store.close()


@pytest.mark.parametrize("receiver", RECEIVERS)
async def test_kill_9_after_the_202s_loses_nothing(tmp_path: Path, receiver: str) -> None:
    items = [delivery(receiver, n) for n in range(1, N + 1)]
    async with silent_ci() as (ci, asked):
        config, database = write_config(tmp_path, ci)
        async with serve(config, tmp_path / "serve.log") as server, aiohttp.ClientSession() as http:
            for item in items:
                await send(http, server.url, item)
            server.process.kill()
            assert await server.process.wait() == -signal.SIGKILL
        statuses = await stored(database, items)
        kept = sum(status is not None for status in statuses.values())
        print(f"{receiver}: {N} answered 202, kill -9, {kept} stored")
        assert statuses == {item.key: item.status for item in items}, server.errors()
        if receiver == "jenkins":
            # The builds were asked of the API, which never answered: the 202s did not wait.
            assert any(path.startswith("/jenkins/job/asgard/") for path in asked)


async def test_sigterm_drains_and_loses_nothing(tmp_path: Path) -> None:
    items = [delivery(receiver, n) for n in range(1, 26) for receiver in RECEIVERS]
    async with silent_ci() as (ci, _):
        config, database = write_config(tmp_path, ci)
        async with serve(config, tmp_path / "serve.log") as server, aiohttp.ClientSession() as http:
            await asyncio.gather(*(send(http, server.url, item) for item in items))
            server.process.send_signal(signal.SIGTERM)
            assert await server.process.wait() == 0, server.errors()
        statuses = await stored(database, items)
        assert statuses == {item.key: item.status for item in items}, server.errors()

"""Two `ciwatch serve` processes on one database with `collection.partition: true`
(docs/architecture.md#several-replicas): every target is polled once between them, not once by
each; each target's lease names one of them; and a replica that stops hands its targets over.
Real processes: the simulator and both servers, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.store import open_store
from ciwatch.store.tables import leases

BASIC = Path(__file__).parents[1] / "examples" / "scenarios" / "basic.yaml"
TARGETS = 4  # the projects the configuration below names


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _metrics(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            return str(answer.read().decode())
    except OSError:
        return ""


def _polls(port: int) -> int:
    text = _metrics(port)
    found = re.findall(r"^ciwatch_polls_total\{[^}]*\} ([0-9.e+]+)$", text, re.MULTILINE)
    return int(sum(float(value) for value in found))


@contextmanager
def _process(*args: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ciwatch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)


def _wait(condition: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def _holders(url: str) -> dict[str, str]:
    async def read() -> dict[str, str]:
        store = open_store(url)
        try:
            query = select(leases.c.name, leases.c.holder)

            async def work(conn: AsyncConnection) -> dict[str, str]:
                return {str(row.name): str(row.holder) for row in await conn.execute(query)}

            return await store.read("leases", work)
        finally:
            await store.close()

    return asyncio.run(read())


def test_two_replicas_poll_each_target_once(tmp_path: Path, store_url: str) -> None:
    sim_port, one_port, two_port = _free_port(), _free_port(), _free_port()
    config = tmp_path / "ciwatch.yaml"
    config.write_text(
        f"""\
database: "{store_url}"
collection: {{partition: true, jitter: 0.01}}
sources:
  - {{name: gl, type: gitlab, url: "http://127.0.0.1:{sim_port}/gitlab",
     token: glpat-basic-example, interval: 10m, active_interval: 10m,
     projects: [platform/backend/api, platform/frontend/web]}}
  - {{name: gh, type: github, url: "http://127.0.0.1:{sim_port}/github",
     token: ghp_basic_example, interval: 10m, active_interval: 10m,
     repos: [octo-org/web, octo-org/api]}}
"""
    )
    with _process("simulate", "--listen", f"127.0.0.1:{sim_port}", "--scenario", str(BASIC)) as sim:
        assert sim.stdout is not None
        assert "listening" in sim.stdout.readline()
        with (
            _process("serve", "--config", str(config), "--listen", f"127.0.0.1:{one_port}") as one,
            _process("serve", "--config", str(config), "--listen", f"127.0.0.1:{two_port}") as two,
        ):
            # Each target's first poll falls within 1% of the interval (the jitter, 6 s): wait
            # until all four are polled, then a little longer for any second poll to show.
            assert _wait(lambda: _polls(one_port) + _polls(two_port) >= TARGETS, 90)
            time.sleep(2)
            assert _polls(one_port) + _polls(two_port) == TARGETS
            held = {
                name: holder
                for name, holder in _holders(store_url).items()
                if name.startswith("poll:")
            }
            assert len(held) == TARGETS
            assert len(set(held.values())) <= 2
            # One stops: it releases its leases on the way out.
            one.send_signal(signal.SIGTERM)
            _, errors = one.communicate(timeout=60)
            assert one.returncode == 0, errors
            left = set(_holders(store_url).values())
            assert len(left) <= 1
            if two.poll() is not None:
                _, errors = two.communicate(timeout=10)
                raise AssertionError(f"the other replica exited {two.returncode}: {errors[-3000:]}")

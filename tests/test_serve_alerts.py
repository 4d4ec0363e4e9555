"""`ciwatch serve` end to end with alerting: the simulator (a real process) has red refs, and a
webhook channel pointing at a real receiver gets one `broken` event per red ref, once."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

BASIC = Path(__file__).parents[1] / "examples" / "scenarios" / "basic.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Receiver(BaseHTTPRequestHandler):
    events: list[dict[str, Any]] = []  # noqa: RUF012 - shared by the handler instances

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).events.append(json.loads(body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("Handler", (Receiver,), {"events": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/events", handler
    finally:
        server.shutdown()
        server.server_close()


def _events(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for item in received:
        flat.extend(item.get("events", [item]))
    return flat


def test_serve_sends_broken_alerts_once(
    tmp_path: Path, receiver: tuple[str, type[Receiver]]
) -> None:
    url, handler = receiver
    sim_port, port = _free_port(), _free_port()
    config = tmp_path / "ciwatch.yaml"
    config.write_text(
        f"""\
database: sqlite:///{tmp_path / "ci.db"}
server: {{listen: "127.0.0.1:{port}"}}
sources:
  - {{name: gl, type: gitlab, url: "http://127.0.0.1:{sim_port}/gitlab",
     token: glpat-basic-example, projects: [platform/backend/api]}}
alerts:
  group_wait: 0s
  channels:
    - {{name: hook, type: webhook, url: "{url}"}}
  routes:
    - {{channels: [hook], events: [broken, recovered]}}
"""
    )
    with subprocess.Popen(
        [sys.executable, "-m", "ciwatch", "simulate", "--listen", f"127.0.0.1:{sim_port}",
         "--scenario", str(BASIC)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as sim:  # fmt: skip
        try:
            assert sim.stdout is not None
            assert "listening" in sim.stdout.readline()
            _serve(config, port, until=lambda: bool(_events(handler.events)))
            first = _events(handler.events)
            # A restart on the same database decides nothing new: it sends nothing.
            _serve(config, port, until=lambda: True)
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.communicate(timeout=30)
    events = _events(handler.events)
    assert events == first
    broken = [e for e in events if e["event"] == "broken"]
    # platform/backend/api: develop is red at the start (main went green after its retry).
    assert [(e["project"], e["ref"]) for e in broken] == [("platform/backend/api", "develop")]
    assert broken[0]["run"]["status"] == "failed"


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


def _serve(config: Path, port: int, *, until: Callable[[], bool]) -> None:
    """Run `ciwatch serve` until `until()` holds (at most 45 s after it answers), then a few
    seconds more, time for its first evaluation of every ref and several polls: nothing may
    be sent twice. Stops it with SIGTERM; it must exit 0."""
    with subprocess.Popen(
        [sys.executable, "-m", "ciwatch", "serve", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as serve:  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not _ready(port):
                time.sleep(0.2)
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline and not until():
                time.sleep(0.5)
            time.sleep(6)
        finally:
            serve.send_signal(signal.SIGTERM)
            _, serve_err = serve.communicate(timeout=60)
        assert serve.returncode == 0, serve_err


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_serve_alerts_on_its_own_ill_health(
    tmp_path: Path, receiver: tuple[str, type[Receiver]]
) -> None:
    """A Jenkins source with a wrong token whose folder cannot be listed (issue 10, defect 3):
    the real process shows it on /metrics and /api/v1/targets and sends an `unhealthy` alert
    naming the source and Jenkins' answer, once, while the other source polls on."""
    url, handler = receiver
    sim_port, port = _free_port(), _free_port()
    config = tmp_path / "ciwatch.yaml"
    config.write_text(
        f"""\
database: sqlite:///{tmp_path / "ci.db"}
server: {{listen: "127.0.0.1:{port}"}}
sources:
  - {{name: jk, type: jenkins, url: "http://127.0.0.1:{sim_port}/jenkins",
     username: ci-bot, token: wrong-token, folders: [team]}}
  - {{name: gl, type: gitlab, url: "http://127.0.0.1:{sim_port}/gitlab",
     token: glpat-basic-example, projects: [platform/backend/api]}}
alerts:
  group_wait: 0s
  unhealthy_after: 1s
  channels:
    - {{name: hook, type: webhook, url: "{url}"}}
  routes:
    - {{channels: [hook], events: [unhealthy]}}
"""
    )
    seen: dict[str, str] = {}

    def unhealthy() -> bool:
        if "metrics" not in seen:
            _status, text = _get(port, "/metrics")
            down, up = 'ciwatch_source_up{source="jk"} 0.0', 'ciwatch_source_up{source="gl"} 1.0'
            if down in text and up in text:
                seen["metrics"] = text
                seen["targets"] = _get(port, "/api/v1/targets?healthy=false")[1]
                seen["readyz"] = str(_get(port, "/readyz")[0])
        return "metrics" in seen and any(e["event"] == "unhealthy" for e in _events(handler.events))

    with subprocess.Popen(
        [sys.executable, "-m", "ciwatch", "simulate", "--listen", f"127.0.0.1:{sim_port}",
         "--scenario", str(BASIC)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as sim:  # fmt: skip
        try:
            assert sim.stdout is not None
            assert "listening" in sim.stdout.readline()
            _serve(config, port, until=unhealthy)
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.communicate(timeout=30)
    events = _events(handler.events)
    assert [(e["event"], e["source"], e["project"]) for e in events] == [("unhealthy", "jk", "")]
    assert "folder team" in events[0]["detail"] and "HTTP 401" in events[0]["detail"]
    assert 'ciwatch_last_successful_poll_timestamp_seconds{source="jk"} 0.0' in seen["metrics"]
    assert 'ciwatch_source_up{source="gl"} 1.0' in seen["metrics"]
    targets = json.loads(seen["targets"])["targets"]
    assert [(t["source"], t["kind"]) for t in targets] == [("jk", "discovery")]
    # The process itself is fine: a source it cannot poll is an alert, not unreadiness.
    assert seen["readyz"] == "200"

"""`ciwatch alerts test CHANNEL` against a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ciwatch.cli import app


class Receiver(BaseHTTPRequestHandler):
    bodies: list[bytes] = []  # noqa: RUF012 - shared by the server's handler instances
    status = 200
    answer = b"ok"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        type(self).bodies.append(self.rfile.read(length))
        self.send_response(self.status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(self.answer)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[Receiver]]]:
    handler = type("Handler", (Receiver,), {"bodies": [], "status": 200, "answer": b"ok"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    finally:
        server.shutdown()
        server.server_close()


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "ciwatch.yaml"
    path.write_text(
        "alerts:\n"
        "  channels:\n"
        f"    - {{name: hook, type: webhook, url: '{url}'}}\n"
        f"    - {{name: chat, type: slack, url: '{url}'}}\n"
    )
    return path


def test_alerts_test_sends_and_prints_the_answer(
    tmp_path: Path, receiver: tuple[str, type[Receiver]]
) -> None:
    url, handler = receiver
    result = CliRunner().invoke(
        app, ["alerts", "test", "hook", "--config", str(_config(tmp_path, url))]
    )
    assert result.exit_code == 0, result.output
    assert "hook (webhook" in result.stdout
    assert "answered" in result.stdout
    event = json.loads(handler.bodies[0])
    assert event["event"] == "test"


def test_a_refusing_channel_exits_3_with_the_service_error(
    tmp_path: Path, receiver: tuple[str, type[Receiver]]
) -> None:
    url, handler = receiver
    handler.status, handler.answer = 404, b"no_service"
    result = CliRunner().invoke(
        app, ["alerts", "test", "chat", "--config", str(_config(tmp_path, url))]
    )
    assert result.exit_code == 3
    assert "permanent" in result.stderr
    assert "no_service" in result.stderr


def test_unknown_channel_exits_2_listing_the_channels(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:1/x")
    result = CliRunner().invoke(app, ["alerts", "test", "nope", "--config", str(config)])
    assert result.exit_code == 2
    assert "channels: hook, chat" in result.stderr

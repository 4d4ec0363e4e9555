"""`ciwatch simulate` and `ciwatch poll --once` as an operator runs them: two real processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ciwatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "ciwatch", *args]


@pytest.fixture(scope="module")
def simulator() -> Iterator[str]:
    port = _free_port()
    with subprocess.Popen(
        _ciwatch("simulate", "--listen", f"127.0.0.1:{port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert "simulator listening on" in line, proc.stderr.read() if proc.stderr else ""
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=30)
            assert proc.returncode == 0, stderr


def _config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "ciwatch.yaml"
    path.write_text(
        f"""\
database: sqlite:///{tmp_path / "ci.db"}
sources:
  - {{name: gl, type: gitlab, url: "{url}/gitlab", token: "${{GL_TOKEN}}",
     groups: [platform]}}
  - {{name: gh, type: github, url: "{url}/github", token: ghp_simulator, orgs: [octo-org]}}
  - {{name: jk, type: jenkins, url: "{url}/jenkins", username: admin,
     token: simulator-api-token, folders: [backend, tools]}}
"""
    )
    return path


GOOD_TOKEN = "glpat-simulator"


def _poll(
    config: Path, *extra: str, token: str = GOOD_TOKEN, once: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GL_TOKEN": token, "COLUMNS": "200"}
    flags = ["--once"] if once else []
    return subprocess.run(
        _ciwatch("poll", *flags, "--config", str(config), *extra),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )


def test_poll_once_json_and_fail_on(simulator: str, tmp_path: Path) -> None:
    config = _config(tmp_path, simulator)
    result = _poll(config, "--json")
    assert result.returncode == 0, result.stderr
    states = json.loads(result.stdout)
    providers = {state["provider"] for state in states}
    assert providers == {"gitlab", "github", "jenkins"}
    assert {"source", "provider", "project", "ref", "status", "since", "last_run"} <= set(states[0])
    assert "0 failed" in result.stderr
    red = [s for s in states if s["status"] == "failed"]
    assert red  # the demo has failing refs
    failing = _poll(config, "--json", "--fail-on", "failed")
    assert failing.returncode == 1
    # A table for people (`--once` is what poll always does), and `status` shows the same store.
    table = _poll(config, once=False)
    assert table.returncode == 0
    assert "platform/backend/api" in table.stdout
    status = subprocess.run(
        _ciwatch("status", "--json", "--config", str(config)),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, "GL_TOKEN": GOOD_TOKEN},
    )
    assert status.returncode == 0, status.stderr
    assert {(s["project"], s["ref"]) for s in json.loads(status.stdout)} >= {
        (s["project"], s["ref"]) for s in states
    }


def test_unreachable_server_exits_3_naming_the_target(tmp_path: Path) -> None:
    config = _config(tmp_path, f"http://127.0.0.1:{_free_port()}")
    started = time.monotonic()
    result = _poll(config)
    assert result.returncode == 3
    assert "discovery failed" in result.stderr
    assert "127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 120


def test_bad_token_exits_3_and_status_shows_the_reason(simulator: str, tmp_path: Path) -> None:
    config = _config(tmp_path, simulator)
    result = _poll(config, token="wrong")
    assert result.returncode == 3
    assert "gl" in result.stderr
    assert "401" in result.stderr

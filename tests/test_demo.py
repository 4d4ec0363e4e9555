"""`ciwatch demo`, the README's first command, as a newcomer runs it: within 30 s the dashboard,
the API and /metrics show runs of all four providers, and two weeks of history fill the
14-day charts and stats; SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

from ciwatch.providers.registry import KINDS


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback URL
        return resp.status, resp.read().decode()


def test_demo_shows_every_provider_and_stops_on_sigterm() -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    with subprocess.Popen(
        [sys.executable, "-m", "ciwatch", "demo", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            banner = proc.stdout.readline()
            assert f"ciwatch demo: open {base}" in banner
            providers: set[str] = set()
            projects: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            names: set[str] = set()
            wanted = {project for _, project in HISTORY}
            while time.monotonic() < deadline and not wanted <= names:
                time.sleep(0.5)
                _, body = _get(base + "api/v1/projects")
                projects = json.loads(body)["projects"]
                providers = {p["provider"] for p in projects}
                names = {p["project"] for p in projects}
            assert providers == set(KINDS), projects
            assert wanted <= names, names
            assert {p["status"] for p in projects} >= {"success", "failed"}
            status, page = _get(base)
            assert status == 200
            assert "platform/backend/api" in page
            _, metrics = _get(base + "metrics")
            for provider in KINDS:
                assert f'provider="{provider}"' in metrics
            assert "ci_pipeline_status{" in metrics
            # The demo's re-runs (a GitLab retry, a GitHub attempt 2, a Jenkins rebuild) make
            # flaky jobs of each provider: the Flaky jobs page is not empty.
            flaky: set[str] = set()
            while time.monotonic() < deadline + 30 and flaky != {"gitlab", "github", "jenkins"}:
                _, body = _get(base + "api/v1/flaky")
                flaky = {job["provider"] for job in json.loads(body)["jobs"]}
                time.sleep(0.5)
            assert flaky == {"gitlab", "github", "jenkins"}, body
            status, page = _get(base + "flaky")
            assert status == 200 and 'class="flaky-row"' in page
            for source, project in HISTORY:
                _assert_two_weeks_of_history(base, source, project)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr


# One demo project per provider (source name, project).
HISTORY = [
    ("gitlab", "platform/backend/api"),
    ("github", "octo-org/service"),
    ("jenkins", "backend/billing"),
    ("azure", "Fabrikam/web-ci"),
]


def _assert_two_weeks_of_history(base: str, source: str, project: str) -> None:
    """The project's page charts most of the last 14 days, and its stored runs spread over
    them with failures and varied durations (collected by the first poll's backfill)."""
    page = base + f"projects/{source}/{project}?refresh=0"
    bars = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, html = _get(page)
        bars = len(re.findall(r'class="bar-value', html))
        if bars >= 10:
            break
        time.sleep(0.5)
    assert bars >= 10, f"{project}: {bars} of 14 days charted"
    assert "No finished runs in the last" not in html
    _, body = _get(base + f"api/v1/runs?source={source}&project={project}&limit=500")
    runs = json.loads(body)["runs"]
    since = datetime.now(UTC) - timedelta(days=14)
    days = set()
    for run in runs:
        created = datetime.fromisoformat(run["created_at"])
        if created >= since:
            days.add(created.date())
    assert len(days) >= 10, (project, sorted(days))
    statuses = {run["status"] for run in runs}
    assert {"success", "failed"} <= statuses, statuses
    durations = {run["duration_seconds"] for run in runs if run["status"] == "success"}
    assert len(durations) >= 10, durations

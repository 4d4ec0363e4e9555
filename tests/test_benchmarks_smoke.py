"""The collection benchmark runs end to end on a tiny scenario and prints its figures.

Behaviour only: it starts, polls, measures the naive baseline, prints and exits 0. No assertion
is about time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "poll.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARK), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_poll_benchmark_prints_its_figures() -> None:
    done = _run("--targets", "30", "--cycles", "2")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for label in (
        "ciwatch backfill",
        "ciwatch cycle 1",
        "ciwatch cycle 2",
        "naive warm-up",
        "naive cycle",
    ):
        assert label in out
    for figure in ("wall s", "CPU s", "requests", "req/tgt", "GH 304", "RSS MB", "det/chg"):
        assert figure in out
    assert "requests per target" in out
    assert "ciwatch steady-state cycle / naive cycle: requests" in out


def test_poll_benchmark_json() -> None:
    done = _run("--targets", "6", "--cycles", "1", "--no-naive", "--explicit", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["targets"] == 6
    backfill, steady = result["ciwatch"]
    assert steady["targets"] == 6
    assert steady["failed"] == 0
    assert steady["requests"] >= 6
    assert set(steady["providers"]) == {"gitlab", "github", "jenkins"}
    assert backfill["peak_rss_mb"] > 0
    assert result["naive"] == []


STATIC = Path(__file__).parents[1] / "benchmarks" / "static_poll.py"


def test_static_poll_benchmark_prints_its_figures() -> None:
    """The static-server benchmark measures the serve (`run_once` and the loop), cron and
    both baseline paths (aiohttp and httpx), with a changed fraction, and every target is
    answered (no unknown URL, no failed poll)."""
    command = [sys.executable, str(STATIC), "--targets", "9", "--changed", "0.3", "--cycles", "1"]
    done = subprocess.run(
        [*command, "--loop", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    labels = ("serve backfill", "serve steady 1", "serve loop 1", "cron 1", "baseline 1")
    for label in (*labels, "httpx baseline 1"):
        assert label in done.stdout
    for figure in ("CPU s", "CPU ms/tgt", "requests", "MB recv", "RSS MB", "fail"):
        assert figure in done.stdout


def test_static_poll_benchmark_json() -> None:
    done = subprocess.run(
        [sys.executable, str(STATIC), "--targets", "9", "--changed", "0.2", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = {row["path"]: row for row in json.loads(done.stdout)}
    assert set(rows) == {
        "serve backfill",
        "serve steady 1",
        "serve steady 2",
        "cron 1",
        "cron 2",
        "baseline 1",
        "baseline 2",
        "httpx baseline 1",
        "httpx baseline 2",
    }
    assert all(row["failed"] == 0 and row["targets"] == 9 for row in rows.values())
    # The backfill reads every run's details; a steady cycle only the changed ones (2 of 9
    # targets), and GitHub answers 304 for a repository that did not change.
    assert rows["serve backfill"]["details"] > rows["serve steady 1"]["details"]
    assert rows["serve steady 1"]["requests"] >= 9
    assert rows["serve steady 1"]["not_modified"] >= 1
    assert rows["baseline 1"]["requests"] == 9 and rows["baseline 1"]["details"] == 0
    # The httpx baseline sends the same requests: first pages only, no ETag, so no 304.
    for name in ("httpx baseline 1", "httpx baseline 2"):
        assert rows[name]["requests"] == 9 and rows[name]["details"] == 0
        assert rows[name]["not_modified"] == 0


def test_static_poll_benchmark_one_baseline() -> None:
    """`--baseline httpx` measures only the httpx baseline, `--baseline aiohttp` only aiohttp's."""
    for choice, present, absent in (
        ("httpx", "httpx baseline 1", "baseline 1"),
        ("aiohttp", "baseline 1", "httpx baseline 1"),
    ):
        command = [sys.executable, str(STATIC), "--targets", "3", "--cycles", "1"]
        done = subprocess.run(
            [*command, "--no-cron", "--baseline", choice, "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        paths = {row["path"] for row in json.loads(done.stdout)}
        assert present in paths and absent not in paths


def test_reliability_benchmark_prints_its_figures() -> None:
    script = Path(__file__).parents[1] / "benchmarks" / "reliability.py"
    done = subprocess.run(
        [sys.executable, str(script), "--runs", "400", "--repeat", "1", "--engine", "sqlite"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for label in ("flaky_jobs, every project", "recovery_stats, one project", "p50", "p95"):
        assert label in done.stdout

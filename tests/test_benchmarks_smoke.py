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

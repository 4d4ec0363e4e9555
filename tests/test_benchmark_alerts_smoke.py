"""The alert benchmark runs end to end at a tiny rate and prints its figures.

Behaviour only: every failed pipeline it sends gives exactly one notice at the receiver (none
missing, none twice). No assertion is about time.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "alerts.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARK), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_alert_benchmark_prints_its_figures() -> None:
    done = _run("--rate", "20", "--seconds", "2")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for label in (
        "engine sqlite, group_wait 0s: 20/s offered",
        "accepted 40/40",
        "errors none",
        "202 latency",
        "notification latency",
        "p50",
        "p90",
        "p99",
        "max",
        "notified      40/40",
        "server RSS",
    ):
        assert label in out, out
    found = re.search(r"missing (\d+)\s+duplicates (\d+)\s+unexpected (\d+)", out)
    assert found is not None, out
    assert found.groups() == ("0", "0", "0")


def test_alert_benchmark_json() -> None:
    done = _run("--rate", "10", "--seconds", "1", "--group-wait", "1s", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["group_wait"] == "1s"
    assert (result["sent"], result["accepted"], result["errors"]) == (10, 10, {})
    assert (result["notified"], result["missing"], result["duplicates"]) == (10, 0, 0)
    assert result["unexpected"] == 0
    assert result["notice_events"] == {"broken": 10}
    assert result["notify_p50_ms"] is not None
    assert result["notify_p99_ms"] >= result["notify_p50_ms"]
    assert result["rss_mb"] > 0

"""The GCPE metrics benchmark runs on a tiny store and prints its figures (no assertion on time)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_gcpe_metrics_benchmark_prints_its_figures() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *sys.path])}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "metrics_gcpe.py"), "--refs", "10"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "refs=10 jobs per newest run=5 renders=5"
    off, on = lines[1:3]
    assert off.startswith("gcpe_compatible=false") and on.startswith("gcpe_compatible=true ")
    for line in (off, on):
        assert "lines" in line and "MB" in line and "first render ms" in line
    # The family adds series: the line count is larger with it on.
    count = [int(line.split("lines")[1].split()[0].replace(",", "")) for line in (off, on)]
    assert count[1] > count[0]

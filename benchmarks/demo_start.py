"""How long `ciwatch demo` takes to be useful: seconds from launching it to

- the first 200 of the dashboard (`/`),
- every demo project stored (`/api/v1/projects` lists ten),
- the charts of platform/backend/api showing at least 10 of their 14 days (its page's bars);

and the CPU seconds the demo process had used when the ten projects were stored (the work
done, less sensitive than wall time to a busy machine).

    PYTHONPATH=src python benchmarks/demo_start.py [--runs 3] [--timeout 90]

Prints one row per run and the medians; a figure is `-` when it was not reached in time (the
demo before it had history never charts 10 days).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

PROJECT_PAGE = "projects/gitlab/platform/backend/api?refresh=0"
WANTED_DAYS = 10


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - loopback URL
        body: bytes = answer.read()
        return body.decode()


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds the process has used so far (Linux /proc), None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(timeout: float) -> tuple[float | None, ...]:
    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    started = time.monotonic()
    first = projects = charted = cpu = None
    with subprocess.Popen(
        [sys.executable, "-m", "ciwatch", "demo", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as proc:
        try:
            while time.monotonic() - started < timeout and charted is None:
                try:
                    _get(base)
                    if first is None:
                        first = time.monotonic() - started
                    names = {
                        p["project"] for p in json.loads(_get(base + "api/v1/projects"))["projects"]
                    }
                    if projects is None and len(names) >= 10:
                        projects = time.monotonic() - started
                        cpu = _cpu_seconds(proc.pid)
                    bars = len(re.findall(r'class="bar-value', _get(base + PROJECT_PAGE)))
                    if bars >= WANTED_DAYS:
                        charted = time.monotonic() - started
                except OSError:
                    pass  # not listening yet, or the project not polled yet (404)
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    return first, projects, charted, cpu


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args()
    print(
        f"{'run':>4} {'first 200 s':>12} {'10 projects s':>14} {'14-day charts s':>16}"
        f" {'CPU s at 10 projects':>21}"
    )
    rows = []
    for number in range(1, args.runs + 1):
        row = one_run(args.timeout)
        rows.append(row)
        print(
            f"{number:>4} {_cell(row[0]):>12} {_cell(row[1]):>14} {_cell(row[2]):>16}"
            f" {_cell(row[3]):>21}"
        )
    medians = []
    for column in zip(*rows, strict=True):
        known = [value for value in column if value is not None]
        medians.append(statistics.median(known) if len(known) == len(column) else None)
    print(
        f"{'med':>4} {_cell(medians[0]):>12} {_cell(medians[1]):>14} {_cell(medians[2]):>16}"
        f" {_cell(medians[3]):>21}"
    )


if __name__ == "__main__":
    main()

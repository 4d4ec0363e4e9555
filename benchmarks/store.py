"""Store throughput and query latency on SQLite and PostgreSQL. Prints figures, asserts nothing.

    python benchmarks/store.py [--runs N] [--engine sqlite|postgresql|both]

For each engine, on a fresh database: upserts per second for fresh inserts, updates that change
a run and no-op duplicates, each one at a time (`upsert_run`, as webhooks arrive) and in batches
of one project's runs (`upsert_runs`, as a poll cycle stores them); then p50/p95 latency of
`ref_states()` and `history()` over the resulting store (N runs spread over N/200 refs, at most
5,000, five refs per project; one run in a thousand canceled, the runs of the "changing update"
rows left running, none skipped). PostgreSQL runs in a throw-away database
`ciwatch_bench_<random>` on the server of `--pg` (user with CREATEDB), dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from ciwatch.domain import Run, Status
from ciwatch.store import SqlStore, open_store

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make_runs(count: int, refs: int, seed: int = 1) -> list[Run]:
    """`count` finished runs, round-robin over `refs` refs (5 refs per project), in time order."""
    rng = random.Random(seed)
    runs = []
    for n in range(count):
        ref_index = n % refs
        created = T0 + timedelta(seconds=30 * n)
        status = Status.FAILED if rng.random() < 0.15 else Status.SUCCESS
        if n % 1000 == 7:
            status = Status.CANCELED  # a rare status: one run in a thousand
        runs.append(
            Run(
                source="gitlab-main",
                provider="gitlab",
                project=f"group/project-{ref_index // 5:04d}",
                run_id=str(100_000 + n),
                number=n,
                ref=f"branch-{ref_index % 5}",
                sha=f"{n:040x}",
                event="push",
                workflow="CI",
                status=status,
                provider_status=status.value,
                created_at=created,
                started_at=created + timedelta(seconds=5),
                finished_at=created + timedelta(seconds=300),
                updated_at=created + timedelta(seconds=300),
                duration_seconds=295.0,
                queued_seconds=5.0,
                url=f"https://gitlab.example.com/group/project/-/pipelines/{n}",
                author="bench",
            )
        )
    return runs


def changed(run: Run) -> Run:
    """A newer update of `run` (the pipeline was retried and is running again)."""
    return replace(
        run,
        attempt=run.attempt + 1,
        status=Status.RUNNING,
        provider_status="running",
        finished_at=None,
        duration_seconds=None,
        updated_at=run.updated_at + timedelta(seconds=60),
    )


async def rate(
    label: str, items: Sequence[Run], apply: Callable[[Sequence[Run]], Awaitable[Any]], size: int
) -> tuple[str, float]:
    start = time.perf_counter()
    for offset in range(0, len(items), size):
        await apply(items[offset : offset + size])
    elapsed = time.perf_counter() - start
    return label, len(items) / elapsed if elapsed else float("inf")


async def latency(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    samples = []
    await call()  # warm caches and prepared statements
    for _ in range(repeat):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


async def bench_store(store: SqlStore, runs: list[Run], single: int, batch: int) -> None:
    await store.upgrade()
    one = runs[:single]
    # Batches as a poll cycle makes them: the new runs of one project (target) at a time.
    rest = sorted(runs[single:], key=lambda run: run.project)

    async def singly(items: Sequence[Run]) -> None:
        await store.upsert_run(items[0])

    async def batched(items: Sequence[Run]) -> None:
        await store.upsert_runs(items)

    retried_one = [changed(run) for run in one]
    sample = rest[: max(batch, min(len(rest), 20 * batch))]
    retried_sample = [changed(run) for run in sample]
    figures = [
        await rate("insert, one by one", one, singly, 1),
        await rate(f"insert, batches of {batch}", rest, batched, batch),
        await rate("changing update, one by one", retried_one, singly, 1),
        await rate(f"changing update, batches of {batch}", retried_sample, batched, batch),
        await rate("no-op duplicate, one by one", retried_one, singly, 1),
        await rate(f"no-op duplicate, batches of {batch}", retried_sample, batched, batch),
    ]
    for label, per_second in figures:
        print(f"  {label:<36} {per_second:>10,.0f} upserts/s", flush=True)

    states = await store.ref_states()
    project = runs[len(runs) // 2].project
    second_page = (await store.history(limit=50)).next
    queries: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        (f"ref_states() ({len(states)} refs)", store.ref_states),
        ("history(limit=50)", lambda: store.history(limit=50)),
        ("history(limit=50, cursor=page 2)", lambda: store.history(limit=50, cursor=second_page)),
        ("history(project=..., limit=50)", lambda: store.history(project=project, limit=50)),
        (
            "history(status=failed, limit=50)",
            lambda: store.history(status=Status.FAILED, limit=50),
        ),
        (
            "history(status=canceled, limit=50)",
            lambda: store.history(status=Status.CANCELED, limit=50),
        ),
        (
            "history(status=running, limit=50)",
            lambda: store.history(status=Status.RUNNING, limit=50),
        ),
        (
            "history(status=skipped, limit=50)",
            lambda: store.history(status=Status.SKIPPED, limit=50),
        ),
    ]
    for label, call in queries:
        p50, p95 = await latency(call, repeat=30)
        print(f"  {label:<36} p50 {p50:8.2f} ms   p95 {p95:8.2f} ms", flush=True)


async def run_sqlite(runs: list[Run], single: int, batch: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'bench.db'}")
        try:
            await bench_store(store, runs, single, batch)
        finally:
            await store.close()


async def run_postgresql(runs: list[Run], single: int, batch: int, server: str) -> None:
    name = f"ciwatch_bench_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(f"{server}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        store = open_store(f"{server}/{name}")
        try:
            await bench_store(store, runs, single, batch)
        finally:
            await store.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20_000, help="runs in the store")
    parser.add_argument("--engine", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--single", type=int, default=2_000, help="runs upserted one by one")
    parser.add_argument("--batch", type=int, default=500, help="runs per upsert_runs call")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server")
    args = parser.parse_args(argv)
    refs = min(5_000, max(1, args.runs // 200))
    runs = make_runs(args.runs, refs)
    single = min(args.single, args.runs // 2)
    print(f"{args.runs:,} runs over {refs:,} refs; Python {sys.version.split()[0]}", flush=True)
    if args.engine in ("sqlite", "both"):
        print("SQLite (file, WAL)", flush=True)
        await run_sqlite(runs, single, args.batch)
    if args.engine in ("postgresql", "both"):
        print("PostgreSQL", flush=True)
        await run_postgresql(runs, single, args.batch, args.pg)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

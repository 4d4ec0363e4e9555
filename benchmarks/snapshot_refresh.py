"""The cost of one `/metrics` snapshot refresh with its render and gzip, in-process. Prints figures.

    python benchmarks/snapshot_refresh.py --db PATH [--rounds 5] [--changed 50]

PATH is a SQLite store (e.g. the one `benchmarks/web.py --reuse PATH` fills: 5,000 refs, five jobs
per newest run); it is copied to a temporary folder first, so it is never changed. Over the copy,
a `SnapshotCache` and a `MetricsRenderer` are built and warmed (one refresh with its counts, one
render and gzip), then each case times `--rounds` refreshes, each followed by the render and gzip
that a Prometheus scrape would cause:

- `nothing changed`: the snapshot is invalidated and refreshed (a full read);
- `changed by another store`: `--changed` refs get a new newest run through a second store on the
  same file (another replica: this process is not told), then a full read;
- `changed by this store`: the same through the cache's own store (this process's writes: the
  snapshot is stale at once and, before the older code, was not until its 5 s age; the case is
  skipped when the cache does not follow the store's changes).

Run the "before" with PYTHONPATH at another checkout's `src/`, side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ciwatch.metrics import SnapshotCache
from ciwatch.metrics.collector import CiwatchCollector
from ciwatch.metrics.exposition import MetricsRenderer
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import open_store


async def case(db: Path, changed: int, writer: str, rounds: int) -> list[float] | None:
    """Milliseconds per refresh + render + gzip, `rounds` times."""
    store = open_store(f"sqlite:///{db}")
    other = open_store(f"sqlite:///{db}")
    cache = SnapshotCache(store, lambda: datetime.now(UTC), slow_max_age=3600.0)
    try:
        if writer == "this" and not hasattr(cache, "get_current"):
            return None
        await cache.refresh()
        renderer = MetricsRenderer(CiwatchCollector(cache, CollectionMetrics()))
        renderer.render_gzip()
        assert cache.current is not None
        states = list(cache.current.refs)
        times = []
        for n in range(rounds):
            if changed:
                runs = [
                    replace(
                        state.last_run,
                        run_id=f"bench-{n}-{i}",
                        created_at=(state.last_run.created_at or state.last_run.updated_at)
                        + timedelta(seconds=1),
                        updated_at=state.last_run.updated_at + timedelta(seconds=1),
                    )
                    for i, state in enumerate(states[n * changed : (n + 1) * changed])
                ]
                await (store if writer == "this" else other).upsert_runs(runs)
            start = time.perf_counter()
            if writer != "this":
                cache.invalidate()
            await cache.get()
            renderer.render_gzip()
            times.append(1000 * (time.perf_counter() - start))
        return times
    finally:
        await cache.aclose()
        await store.close()
        await other.close()


def copy_store(source: Path, copy: Path) -> Path:
    """A copy of the SQLite file `source`, with its WAL (rows not yet checkpointed)."""
    shutil.copy(source, copy)
    for suffix in ("-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{copy}{suffix}")
    return copy


async def main(args: argparse.Namespace) -> None:
    cases = [
        ("nothing changed", 0, "other"),
        (f"{args.changed} refs changed by another store", args.changed, "other"),
        (f"{args.changed} refs changed by this store", args.changed, "this"),
    ]
    with tempfile.TemporaryDirectory() as folder:
        for label, changed, writer in cases:
            copy = copy_store(args.db, Path(folder) / "copy.db")
            times = await case(copy, changed, writer, args.rounds)
            if times is None:
                print(f"  {label:40} skipped (the snapshot does not follow this store's writes)")
                continue
            rounded = ", ".join(f"{t:.0f}" for t in times)
            print(f"  {label:40} median {statistics.median(times):7.0f} ms  ({rounded})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, required=True, help="a SQLite store to copy")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--changed", type=int, default=50, help="refs changed per round")
    asyncio.run(main(parser.parse_args()))

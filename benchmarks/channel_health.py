"""What the channels' health costs each full alert evaluation (the `unhealthy` alert of a
channel, `store.alerting.channel_troubles`), over an outbox of `--rows` rows in 4 channels, one
row in 50 failed for good. Prints the median of 10 reads on each engine.

    python benchmarks/channel_health.py --rows 100000
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import pg_database
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

import ciwatch.alerting  # noqa: F401 - loads alerting before store.alerting (issue 15's cycle)
from ciwatch.store import SqlStore, open_store
from ciwatch.store.alerting import channel_troubles
from ciwatch.store.tables import outbox

CHANNELS = ["c0", "c1", "c2", "c3"]


async def fill(store: SqlStore, rows: int) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    values = [
        {
            "dedup_key": f"k{i}",
            "fingerprint": f"broken:s:p{i % 500}:main",
            "channel": CHANNELS[i % len(CHANNELS)],
            "payload": {},
            "attempts": 1,
            "next_attempt_at": now,
            "created_at": now + timedelta(seconds=i),
            "sent_at": None if i % 50 == 0 else now,
            "failed_at": now if i % 50 == 0 else None,
            "last_error": "HTTP 400" if i % 50 == 0 else None,
        }
        for i in range(rows)
    ]

    async def work(conn: AsyncConnection) -> None:
        for start in range(0, rows, 5000):
            await conn.execute(insert(outbox), values[start : start + 5000])

    await store.write("benchmark fill", work)


async def measure(url: str, rows: int) -> float:
    store = open_store(url)
    try:
        await store.upgrade()
        await fill(store, rows)
        await channel_troubles(store, CHANNELS)  # warm
        times = []
        for _ in range(10):
            began = time.perf_counter()
            await channel_troubles(store, CHANNELS)
            times.append(time.perf_counter() - began)
        return statistics.median(times) * 1000
    finally:
        await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = await measure(f"sqlite:///{Path(tmp) / 'bench.db'}", args.rows)
    print(f"sqlite      rows={args.rows}  channel health median {sqlite:.1f} ms")
    name = f"ciwatch_bench_{secrets.token_hex(4)}"
    await pg_database(True, name)
    try:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        postgres = await measure(url, args.rows)
    finally:
        await pg_database(False, name)
    print(f"postgresql  rows={args.rows}  channel health median {postgres:.1f} ms")


if __name__ == "__main__":
    asyncio.run(main())

"""Background follow-up work of webhooks is bounded: at most `running` pieces at once, at most
`running + waiting` held, the rest dropped with a warning (the next poll catches up)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from ciwatch.config import Settings
from ciwatch.ingest import Ingest
from ciwatch.runtime import Runtime


async def test_background_work_is_bounded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    runtime = await Runtime.open(Settings(database=f"sqlite:///{tmp_path / 'ci.db'}"))
    try:
        ingest = Ingest(runtime, running=2, waiting=3)
        release = asyncio.Event()
        running = 0
        most = 0
        done = 0

        async def fetch() -> None:
            nonlocal running, most, done
            running += 1
            most = max(most, running)
            await release.wait()
            running -= 1
            done += 1

        with caplog.at_level(logging.WARNING, logger="ciwatch.ingest"):
            for n in range(7):
                ingest.later(f"fetch {n}", fetch())
            for _ in range(100):
                await asyncio.sleep(0)
            assert (running, ingest.pending, ingest.dropped) == (2, 5, 2)
            release.set()
            await ingest.drain(5)
        assert (most, done, ingest.pending) == (2, 5, 0)
        dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert dropped == [
            "fetch 5: dropped, 5 background tasks are already queued",
            "fetch 6: dropped, 5 background tasks are already queued",
        ]
    finally:
        await runtime.close()

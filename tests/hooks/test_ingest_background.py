"""Background follow-up work of webhooks is bounded: at most `running` pieces at once, at most
`running + waiting` held, the rest dropped with a warning (the next poll catches up), and cut
off by the drain at shutdown. What the webhooks accepted is stored before their answer, so none
of this loses it (test_jenkins_ingest.py, test_serve_durable.py)."""

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


async def test_drain_waits_for_the_work_then_cuts_off_what_is_left(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = await Runtime.open(Settings(database=f"sqlite:///{tmp_path / 'ci.db'}"))
    try:
        ingest = Ingest(runtime)
        never = asyncio.Event()
        finished: list[str] = []
        cancelled: list[str] = []

        async def follow_up(name: str, blocked: bool) -> None:
            try:
                if blocked:
                    await never.wait()
                await asyncio.sleep(0)
                # Work started by a follow-up is drained too.
                ingest.later(f"{name} next", record(f"{name} next"))
                finished.append(name)
            except asyncio.CancelledError:
                cancelled.append(name)
                raise

        async def record(name: str) -> None:
            finished.append(name)

        ingest.later("quick", follow_up("quick", blocked=False))
        ingest.later("stuck", follow_up("stuck", blocked=True))
        with caplog.at_level(logging.WARNING, logger="ciwatch.ingest"):
            assert await ingest.drain(0.5) == 1
        assert (finished, cancelled, ingest.pending, ingest.cut_off) == (
            ["quick", "quick next"],
            ["stuck"],
            0,
            1,
        )
        assert any("1 background follow-ups" in r.getMessage() for r in caplog.records)
    finally:
        await runtime.close()

"""What `ciwatch simulate --listen HOST:PORT [--scenario FILE] [--targets N]` runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

from ciwatch.clock import Clock
from ciwatch.simulator.app import RunningSimulator, Simulator, start_simulator
from ciwatch.simulator.builtin import demo_scenario, generated_scenario
from ciwatch.simulator.loader import load_scenario
from ciwatch.simulator.scenario import Scenario


def choose_scenario(scenario: Path | None = None, targets: int | None = None) -> Scenario:
    """The scenario file, else `targets` generated projects, else the demo.

    Raises ValueError (a usage error) when both are given, or when the file or N is bad.
    """
    if scenario is not None and targets is not None:
        raise ValueError("--scenario and --targets: give one or the other")
    if scenario is not None:
        return load_scenario(scenario)
    if targets is not None:
        return generated_scenario(targets)
    return demo_scenario()


async def serve_until_cancelled(
    sim: Simulator,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[RunningSimulator], None] | None = None,
) -> None:
    """Serve `sim` until the task is cancelled (Ctrl-C under `asyncio.run`), then stop."""
    running = await start_simulator(sim, host, port)
    try:
        if on_ready is not None:
            on_ready(running)
        await asyncio.Event().wait()
    finally:
        await running.stop()


def simulate(
    host: str,
    port: int,
    scenario: Path | None = None,
    targets: int | None = None,
    *,
    on_ready: Callable[[RunningSimulator], None] | None = None,
    clock: Clock | None = None,
) -> None:
    """Blocking: choose the scenario, serve it on host:port until interrupted."""
    sim = Simulator(choose_scenario(scenario, targets), clock)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how one stops it
        asyncio.run(serve_until_cancelled(sim, host, port, on_ready))

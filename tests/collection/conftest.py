"""The simulator of examples/scenarios/basic.yaml on a fake clock, for the collection tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ciwatch.clock import FakeClock
from ciwatch.simulator import RunningSimulator, Simulator, load_scenario, start_simulator
from collection.basic import BASIC, START


@pytest.fixture
async def sim() -> AsyncIterator[tuple[Simulator, RunningSimulator, FakeClock]]:
    clock = FakeClock(START)
    simulator = Simulator(load_scenario(BASIC), clock)
    simulator.clear_faults()
    running = await start_simulator(simulator)
    try:
        yield simulator, running, clock
    finally:
        await running.stop()

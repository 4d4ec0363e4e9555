"""Fixtures: a fake clock, and the example scenario served on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ciwatch.clock import FakeClock
from ciwatch.simulator import load_scenario

from .harness import BASIC, START, Harness, serve


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
async def basic(clock: FakeClock) -> AsyncIterator[Harness]:
    """The example scenario, served at its start time, without its scripted faults (which
    start two hours in; test_sim_faults checks them)."""
    async for harness in serve(load_scenario(BASIC), clock):
        harness.sim.clear_faults()
        yield harness

"""Starting and stopping the server, its URLs, and the request counters."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from ciwatch.clock import FakeClock
from ciwatch.simulator import (
    RunningSimulator,
    Simulator,
    choose_scenario,
    demo_scenario,
    serve_until_cancelled,
    start_simulator,
)

from .harness import BASIC, Harness


async def test_urls_and_stop(clock: FakeClock) -> None:
    sim = Simulator(demo_scenario(), clock)
    async with await start_simulator(sim) as running:
        assert running.url.startswith("http://127.0.0.1:")
        assert running.gitlab_url == f"{running.url}/gitlab"
        assert running.github_url == f"{running.url}/github"
        assert running.jenkins_url == f"{running.url}/jenkins"
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{running.url}/_simulator/stats") as resp,
        ):
            assert resp.status == 200
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(f"{running.url}/_simulator/stats"):
                pass


async def test_two_simulators_share_nothing(clock: FakeClock) -> None:
    one = await start_simulator(Simulator(demo_scenario(), clock))
    two = await start_simulator(Simulator(demo_scenario(), clock))
    try:
        assert one.url != two.url
        assert one.sim.stats is not two.sim.stats
    finally:
        await one.stop()
        await two.stop()
    await one.stop()  # stopping twice is harmless


async def test_stats_count_requests_by_provider_path_and_status(basic: Harness) -> None:
    await basic.gitlab("projects/101/pipelines")
    await basic.gitlab("projects/101/pipelines")
    await basic.gitlab("projects/404")
    etag = (await basic.github("repos/octo-org/web/actions/runs")).headers["ETag"]
    await basic.github("repos/octo-org/web/actions/runs", etag=etag)
    await basic.jenkins("api/json", auth=None)
    stats = basic.sim.stats
    assert stats.total == 6
    assert dict(stats.by_provider) == {"gitlab": 3, "github": 2, "jenkins": 1}
    assert stats.by_path["/gitlab/api/v4/projects/101/pipelines"] == 2
    assert stats.by_status[404] == 1 and stats.by_status[401] == 1 and stats.by_status[304] == 1
    assert stats.not_modified == 1
    snapshot = (await basic.get(f"{basic.running.url}/_simulator/stats")).json()
    assert snapshot["total"] == 6 and snapshot["not_modified_by_provider"] == {"github": 1}
    stats.reset()
    assert (stats.total, stats.not_modified, dict(stats.by_path)) == (0, 0, {})


async def test_unknown_paths_are_404_and_counted(basic: Harness) -> None:
    assert (await basic.gitlab("version")).status == 404
    assert (await basic.get(f"{basic.running.url}/bitbucket/api")).status == 404
    assert basic.sim.stats.by_status[404] == 2
    assert basic.sim.stats.by_provider["other"] == 1


def test_choose_scenario_for_the_command_line(tmp_path: Path) -> None:
    assert choose_scenario().name == "demo"
    assert len(choose_scenario(targets=7).projects) == 7
    assert choose_scenario(BASIC).name == "basic"
    with pytest.raises(ValueError, match="one or the other"):
        choose_scenario(BASIC, 7)
    with pytest.raises(ValueError, match="targets"):
        choose_scenario(targets=0)
    with pytest.raises(FileNotFoundError):
        choose_scenario(tmp_path / "missing.yaml")


async def test_serve_until_cancelled_stops_the_server(clock: FakeClock) -> None:
    ready: list[RunningSimulator] = []
    task = asyncio.create_task(
        serve_until_cancelled(Simulator(demo_scenario(), clock), on_ready=ready.append)
    )
    while not ready:  # noqa: ASYNC110 (the callback is the only signal there is)
        await asyncio.sleep(0.01)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{ready[0].url}/_simulator/stats") as resp:
            assert resp.status == 200
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(f"{ready[0].url}/_simulator/stats"):
                pass

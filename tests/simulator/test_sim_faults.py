"""Every fault kind, seen from a client; matching by path, provider, count, time, probability;
breaking and healing at run time; the faults of the example file."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from yarl import URL

from ciwatch.clock import FakeClock
from ciwatch.simulator import Fault, FaultBook, Simulator, load_scenario, start_simulator

from .harness import BASIC, Harness, serve

PIPELINES = "projects/101/pipelines"
RUNS = "repos/octo-org/web/actions/runs"


async def test_status_fault_for_the_first_n_requests(basic: Harness) -> None:
    basic.sim.add_fault(Fault("status", path="*/pipelines", status=502, count=2))
    statuses = [(await basic.gitlab(PIPELINES)).status for _ in range(3)]
    assert statuses == [502, 502, 200]
    assert (await basic.gitlab("projects/101")).status == 200  # other paths are untouched
    assert basic.sim.stats.by_status[502] == 2


async def test_rate_limit_fault_is_429_with_retry_after(basic: Harness) -> None:
    basic.sim.add_fault(Fault("rate_limit", provider="github", retry_after=17))
    reply = await basic.github(RUNS)
    assert (reply.status, reply.headers["Retry-After"]) == (429, "17")
    assert (await basic.gitlab(PIPELINES)).status == 200  # other providers are untouched


@pytest.mark.parametrize(
    ("provider", "remaining_header"),
    [("github", "x-ratelimit-remaining"), ("gitlab", "RateLimit-Remaining")],
)
async def test_exhausted_fault_reports_a_used_up_quota(
    basic: Harness, provider: str, remaining_header: str
) -> None:
    basic.sim.add_fault(Fault("exhausted", provider=provider, retry_after=600))
    reply = await (basic.github(RUNS) if provider == "github" else basic.gitlab(PIPELINES))
    assert reply.status == 403
    assert reply.headers[remaining_header] == "0"
    reset = reply.headers.get("x-ratelimit-reset") or reply.headers["RateLimit-Reset"]
    assert int(reset) == int(basic.clock.now().timestamp()) + 600


async def test_slow_fault_delays_the_answer(basic: Harness) -> None:
    basic.sim.add_fault(Fault("slow", provider="jenkins", delay=0.3))
    impatient = aiohttp.ClientTimeout(total=0.05)
    with pytest.raises(TimeoutError):
        async with basic.session.get(
            f"{basic.running.jenkins_url}/api/json", timeout=impatient
        ) as resp:
            await resp.read()
    patient = await basic.jenkins("api/json")
    assert patient.status == 200 and patient.json()["_class"] == "hudson.model.Hudson"


async def test_timeout_fault_never_answers(basic: Harness) -> None:
    basic.sim.add_fault(Fault("timeout", provider="gitlab"))  # an hour by default
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(basic.gitlab(PIPELINES), timeout=0.2)


async def test_stopping_the_server_hangs_up_held_requests(clock: FakeClock) -> None:
    sim = Simulator(load_scenario(BASIC), clock)
    sim.add_fault(Fault("timeout", path="/jenkins/*"))
    running = await start_simulator(sim)
    url = URL(running.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(b"GET /jenkins/api/json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    while sim.held_requests == 0:  # noqa: ASYNC110 (a counter, not an event, is what we have)
        await asyncio.sleep(0.01)
    await asyncio.wait_for(running.stop(), timeout=5)
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # no answer at all
    writer.close()
    await writer.wait_closed()
    assert sim.held_requests == 0


async def test_bad_json_fault(basic: Harness) -> None:
    basic.sim.add_fault(Fault("bad_json", path="*/actions/runs"))
    reply = await basic.github(RUNS)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        reply.json()


async def test_truncated_fault_cuts_the_real_body_in_half(basic: Harness) -> None:
    fault = basic.sim.add_fault(Fault("truncated", path="*/pipelines"))
    cut = await basic.gitlab(PIPELINES)
    basic.sim.faults.remove_fault(fault)
    whole = await basic.gitlab(PIPELINES)
    assert cut.status == 200
    assert whole.body.startswith(cut.body) and len(cut.body) == len(whole.body) // 2
    with pytest.raises(json.JSONDecodeError):
        cut.json()


@pytest.mark.parametrize("status", [502, 200])
async def test_html_fault(basic: Harness, status: int) -> None:
    basic.sim.add_fault(Fault("html", provider="gitlab", status=status))
    reply = await basic.gitlab(PIPELINES)
    assert reply.status == status
    assert reply.headers["Content-Type"].startswith("text/html")
    assert reply.body.startswith(b"<!DOCTYPE html>")


async def test_reset_fault_closes_the_connection(basic: Harness) -> None:
    # aiohttp retries an idempotent request once after a disconnect: reset both attempts.
    basic.sim.add_fault(Fault("reset", provider="github", count=2))
    with pytest.raises(aiohttp.ClientConnectionError):
        await basic.github(RUNS)
    assert (await basic.github(RUNS)).status == 200
    assert basic.sim.stats.by_status[0] == 2  # counted as "no answer"


async def test_clear_faults_heals_a_target(basic: Harness) -> None:
    basic.sim.add_fault(Fault("status", path="*/repos/octo-org/web/*"))
    assert (await basic.github(RUNS)).status == 503
    assert (await basic.github("repos/octo-org/api/actions/runs")).status == 200
    basic.sim.clear_faults()
    assert (await basic.github(RUNS)).status == 200


async def test_encoded_paths_match_too(basic: Harness) -> None:
    basic.sim.add_fault(Fault("status", path="*/projects/platform%2Fbackend%2Fapi/*"))
    assert (await basic.gitlab("projects/platform%2Fbackend%2Fapi/pipelines")).status == 503
    assert (await basic.gitlab(PIPELINES)).status == 200  # same project by id


async def test_time_window(basic: Harness) -> None:
    basic.sim.add_fault(Fault("status", provider="gitlab", after=60, until=120))
    assert (await basic.gitlab(PIPELINES)).status == 200
    basic.clock.advance(60)
    assert (await basic.gitlab(PIPELINES)).status == 503
    basic.clock.advance(60)
    assert (await basic.gitlab(PIPELINES)).status == 200


def test_probability_is_seeded_and_bounded() -> None:
    def draws(seed: int, probability: float) -> list[bool]:
        book = FaultBook([Fault("status", probability=probability)], seed=seed)
        return [book.pick("gitlab", ("/gitlab/x",), 0.0) is not None for _ in range(200)]

    assert draws(3, 0.25) == draws(3, 0.25)
    assert 20 < sum(draws(3, 0.25)) < 80
    assert not any(draws(3, 0.0)) and all(draws(3, 1.0))


async def test_the_example_files_faults_start_two_hours_in(clock: FakeClock) -> None:
    async for harness in serve(load_scenario(BASIC), clock):
        assert (await harness.gitlab(PIPELINES)).status == 200
        harness.clock.advance(2 * 3600)
        statuses = [(await harness.gitlab(PIPELINES)).status for _ in range(3)]
        assert statuses == [503, 503, 200]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "explode"}, "kind"),
        ({"kind": "status", "probability": 2.0}, "probability"),
        ({"kind": "status", "count": -1}, "count"),
        ({"kind": "status", "provider": "bitbucket"}, "provider"),
        ({"kind": "status", "status": 42}, "status"),
    ],
)
def test_bad_faults_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Fault(**kwargs)  # type: ignore[arg-type]

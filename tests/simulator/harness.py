"""Test helpers: serve a scenario on a fake clock and talk to it like a client would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from ciwatch.clock import FakeClock
from ciwatch.simulator import (
    RunningSimulator,
    Scenario,
    Simulator,
    scenario_from_dict,
    start_simulator,
)

ROOT = Path(__file__).parents[2]
BASIC = ROOT / "examples" / "scenarios" / "basic.yaml"
FIXTURES = ROOT / "tests" / "fixtures"
START = datetime(2026, 1, 1, tzinfo=UTC)
GITLAB_TOKEN = "glpat-basic-example"
GITHUB_TOKEN = "ghp_basic_example"
JENKINS_PASSWORD = "jenkins-basic-token"
JENKINS_AUTH = aiohttp.encode_basic_auth("ci-bot", JENKINS_PASSWORD)


def fixture(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text())


class Reply:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


OWN = "the scenario's own"  # as a token: the first one the served scenario accepts


class Harness:
    """The simulator, where it listens, its clock, and one request helper per provider (using
    the scenario's first credentials unless told otherwise)."""

    def __init__(
        self, sim: Simulator, running: RunningSimulator, session: aiohttp.ClientSession
    ) -> None:
        self.sim = sim
        self.running = running
        self.session = session
        self.clock: FakeClock = sim.clock  # type: ignore[assignment]
        tokens = sim.scenario.tokens
        self.tokens = {
            "gitlab": tokens.gitlab[0] if tokens.gitlab else None,
            "github": tokens.github[0] if tokens.github else None,
            "jenkins": aiohttp.encode_basic_auth(*tokens.jenkins[0]) if tokens.jenkins else None,
        }

    async def get(self, url: str, headers: dict[str, str] | None = None, **params: Any) -> Reply:
        query = {k: str(v) for k, v in params.items()}
        async with self.session.get(url, headers=headers or {}, params=query) as resp:
            return Reply(resp.status, resp.headers, await resp.read())

    async def gitlab(self, path: str, token: str | None = OWN, **params: Any) -> Reply:
        token = self.tokens["gitlab"] if token == OWN else token
        headers = {"PRIVATE-TOKEN": token} if token else {}
        return await self.get(f"{self.running.gitlab_url}/api/v4/{path}", headers, **params)

    async def github(
        self, path: str, token: str | None = OWN, etag: str | None = None, **params: Any
    ) -> Reply:
        token = self.tokens["github"] if token == OWN else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if etag:
            headers["If-None-Match"] = etag
        return await self.get(f"{self.running.github_url}/{path}", headers, **params)

    async def jenkins(self, path: str, auth: str | None = OWN, **params: Any) -> Reply:
        auth = self.tokens["jenkins"] if auth == OWN else auth
        headers = {"Authorization": auth} if auth else {}
        return await self.get(f"{self.running.jenkins_url}/{path}", headers, **params)


async def serve(scenario: Scenario, clock: FakeClock) -> AsyncIterator[Harness]:
    sim = Simulator(scenario, clock)
    async with await start_simulator(sim) as running, aiohttp.ClientSession() as session:
        yield Harness(sim, running, session)


def small_scenario(projects: list[dict[str, Any]], **top: Any) -> Scenario:
    """A scenario for one test, with the example's credentials."""
    tokens = {
        "gitlab": [GITLAB_TOKEN],
        "github": [GITHUB_TOKEN],
        "jenkins": {"ci-bot": JENKINS_PASSWORD},
    }
    return scenario_from_dict({"tokens": tokens, "projects": projects, **top})

"""A rate-limited GitHub source pauses as a whole (scheduler `paused_until`): none of its other
targets is polled until the pause ends, other sources go on, and the pause shows with the
source's discovery state (`/api/v1/targets`, `/metrics`). A real loopback server answering like
GitHub, the real provider, client and store; a fake clock (`run_once` per step)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from ciwatch.clock import FakeClock
from ciwatch.config import CollectionSettings, GitHubSource
from ciwatch.domain import DISCOVERY
from ciwatch.errors import RateLimited
from ciwatch.providers.registry import build_provider
from ciwatch.scheduler import Cadence, Scheduler
from ciwatch.store import Store

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECONDARY = '{"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}'


@dataclass
class GitHubLike:
    """`GET /repos/{owner}/{repo}/actions/runs`: no runs, or a secondary rate limit (a 403 with
    no retry-after) for the token while `limited` is set (GitHub limits per token); every
    request is recorded by repository."""

    url: str = ""
    limited: bool = False
    hits: list[str] = field(default_factory=list)
    token: str = "Bearer t1"

    async def runs(self, request: web.Request) -> web.Response:
        repo = f"{request.match_info['owner']}/{request.match_info['repo']}"
        self.hits.append(repo)
        if self.limited and request.headers.get("Authorization") == self.token:
            return web.Response(status=403, text=SECONDARY, content_type="application/json")
        body = '{"total_count": 0, "workflow_runs": []}'
        return web.Response(text=body, content_type="application/json")

    async def repos(self, request: web.Request) -> web.Response:
        self.hits.append(f"orgs/{request.match_info['org']}")
        if self.limited and request.headers.get("Authorization") == self.token:
            return web.Response(status=403, text=SECONDARY, content_type="application/json")
        body = '[{"full_name": "o/d", "archived": false}]'
        return web.Response(text=body, content_type="application/json")


@pytest.fixture
async def github() -> AsyncIterator[GitHubLike]:
    server = GitHubLike()
    app = web.Application()
    app.router.add_get("/repos/{owner}/{repo}/actions/runs", server.runs)
    app.router.add_get("/orgs/{org}/repos", server.repos)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


def scheduler(
    github: GitHubLike, store: Store, clock: FakeClock, orgs: tuple[str, ...] = ()
) -> Scheduler:
    collection = CollectionSettings(retries=4)
    repos = ["o/a", "o/b", "o/c"]
    sources = [
        GitHubSource(name="gh", url=github.url, repos=repos, orgs=list(orgs), token="t1"),
        GitHubSource(name="other", url=github.url, repos=["p/x"], token="t2"),
    ]
    providers = {s.name: build_provider(s, collection, clock) for s in sources}
    return Scheduler(
        providers,
        store,
        cadence={s.name: Cadence(60.0, 15.0) for s in sources},
        concurrency=1,  # one poll at a time, in target order: o/a is polled first
        jitter=0.0,
        clock=clock,
        rng=random.Random(1),
    )


async def close(loop: Scheduler) -> None:
    for provider in loop.providers.values():
        await provider.close()


async def test_a_secondary_rate_limit_pauses_the_whole_source(
    github: GitHubLike, store: Store
) -> None:
    clock = FakeClock(START)
    loop = scheduler(github, store, clock)
    try:
        github.limited = True
        report = await loop.run_once()
        # o/a met the limit once (not retried); o/b and o/c were not asked; `other` went on.
        assert github.hits == ["o/a", "p/x"]
        assert "other" not in loop.paused_until
        until = START + timedelta(seconds=60)
        assert loop.paused_until["gh"] == until
        failed = {o.target.project: o.error for o in report.failed}
        assert set(failed) == {"o/a", "o/b", "o/c"}
        assert "secondary rate limit" in str(failed["o/a"])
        for project in ("o/b", "o/c"):
            assert isinstance(failed[project], RateLimited)
            assert "not polled: source gh is rate-limited until 2026-03-01T12:01:00Z" in str(
                failed[project]
            )
            # Not polled, so nothing recorded on the target: its health is its last poll's.
            assert await store.get_target_state("gh", project) is None
        state = await store.get_target_state("gh", "o/a")
        assert state is not None and not state.healthy
        assert "HTTP 403" in (state.reason or "")
        # The pause is recorded with the source's discovery (API `paused_until`, metric).
        discovery = await store.get_target_state("gh", DISCOVERY)
        assert discovery is not None and discovery.paused_until == until
        assert discovery.healthy

        # Half-way through: still nothing is asked of gh (the pause holds no concurrency slot).
        github.limited = False
        github.hits.clear()
        clock.advance(30)
        report = await loop.run_once()
        assert github.hits == ["p/x"]
        assert {o.target.project for o in report.failed} == {"o/a", "o/b", "o/c"}

        # After the pause every target is polled again.
        clock.advance(31)
        github.hits.clear()
        report = await loop.run_once()
        assert sorted(github.hits) == ["o/a", "o/b", "o/c", "p/x"]
        assert report.failed == []
        discovery = await store.get_target_state("gh", DISCOVERY)
        assert discovery is not None and discovery.paused_until == until  # kept, now past
    finally:
        await close(loop)


async def test_repeats_pause_longer_and_a_restart_honours_the_pause(
    github: GitHubLike, store: Store
) -> None:
    clock = FakeClock(START)
    loop = scheduler(github, store, clock)
    try:
        github.limited = True
        await loop.run_once()
        clock.advance(60)
        await loop.run_once()  # limited again: twice as long
        assert loop.paused_until["gh"] == START + timedelta(seconds=60 + 120)
    finally:
        await close(loop)

    # A new process (restart, another replica) reads the pause and asks nothing of gh.
    github.limited = False
    github.hits.clear()
    clock.advance(100)
    again = scheduler(github, store, clock)
    try:
        report = await again.run_once()
        assert github.hits == ["p/x"]
        assert again.paused_until["gh"] == START + timedelta(seconds=180)
        # Not listed while paused (`run` lists it again when the pause ends), and said so.
        assert report.failed == []
        assert report.discovery_errors == {
            "gh": "not listed: rate-limited until 2026-03-01T12:03:00Z"
        }
        assert again.undiscovered == {"gh": START + timedelta(seconds=180)}
        clock.advance(21)
        report = await again.run_once()
        assert (report.failed, report.discovery_errors, again.undiscovered) == ([], {}, {})
        assert sorted(github.hits) == ["o/a", "o/b", "o/c", "p/x", "p/x"]
    finally:
        await close(again)


async def test_a_rate_limited_discovery_pauses_the_source_and_lists_it_when_it_ends(
    github: GitHubLike, store: Store
) -> None:
    clock = FakeClock(START)
    loop = scheduler(github, store, clock, orgs=("o",))
    try:
        github.limited = True
        report = await loop.run_once()
        assert "secondary rate limit" in report.discovery_errors["gh"]
        assert loop.undiscovered == {"gh": START + timedelta(seconds=60)}
        assert "orgs/o" in github.hits
        assert not any(hit.startswith("o/") for hit in github.hits)  # no targets yet
        github.limited = False
        github.hits.clear()
        clock.advance(60)
        report = await loop.run_once()
        assert (report.discovery_errors, loop.undiscovered, report.failed) == ({}, {}, [])
        assert sorted(github.hits) == ["o/a", "o/b", "o/c", "o/d", "orgs/o", "p/x"]
    finally:
        await close(loop)

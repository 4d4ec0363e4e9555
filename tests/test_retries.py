"""The retry policy table (ciwatch/retries.py) is what both HTTP clients do: each status is
answered by a real aiohttp server on 127.0.0.1 to the pollers' client (GET) and to the
channels' poster (POST)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from ciwatch.channels.transport import HttpPoster
from ciwatch.clock import FakeClock
from ciwatch.errors import ChannelError, ProviderError, RateLimited, Unavailable
from ciwatch.http import Backoff, HttpClient
from ciwatch.retries import (
    BACKOFF,
    NOT_RETRIED,
    POLICY,
    RATE_LIMIT,
    RETRY_AFTER,
    SERVER_ERROR,
    Client,
    honours_retry_after,
    retryable,
    rule,
)

# Every row of the table, statuses the 5xx row stands for, and statuses that are not retried.
# (A 403 is the CI API's auth failure or GitHub's rate limit, decided from the body:
# tests/test_http.py.)
STATUSES = sorted({*POLICY, 501, 502, 503, 504, 520, 524, 599, 400, 401, 404, 409, 410, 422})
RETRIES = 2


class Server:
    """Answers every request with `status` and a `Retry-After: 7`; counts the requests."""

    def __init__(self) -> None:
        self.status = 200
        self.hits = 0
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        return web.Response(status=self.status, text="no", headers={"Retry-After": "7"})


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    srv.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    yield srv
    await runner.cleanup()


def test_the_table() -> None:
    assert rule(Client.CI_API, 503) is rule(Client.CI_API, SERVER_ERROR) is BACKOFF
    assert rule(Client.CHANNEL, 599) is RETRY_AFTER
    assert rule(Client.CI_API, 429) is RATE_LIMIT
    assert rule(Client.CHANNEL, 400) is rule(Client.CI_API, 404) is NOT_RETRIED
    # Both clients retry the same statuses; they differ only in what they wait for.
    for status in STATUSES:
        assert retryable(Client.CI_API, status) is retryable(Client.CHANNEL, status)
    assert not honours_retry_after(Client.CI_API, 503)
    assert honours_retry_after(Client.CHANNEL, 503)


@pytest.mark.parametrize("status", STATUSES)
async def test_the_pollers_client_follows_the_table(server: Server, status: int) -> None:
    server.status = status
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    http = HttpClient(
        "gl", server.url, clock=clock, retries=RETRIES, backoff=Backoff(base=0.01, cap=0.01)
    )
    try:
        with pytest.raises(ProviderError) as caught:
            await http.get("x")
    finally:
        await http.close()
    policy = rule(Client.CI_API, status)
    if policy.pauses_source:
        assert isinstance(caught.value, RateLimited)
        assert caught.value.retry_after == 7  # the answer's Retry-After
        assert http.pause_left(clock.now()) == 7  # the whole source waits, not one request
    elif policy.retried:
        assert isinstance(caught.value, Unavailable)
    else:
        assert not isinstance(caught.value, Unavailable | RateLimited)
    assert server.hits == (1 + RETRIES if policy.retried else 1)


@pytest.mark.parametrize("status", STATUSES)
async def test_the_channels_poster_follows_the_table(server: Server, status: int) -> None:
    server.status = status
    async with aiohttp.ClientSession() as session:
        poster = HttpPoster("webhook ops", session=session)
        answer = await poster.post(server.url, b"{}")
    with pytest.raises(ChannelError) as caught:
        poster.check_status(answer)
    policy = rule(Client.CHANNEL, status)
    assert caught.value.permanent is not policy.retried
    assert caught.value.retry_after == (7.0 if policy.retry_after else None)

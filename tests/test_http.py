"""The HTTP client against a real aiohttp server on 127.0.0.1: retries, backoff, rate limits,
error mapping. The clock is fake so waits are instant and measurable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from ciwatch.clock import FakeClock
from ciwatch.errors import AuthFailed, NotFound, ProviderError, RateLimited, Unavailable
from ciwatch.http import Backoff, HttpClient, RateLimitState, TokenBucket, retry_after_seconds
from ciwatch.selfmetrics import CollectionMetrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """A scripted server: each request pops the next handler (the last one repeats)."""

    def __init__(self) -> None:
        self.script: list[Handler] = []
        self.hits = 0
        self.seen: list[web.Request] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self.seen.append(request)
        handler = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return await handler(request)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", srv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    srv.url = f"http://127.0.0.1:{port}/api"
    yield srv
    await runner.cleanup()


def answer(status: int = 200, body: str = "[]", **headers: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, text=body, headers=headers)

    return handler


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 1, 1, tzinfo=UTC))


def client(server: Server, clock: FakeClock, **kwargs: object) -> HttpClient:
    options: dict[str, object] = {"retries": 3, "requests_per_second": 1000.0, "timeout": 5.0}
    options.update(kwargs)
    return HttpClient("gl", server.url, clock=clock, **options)  # type: ignore[arg-type]


async def test_ok_and_headers_and_metrics(server: Server, clock: FakeClock) -> None:
    server.script = [
        answer(200, '[{"id": 1}]', **{"RateLimit-Remaining": "99", "RateLimit-Limit": "100"})
    ]
    metrics = CollectionMetrics()
    http = client(server, clock, recorder=metrics, headers={"PRIVATE-TOKEN": "t0k"})
    try:
        resp = await http.get("projects/1/pipelines", params={"per_page": 5})
    finally:
        await http.close()
    assert resp.status == 200
    assert resp.body == b'[{"id": 1}]'
    assert server.seen[0].path == "/api/projects/1/pipelines"
    assert server.seen[0].query["per_page"] == "5"
    assert server.seen[0].headers["PRIVATE-TOKEN"] == "t0k"
    assert metrics.api_requests[("gl", "200")] == 1
    assert metrics.rate_limit_remaining["gl"] == 99


async def test_304_is_an_answer_and_etag_is_sent(server: Server, clock: FakeClock) -> None:
    server.script = [answer(304, "")]
    http = client(server, clock)
    try:
        resp = await http.get("repos/o/r/actions/runs", etag='"abc"')
    finally:
        await http.close()
    assert resp.not_modified
    assert server.seen[0].headers["If-None-Match"] == '"abc"'


async def test_5xx_is_retried_with_backoff_then_succeeds(server: Server, clock: FakeClock) -> None:
    server.script = [answer(502, "bad gateway"), answer(503), answer(200, "[]")]
    http = client(server, clock, backoff=Backoff(base=1.0, cap=8.0))
    start = clock.now()
    try:
        resp = await http.get("x")
    finally:
        await http.close()
    assert resp.status == 200
    assert server.hits == 3
    assert clock.now() - start <= timedelta(seconds=1 + 2)  # full jitter: at most base*2**n


async def test_5xx_gives_up_after_the_retries(server: Server, clock: FakeClock) -> None:
    server.script = [answer(500, "boom")]
    http = client(server, clock, retries=2)
    try:
        with pytest.raises(Unavailable, match="HTTP 500"):
            await http.get("x")
    finally:
        await http.close()
    assert server.hits == 3


async def test_429_waits_for_retry_after(server: Server, clock: FakeClock) -> None:
    server.script = [answer(429, "slow down", **{"Retry-After": "7"}), answer(200)]
    http = client(server, clock)
    start = clock.now()
    try:
        await http.get("x")
    finally:
        await http.close()
    assert server.hits == 2
    assert clock.now() - start >= timedelta(seconds=7)


async def test_long_retry_after_goes_back_to_the_caller(server: Server, clock: FakeClock) -> None:
    server.script = [answer(429, "", **{"Retry-After": "3600"})]
    http = client(server, clock)
    try:
        with pytest.raises(RateLimited) as caught:
            await http.get("x")
    finally:
        await http.close()
    assert server.hits == 1
    assert caught.value.retry_after == 3600


async def test_403_with_no_quota_left_is_a_rate_limit(server: Server, clock: FakeClock) -> None:
    reset = int((clock.now() + timedelta(minutes=10)).timestamp())
    server.script = [
        answer(
            403,
            '{"message": "API rate limit exceeded"}',
            **{
                "x-ratelimit-remaining": "0",
                "x-ratelimit-limit": "5000",
                "x-ratelimit-reset": str(reset),
            },
        )
    ]
    http = client(server, clock)
    try:
        with pytest.raises(RateLimited) as caught:
            await http.get("x")
    finally:
        await http.close()
    assert caught.value.retry_after == pytest.approx(600)
    assert server.hits == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, AuthFailed), (403, AuthFailed), (404, NotFound), (400, ProviderError)],
)
async def test_client_errors_are_not_retried(
    server: Server, clock: FakeClock, status: int, error: type[Exception]
) -> None:
    server.script = [answer(status, '{"message": "nope"}')]
    http = client(server, clock)
    try:
        with pytest.raises(error, match=f"HTTP {status}.*nope"):
            await http.get("x")
    finally:
        await http.close()
    assert server.hits == 1


async def test_html_error_page_is_named_not_dumped(server: Server, clock: FakeClock) -> None:
    server.script = [answer(502, "<html><body>" + "x" * 5000 + "</body></html>")]
    http = client(server, clock, retries=0)
    try:
        with pytest.raises(Unavailable) as caught:
            await http.get("x")
    finally:
        await http.close()
    assert "an HTML page" in str(caught.value)
    assert len(str(caught.value)) < 300


async def test_timeout_is_retried_then_unavailable(server: Server, clock: FakeClock) -> None:
    async def hang(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(1)
        return web.Response()

    server.script = [hang]
    http = client(server, clock, retries=1, timeout=0.2)
    try:
        with pytest.raises(Unavailable, match="timed out"):
            await http.get("x")
    finally:
        await http.close()
    assert server.hits == 2


async def test_connection_reset_is_unavailable(server: Server, clock: FakeClock) -> None:
    async def reset(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(0.1)
        return web.Response()

    server.script = [reset, answer(200)]
    http = client(server, clock)
    try:
        resp = await http.get("x")
    finally:
        await http.close()
    assert resp.status == 200
    assert server.hits == 2


async def test_unreachable_host_is_unavailable(clock: FakeClock) -> None:
    http = HttpClient("gl", "http://127.0.0.1:1/api", clock=clock, retries=1)
    try:
        with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1"):
            await http.get("x")
    finally:
        await http.close()


@given(st.integers(0, 20), st.floats(0.01, 5), st.floats(0.1, 120))
def test_full_jitter_stays_in_bounds(attempt: int, base: float, cap: float) -> None:
    delay = Backoff(base=base, cap=cap).delay(attempt)
    assert 0 <= delay <= min(cap, base * 2**attempt)


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds({"retry-after": "12"}, now) == 12
    assert retry_after_seconds({"retry-after": "Thu, 01 Jan 2026 00:01:00 GMT"}, now) == 60
    assert retry_after_seconds({"retry-after": "soon"}, now) is None
    assert retry_after_seconds({}, now) is None


async def test_token_bucket_paces_and_slows_down(clock: FakeClock) -> None:
    bucket = TokenBucket(10.0, burst=1.0, clock=clock)
    start = clock.now()
    for _ in range(11):
        await bucket.acquire()
    assert clock.now() - start == pytest.approx(timedelta(seconds=1.0), abs=timedelta(seconds=0.01))
    quota = RateLimitState(limit=5000, remaining=100, reset_at=clock.now() + timedelta(hours=1))
    bucket.slow_down(quota)
    assert bucket.factor == pytest.approx(100 / 3600 / 10)
    quota.remaining = 4000
    bucket.slow_down(quota)
    assert bucket.factor == 1.0


# -- GitHub's rate limits (http.py `rate_limit_wait`; docs/collection.md "Rate limits") --------

SECONDARY = (
    '{"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you'
    ' try again.", "documentation_url": "https://docs.github.com/..."}'
)


async def test_429_without_headers_pauses_the_source_a_minute(
    server: Server, clock: FakeClock
) -> None:
    """Not retried in place (it was retried 4 times in about 6 s): at least 60 s, and no other
    request of the source is sent before that."""
    server.script = [answer(429, SECONDARY)]
    http = client(server, clock, retries=4)
    start = clock.now()
    try:
        with pytest.raises(RateLimited) as caught:
            await http.get("repos/o/a/actions/runs")
        assert caught.value.retry_after == 60
        assert server.hits == 1
        assert http.paused_until == start + timedelta(seconds=60)
        clock.advance(10)
        with pytest.raises(RateLimited, match="not sent: source gl is rate-limited until") as held:
            await http.get("repos/o/b/actions/runs")  # another target of the same source
        assert held.value.retry_after == pytest.approx(50)
        assert server.hits == 1
        # Once what is left is short, it is waited out in place before the request is sent.
        clock.advance(35)
        server.script = [answer(200)]
        await http.get("repos/o/b/actions/runs")
        assert server.hits == 2
    finally:
        await http.close()
    assert clock.now() - start == timedelta(seconds=60)


async def test_a_secondary_rate_limit_403_is_not_an_auth_failure(
    server: Server, clock: FakeClock
) -> None:
    server.script = [answer(403, SECONDARY, **{"x-ratelimit-remaining": "4000"})]
    http = client(server, clock)
    try:
        with pytest.raises(RateLimited) as caught:
            await http.get("x")
    finally:
        await http.close()
    assert (caught.value.retry_after, caught.value.status, server.hits) == (60, 403, 1)


@pytest.mark.parametrize(
    "body",
    [
        '{"message": "You have triggered an abuse detection mechanism."}',
        '{"message": "API rate limit exceeded for installation ID 1."}',
    ],
)
async def test_older_rate_limit_messages_are_rate_limits(
    server: Server, clock: FakeClock, body: str
) -> None:
    server.script = [answer(403, body)]
    http = client(server, clock)
    try:
        with pytest.raises(RateLimited):
            await http.get("x")
    finally:
        await http.close()


async def test_a_403_that_is_not_a_rate_limit_is_an_auth_failure(
    server: Server, clock: FakeClock
) -> None:
    server.script = [answer(403, '{"message": "Resource not accessible by integration"}')]
    http = client(server, clock)
    try:
        with pytest.raises(AuthFailed):
            await http.get("x")
    finally:
        await http.close()
    assert http.paused_until is None


async def test_repeated_secondary_limits_back_off_exponentially_until_a_success(
    server: Server, clock: FakeClock
) -> None:
    server.script = [
        answer(403, SECONDARY),
        answer(403, SECONDARY),
        answer(403, SECONDARY),
        answer(200),
        answer(429, SECONDARY),
    ]
    http = client(server, clock)
    waits = []
    try:
        for _ in range(3):
            with pytest.raises(RateLimited) as caught:
                await http.get("x")
            assert caught.value.retry_after is not None
            waits.append(caught.value.retry_after)
            clock.advance(caught.value.retry_after)
        await http.get("x")  # the pause is over and the request succeeds: the repeats end
        with pytest.raises(RateLimited) as caught:
            await http.get("x")
        waits.append(caught.value.retry_after or 0)
    finally:
        await http.close()
    assert waits == [60, 120, 240, 60]
    assert server.hits == 5


async def test_retry_after_comes_first_then_the_reset(server: Server, clock: FakeClock) -> None:
    reset = str(int((clock.now() + timedelta(minutes=10)).timestamp()))
    quota = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset}
    server.script = [
        answer(403, SECONDARY, **{"Retry-After": "120", **quota}),
        answer(429, "", **quota),
    ]
    http = client(server, clock)
    try:
        with pytest.raises(RateLimited) as first:
            await http.get("x")
        assert first.value.retry_after == 120
        clock.advance(120)
        with pytest.raises(RateLimited) as second:
            await http.get("x")
        assert second.value.retry_after == pytest.approx(480)
    finally:
        await http.close()


async def test_a_short_retry_after_holds_every_request_of_the_source(
    server: Server, clock: FakeClock
) -> None:
    """A 7 s `retry-after` is waited out in place; meanwhile no other request is sent."""
    hits: list[datetime] = []

    def timed(handler: Handler) -> Handler:
        async def record(request: web.Request) -> web.StreamResponse:
            hits.append(clock.now())
            return await handler(request)

        return record

    server.script = [timed(answer(429, SECONDARY, **{"Retry-After": "7"})), timed(answer(200))]
    http = client(server, clock, retries=0)
    start = clock.now()
    try:
        with pytest.raises(RateLimited):
            await http.get("repos/o/a/actions/runs")  # no retries left: back to the caller
        await http.get("repos/o/b/actions/runs")  # waits for the pause first
    finally:
        await http.close()
    assert hits[0] == start
    assert hits[1] >= start + timedelta(seconds=7)


@given(
    st.lists(
        st.sampled_from(["api", "v4", "a%2Fb", "job", "x.y", ".", "..", "", "a:b", "q?x=1", "f#g"]),
        max_size=6,
    ),
    st.sampled_from(["http://h:1/gitlab", "https://api.github.com/", "http://h/jenkins/sub"]),
)
def test_a_path_joins_its_base_as_urljoin_would(parts: list[str], base: str) -> None:
    """`url_for` appends plain paths without `urljoin` (a poll's hot path), and gives the same
    URL as `urljoin` for every path, dot segments, empty segments, schemes and queries too."""
    path = "/".join(parts)
    client = HttpClient("src", base)
    assert client.url_for(path) == urljoin(client.base_url, path.lstrip("/"))

"""Outbound HTTP for the pollers: one aiohttp session per source, retry with exponential backoff
and full jitter, rate-limit headers honoured, and every failure mapped into `errors.py`.

- Timeouts, 5xx and connection errors are retried (`retries` times, full jitter, capped).
- Rate limits, as GitHub documents them (`rate_limit_wait`): a 429, or a 403 with
  `retry-after`, with `x-ratelimit-remaining: 0` or whose body says it is a (secondary) rate
  limit, pauses the whole client, i.e. the source: `retry-after` seconds if sent, else until
  `x-ratelimit-reset` when the quota is used up, else at least 60 s, doubling on each repeat
  until a request succeeds. No request of the source is sent until the pause ends: a short one
  (≤ `MAX_INLINE_WAIT`) is waited out in place, a longer one raises `RateLimited` with the time
  left, so that the scheduler parks the source (scheduler/loop.py `paused_until`).
- 401, and a 403 that is not a rate limit, raise `AuthFailed`, 404 raises `NotFound`: never
  retried (the scheduler marks the target unhealthy and stops hammering it).
- 304 is a success: a conditional request whose answer has not changed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Protocol
from urllib.parse import urljoin

import aiohttp

from ciwatch.clock import Clock, SystemClock
from ciwatch.errors import (
    AuthFailed,
    NotFound,
    ProviderError,
    RateLimited,
    Unavailable,
)
from ciwatch.retries import Client, retryable

log = logging.getLogger("ciwatch.http")

# Wait in place for a rate limit only this long; longer waits go back to the scheduler.
MAX_INLINE_WAIT = 30.0
# GitHub, "Rate limits for the REST API", Exceeding the rate limit
# (https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api#exceeding-the-rate-limit)
# and "Best practices for using the REST API", Handle rate limit errors appropriately
# (https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api#handle-rate-limit-errors-appropriately):
# a rate limit is a 403 or 429; with `retry-after`, wait that many seconds; else with
# `x-ratelimit-remaining: 0`, wait until `x-ratelimit-reset` (UTC epoch seconds); otherwise
# (a secondary rate limit) wait at least one minute, and exponentially longer while it repeats.
# Requests made while rate limited may get the integration banned: the whole source waits.
SECONDARY_WAIT = 60.0
SECONDARY_MAX_WAIT = 3600.0
# What GitHub's 403 bodies say for its rate limits: "You have exceeded a secondary rate limit",
# "API rate limit exceeded for ...", and the older "abuse detection mechanism".
RATE_LIMIT_WORDS = re.compile(r"rate limit|abuse detection", re.IGNORECASE)
USER_AGENT = "ciwatch (+https://github.com/ciwatch/ciwatch)"
# What `HttpClient.url_for` appends without `urljoin`: percent-encoded path characters only,
# and no `.`, `..` or empty segment (which `urljoin` resolves).
_PLAIN_PATH = re.compile(r"[A-Za-z0-9_.~%/+=,@!$&'()*-]*")
_RESOLVED_SEGMENT = re.compile(r"(?:^|/)\.\.?(?:/|$)|//")


class RequestRecorder(Protocol):
    """Where the client reports what it did (self-metrics)."""

    def api_request(self, source: str, code: str) -> None: ...

    def rate_limit(self, source: str, remaining: int, limit: int | None) -> None: ...


class NullRecorder:
    def api_request(self, source: str, code: str) -> None:
        return None

    def rate_limit(self, source: str, remaining: int, limit: int | None) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str]
    url: str

    @property
    def not_modified(self) -> bool:
        return self.status == 304


@dataclass(slots=True)
class Backoff:
    """Exponential backoff with full jitter: a random wait in [0, min(cap, base * 2**attempt)]."""

    base: float = 0.5
    cap: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            # The server said when: wait that long plus a little jitter so replicas spread out.
            return max(retry_after, 0.0) + self.rng.uniform(0, min(1.0, self.base))
        return self.rng.uniform(0, min(self.cap, self.base * (2**attempt)))


@dataclass(slots=True)
class RateLimitState:
    """The provider's view of our quota, from its response headers."""

    limit: int | None = None
    remaining: int | None = None
    reset_at: datetime | None = None

    def update(self, headers: Mapping[str, str], now: datetime) -> None:
        limit = _header_int(headers, "x-ratelimit-limit", "ratelimit-limit")
        remaining = _header_int(headers, "x-ratelimit-remaining", "ratelimit-remaining")
        reset = _header_int(headers, "x-ratelimit-reset", "ratelimit-reset")
        if remaining is None:
            return
        self.limit, self.remaining = limit, remaining
        if reset is not None:
            self.reset_at = _reset_time(reset, now)

    def seconds_to_reset(self, now: datetime) -> float | None:
        if self.reset_at is None:
            return None
        return max((self.reset_at - now).total_seconds(), 0.0)


def _header_int(headers: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            try:
                return int(float(value))
            except ValueError:
                return None
    return None


def _reset_time(value: int, now: datetime) -> datetime:
    # GitHub and GitLab send epoch seconds; some servers send seconds-until-reset instead.
    if value > 1_000_000_000:
        return datetime.fromtimestamp(value, tz=UTC)
    return now + timedelta(seconds=value)


def retry_after_seconds(headers: Mapping[str, str], now: datetime) -> float | None:
    """`Retry-After` as seconds (delta or HTTP date), or None."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max((when - now).total_seconds(), 0.0)


def remaining_is_zero(headers: Mapping[str, str]) -> bool:
    """Whether this answer says the quota is used up (`x-ratelimit-remaining: 0`)."""
    return _header_int(headers, "x-ratelimit-remaining", "ratelimit-remaining") == 0


def is_rate_limit(answer: Response) -> bool:
    """A 429; or a 403 that GitHub documents as a rate limit (`retry-after`, no quota left, or
    a body naming a rate limit or abuse detection). Any other 403 is an auth failure."""
    if answer.status == 429:
        return True
    if answer.status != 403:
        return False
    if "retry-after" in answer.headers or remaining_is_zero(answer.headers):
        return True
    return RATE_LIMIT_WORDS.search(answer.body[:4096].decode("utf-8", "replace")) is not None


def rate_limit_wait(headers: Mapping[str, str], now: datetime, strikes: int) -> float:
    """Seconds to wait after a rate-limited answer, in GitHub's documented order: `retry-after`;
    else, with no quota left, until `x-ratelimit-reset`; else `SECONDARY_WAIT` doubled for each
    repeat (`strikes`: 1 for the first rate limit since a success), capped."""
    wait = retry_after_seconds(headers, now)
    if wait is not None:
        return wait
    reset = _header_int(headers, "x-ratelimit-reset", "ratelimit-reset")
    if remaining_is_zero(headers) and reset is not None:
        return max((_reset_time(reset, now) - now).total_seconds(), 0.0)
    return min(SECONDARY_WAIT * 2.0 ** max(strikes - 1, 0), SECONDARY_MAX_WAIT)


class TokenBucket:
    """Requests per second for one source, slowed down when the provider's quota runs low."""

    def __init__(self, rate: float, *, burst: float | None = None, clock: Clock | None = None):
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._tokens = self.burst
        self._clock = clock or SystemClock()
        self._stamp = self._clock.now()
        self._lock = asyncio.Lock()
        self.factor = 1.0

    def slow_down(self, quota: RateLimitState) -> None:
        """Spread the remaining quota until its reset, never faster than the configured rate."""
        now = self._clock.now()
        left = quota.seconds_to_reset(now)
        if quota.remaining is None or quota.limit in (None, 0) or left is None:
            self.factor = 1.0
            return
        assert quota.limit is not None
        if quota.remaining > quota.limit * 0.2:
            self.factor = 1.0
            return
        affordable = quota.remaining / max(left, 1.0)
        self.factor = min(1.0, max(affordable / self.rate, 1e-4))

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = self._clock.now()
                elapsed = max((now - self._stamp).total_seconds(), 0.0)  # clock stepped back
                self._stamp = now
                rate = self.rate * self.factor
                self._tokens = min(self.burst, self._tokens + elapsed * rate)
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await self._clock.sleep((1.0 - self._tokens) / rate)


class HttpClient:
    """GET JSON from one source's API with retries, rate limits and error mapping."""

    def __init__(
        self,
        source: str,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        requests_per_second: float = 10.0,
        max_connections: int = 16,
        verify_tls: bool = True,
        clock: Clock | None = None,
        recorder: RequestRecorder | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.source = source
        self.base_url = base_url.rstrip("/") + "/"
        self._headers = {"User-Agent": USER_AGENT, "Accept": "application/json", **(headers or {})}
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0))
        self.retries = retries
        self._clock = clock or SystemClock()
        self.bucket = TokenBucket(requests_per_second, clock=self._clock)
        self.quota = RateLimitState()
        self.recorder: RequestRecorder = recorder or NullRecorder()
        self.backoff = backoff or Backoff()
        self._max_connections = max_connections
        self._verify_tls = verify_tls
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        # The source's rate-limit pause: nothing is sent before it ends (module docstring).
        self.paused_until: datetime | None = None
        # Secondary rate limits without a wait in their headers since the last success.
        self.strikes = 0

    def _session_or_new(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ttl_dns_cache=300, ssl=self._verify_tls
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=self._timeout,
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    def url_for(self, path: str) -> str:
        if "://" in path:
            return path
        relative = path.lstrip("/")
        if not _PLAIN_PATH.fullmatch(relative) or _RESOLVED_SEGMENT.search(relative):
            return urljoin(self.base_url, relative)
        # A plain path (no `.`, `..` or empty segment, scheme, query, fragment or parameters)
        # joined to a base ending in `/` is appended: a concatenation per request instead of
        # `urljoin`'s parse, a fair part of an unchanged poll's CPU.
        return self.base_url + relative

    async def get(
        self,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        etag: str | None = None,
        target: str | None = None,
    ) -> Response:
        """GET with retries. Returns 2xx and 304 answers; raises a ProviderError otherwise."""
        url = self.url_for(path)
        headers = {"If-None-Match": etag} if etag else None
        attempt = 0
        while True:
            try:
                return await self._once(url, params, headers, target)
            except (Unavailable, RateLimited) as exc:
                retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
                if attempt >= self.retries or (retry_after or 0.0) > MAX_INLINE_WAIT:
                    raise
                delay = self.backoff.delay(attempt, retry_after)
                log.info(
                    "retrying GET %s in %.1fs (%d/%d): %s",
                    url,
                    delay,
                    attempt + 1,
                    self.retries,
                    exc,
                )
                attempt += 1
                await self._clock.sleep(delay)

    async def _once(
        self,
        url: str,
        params: Mapping[str, str | int] | None,
        headers: Mapping[str, str] | None,
        target: str | None,
    ) -> Response:
        await self._wait_for_pause(url, target)
        await self.bucket.acquire()
        self.requests += 1
        session = self._session_or_new()
        try:
            async with session.get(url, params=params, headers=headers) as resp:
                body = await resp.read()
                answer = Response(resp.status, body, _plain_headers(resp.headers), str(resp.url))
        except TimeoutError as exc:
            self.recorder.api_request(self.source, "timeout")
            raise Unavailable(f"GET {url}: timed out", target=target) from exc
        except aiohttp.ClientError as exc:
            self.recorder.api_request(self.source, "error")
            reason = str(exc) or type(exc).__name__
            raise Unavailable(f"GET {url}: {reason}", target=target) from exc
        self.recorder.api_request(self.source, str(answer.status))
        now = self._clock.now()
        self.quota.update(answer.headers, now)
        if self.quota.remaining is not None:
            self.recorder.rate_limit(self.source, self.quota.remaining, self.quota.limit)
            self.bucket.slow_down(self.quota)
        return self._check(answer, url, target, now)

    def pause_left(self, now: datetime) -> float:
        """Seconds until the source's rate-limit pause ends (0 when it is not paused)."""
        if self.paused_until is None:
            return 0.0
        return max((self.paused_until - now).total_seconds(), 0.0)

    async def _wait_for_pause(self, url: str, target: str | None) -> None:
        left = self.pause_left(self._clock.now())
        if left > MAX_INLINE_WAIT:
            assert self.paused_until is not None
            until = self.paused_until.isoformat().replace("+00:00", "Z")
            message = f"GET {url}: not sent: source {self.source} is rate-limited until {until}"
            raise RateLimited(message, retry_after=left, target=target)
        if left > 0:
            await self._clock.sleep(left)

    def _rate_limited(self, answer: Response, now: datetime) -> float:
        """Pause the source after a rate-limited answer; the seconds to wait."""
        left = self.pause_left(now)
        explicit = "retry-after" in answer.headers or remaining_is_zero(answer.headers)
        if not explicit and left > 0:
            # An answer to a request sent before the pause began: the same episode, not a repeat.
            return left
        if not explicit:
            self.strikes += 1
        wait = rate_limit_wait(answer.headers, now, self.strikes)
        until = now + timedelta(seconds=wait)
        if self.paused_until is None or until > self.paused_until:
            self.paused_until = until
        log.warning(
            "source %s rate-limited (HTTP %d): no request until %s",
            self.source,
            answer.status,
            self.paused_until.isoformat(),
        )
        return max(wait, left)

    def _check(self, answer: Response, url: str, target: str | None, now: datetime) -> Response:
        status = answer.status
        if 200 <= status < 300 or status == 304:
            self.strikes = 0
            return answer
        detail = _short_detail(answer)
        message = f"GET {url}: HTTP {status}{detail}"
        if is_rate_limit(answer):
            wait = self._rate_limited(answer, now)
            raise RateLimited(message, retry_after=wait, target=target, status=status)
        if status in (401, 403):
            raise AuthFailed(message, target=target, status=status)
        if status == 404:
            raise NotFound(message, target=target, status=status)
        if retryable(Client.CI_API, status):  # the policy table: ciwatch/retries.py
            raise Unavailable(message, target=target, status=status)
        raise ProviderError(message, target=target, status=status)


def _plain_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def _short_detail(answer: Response) -> str:
    """A hint of what the server said, without dumping an HTML page into the logs."""
    text = answer.body[:300].decode("utf-8", "replace").strip()
    if not text:
        return ""
    if text.startswith("<"):
        return " (an HTML page, not JSON)"
    return f" ({' '.join(text.split())[:200]})"

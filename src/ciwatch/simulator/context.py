"""The simulator's state as the provider modules see it: the world, the clock, credentials and
quotas. Scenario time is integer milliseconds since `start` (the clock's time when the simulator
was created, rounded down to a whole second)."""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import datetime, timedelta

from aiohttp import web

from ciwatch.clock import Clock
from ciwatch.simulator.ratelimit import RateLimiter
from ciwatch.simulator.scenario import Scenario
from ciwatch.simulator.world import World

_MS = timedelta(milliseconds=1)


class Context:
    def __init__(self, scenario: Scenario, clock: Clock) -> None:
        self.scenario = scenario
        self.clock = clock
        self.world = World(scenario)
        self.start: datetime = clock.now().replace(microsecond=0)
        self.start_ms = int(self.start.timestamp()) * 1000
        self.limits = {
            provider: RateLimiter(spec.limit, round(spec.window * 1000))
            for provider, spec in scenario.rate_limits.items()
        }

    def now(self) -> int:
        """Milliseconds since the start (negative only if the clock goes back)."""
        return (self.clock.now() - self.start) // _MS

    def epoch_ms(self, offset: int) -> int:
        return self.start_ms + offset

    def now_epoch_ms(self) -> int:
        return self.start_ms + self.now()


def bearer_token(request: web.Request, *, schemes: tuple[str, ...]) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in schemes and value.strip():
        return value.strip()
    return None


def known(token: str | None, accepted: tuple[str, ...]) -> bool:
    return token is not None and any(
        hmac.compare_digest(token.encode(), ok.encode()) for ok in accepted
    )


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, secret) if sep else None

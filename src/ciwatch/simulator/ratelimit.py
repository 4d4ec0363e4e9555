"""Per-token request quotas in fixed windows aligned to the epoch, and the headers that report
them the way GitLab (`RateLimit-*`) and GitHub (`x-ratelimit-*`) do."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate


@dataclass(frozen=True)
class Quota:
    limit: int
    remaining: int
    used: int
    reset: int  # epoch seconds when the window ends


class RateLimiter:
    """`limit` requests per `window_ms` per token; the clock is passed in (epoch ms)."""

    def __init__(self, limit: int, window_ms: int) -> None:
        self.limit = limit
        self.window_ms = max(window_ms, 1000)
        self._used: dict[str, tuple[int, int]] = {}

    def peek(self, token: str, now_ms: int) -> Quota:
        window = now_ms // self.window_ms
        seen_window, used = self._used.get(token, (window, 0))
        if seen_window != window:
            used = 0
        reset = (window + 1) * self.window_ms // 1000
        return Quota(self.limit, max(self.limit - used, 0), used, reset)

    def spend(self, token: str, now_ms: int) -> Quota | None:
        """Count one request; None (and nothing counted) when the quota is used up."""
        quota = self.peek(token, now_ms)
        if quota.remaining <= 0:
            return None
        self._used[token] = (now_ms // self.window_ms, quota.used + 1)
        return Quota(quota.limit, quota.remaining - 1, quota.used + 1, quota.reset)


def github_headers(quota: Quota) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(quota.limit),
        "x-ratelimit-remaining": str(quota.remaining),
        "x-ratelimit-reset": str(quota.reset),
        "x-ratelimit-used": str(quota.used),
        "x-ratelimit-resource": "core",
    }


def gitlab_headers(quota: Quota) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(quota.limit),
        "RateLimit-Observed": str(quota.used),
        "RateLimit-Remaining": str(quota.remaining),
        "RateLimit-Reset": str(quota.reset),
        "RateLimit-ResetTime": formatdate(quota.reset, usegmt=True),
    }


def headers_for(provider: str | None, quota: Quota) -> dict[str, str]:
    if provider == "github":
        return github_headers(quota)
    if provider == "gitlab":
        return gitlab_headers(quota)
    return {}

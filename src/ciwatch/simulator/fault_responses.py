"""What each fault kind answers (see `faults.Fault`); `None` means the connection was closed
without any answer."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ciwatch.simulator.context import Context
from ciwatch.simulator.faults import Fault
from ciwatch.simulator.github import exhausted_body
from ciwatch.simulator.httputil import Handler, json_response
from ciwatch.simulator.ratelimit import Quota, headers_for

BAD_JSON = b'{"id": 1, "status": "succ'
_REASONS = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    200: "OK",
    403: "Forbidden",
}
_HTML = (
    "<!DOCTYPE html><html><head><title>{code} {reason}</title></head><body>"
    "<h1>{code} {reason}</h1><p>The server is temporarily unable to service your request."
    "</p><hr><center>nginx</center></body></html>"
)


class FaultResponder:
    def __init__(self, ctx: Context, stopping: asyncio.Event) -> None:
        self.ctx = ctx
        self.stopping = stopping
        self.held = 0  # requests waiting in a `slow` or `timeout` fault right now

    async def respond(
        self, fault: Fault, provider: str | None, request: web.Request, handler: Handler
    ) -> web.StreamResponse | None:
        kind = fault.kind
        code = fault.http_status
        if kind == "status":
            reason = _REASONS.get(code, "Error")
            return json_response({"message": f"{code} {reason}"}, code)
        if kind == "rate_limit":
            body = {
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes."
            }
            return json_response(body, 429, {"Retry-After": str(fault.retry_after)})
        if kind == "exhausted":
            return self.exhausted(fault, provider)
        if kind == "slow":
            if await self.wait(fault.seconds):
                return await handler(request)
            hang_up(request)
            return None
        if kind == "timeout":
            await self.wait(fault.seconds)
            hang_up(request)
            return None
        if kind == "bad_json":
            return web.Response(body=BAD_JSON, status=200, content_type="application/json")
        if kind == "truncated":
            return await truncated(request, handler)
        if kind == "html":
            reason = _REASONS.get(code, "Error")
            page = _HTML.format(code=code, reason=reason)
            return web.Response(text=page, status=code, content_type="text/html")
        hang_up(request)
        return None

    def exhausted(self, fault: Fault, provider: str | None) -> web.Response:
        limiter = self.ctx.limits.get(provider or "")
        limit = limiter.limit if limiter is not None else 5000
        reset = self.ctx.now_epoch_ms() // 1000 + fault.retry_after
        headers = headers_for(provider, Quota(limit, 0, limit, reset))
        if provider != "github":
            headers["Retry-After"] = str(fault.retry_after)
        body = exhausted_body() if provider == "github" else {"message": "403 Forbidden"}
        return json_response(body, fault.http_status, headers)

    async def wait(self, seconds: float) -> bool:
        """Real time (network time, not scenario time); False when the server is stopping."""
        self.held += 1
        try:
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        except TimeoutError:
            return True
        finally:
            self.held -= 1
        return False


def hang_up(request: web.Request) -> None:
    """Close the connection without an answer."""
    if request.transport is not None:
        request.transport.close()


async def truncated(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The real answer with the second half of its body cut off, and a 200."""
    real = await handler(request)
    body = bytes(real.body) if isinstance(real, web.Response) and real.body else b""  # type: ignore[arg-type]
    headers = {
        k: v for k, v in real.headers.items() if k.lower() not in ("content-length", "content-type")
    }
    return web.Response(
        body=body[: len(body) // 2], status=200, headers=headers, content_type="application/json"
    )

"""HTTP basic auth for the dashboard, the API and (optionally) `/metrics`
(docs/architecture.md#http-and-dashboard).

Active only when `server.username` and `server.password` are both set. Credentials are compared
in constant time: both the user name and the password are always compared, as bytes, so the
answer's timing says nothing about which one was wrong or how much of it matched.

Which routes are protected is decided where the routers are included (`web/app.py`):

- `require_auth`: the dashboard pages and every `/api/v1/...` read route, `/openapi.json`, `/docs`;
- `require_metrics_auth`: `/metrics`, only when `server.protect_metrics` is true;
- nothing: `/healthz`, `/readyz`, static files, and the routes that carry their own secret
  (webhooks check the source's `webhook_secret`, `POST /api/v1/report` the bearer
  `report_token`); those routers are included without these dependencies.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi.security import HTTPBasic
from starlette.requests import Request

from ciwatch.config.models import ServerSettings
from ciwatch.validation import parse_basic
from ciwatch.web.context import runtime_of
from ciwatch.web.errors import ApiError

REALM = "ciwatch"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'


def credentials_match(authorization: str | None, username: str, password: str) -> bool:
    """True when the header carries exactly `username` and `password` (constant time)."""
    given = parse_basic(authorization)
    user, secret = given if given is not None else ("", "")
    user_ok = hmac.compare_digest(user.encode("utf-8"), username.encode("utf-8"))
    password_ok = hmac.compare_digest(secret.encode("utf-8"), password.encode("utf-8"))
    return given is not None and user_ok and password_ok


def unauthorized(detail: str) -> ApiError:
    """The 401 answer: the error object and the basic-auth challenge."""
    return ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": CHALLENGE})


class BasicAuth(HTTPBasic):
    """A FastAPI dependency enforcing basic auth when configured and `applies` to the server
    settings; it also declares the `basic` security scheme in the OpenAPI document. Returns the
    authenticated user name, or None when no auth applies."""

    def __init__(self, applies: Callable[[ServerSettings], bool], description: str) -> None:
        super().__init__(
            scheme_name="basic", realm=REALM, description=description, auto_error=False
        )
        self.applies = applies

    async def __call__(self, request: Request) -> str | None:  # type: ignore[override]
        server = runtime_of(request).settings.server
        if server.username is None or server.password is None or not self.applies(server):
            return None
        header = request.headers.get("authorization")
        if credentials_match(header, server.username, server.password):
            return server.username
        if header is None:
            raise unauthorized("credentials required")
        raise unauthorized("wrong user name or password")


require_auth = BasicAuth(
    lambda server: True,
    "HTTP basic auth, when server.username and server.password are set.",
)
require_metrics_auth = BasicAuth(
    lambda server: server.protect_metrics,
    "HTTP basic auth on /metrics, when server.protect_metrics is true.",
)

"""Cross-site request forgery defences of the dashboard's forms (the `/alerts` silence forms).

A browser that has the dashboard's basic-auth credentials sends them with any request to this
host, also one a hostile page makes it send; two independent checks keep such a request from
changing anything:

1. **Same origin.** `Sec-Fetch-Site`, when the browser sends it, must be `same-origin` (or
   `none`); `Origin`, when sent, must name this host; without `Origin` the `Referer` must (the
   dashboard's pages set `Referrer-Policy: same-origin`, so its own forms always carry one).
   "This host" is the request's `Host` header, or `X-Forwarded-Host` set by a reverse proxy that
   rewrites `Host`: a hostile page cannot make a browser send either for another site. The
   scheme is not compared, so TLS ended at a proxy still matches.
2. **A signed double-submit token.** The page sets a random nonce in the `ciwatch_csrf` cookie
   (HttpOnly, SameSite=Strict) and writes `nonce.HMAC-SHA256(secret, nonce)` in each form's
   hidden `csrf` field; a POST must carry a field whose nonce equals the cookie's and whose
   signature verifies. Another site can neither read the cookie nor sign a nonce of its own.
   The secret is drawn when the app starts (`app.state.csrf_secret`): after a restart, or on a
   replica that did not render the form, the form is refused until the page is reloaded.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

COOKIE = "ciwatch_csrf"
FIELD = "csrf"
_NONCE_BYTES = 32


def _secret(request: Request) -> bytes:
    state = request.app.state
    secret = getattr(state, "csrf_secret", None)
    if not isinstance(secret, bytes):
        secret = secrets.token_bytes(32)
        state.csrf_secret = secret
    return secret


def _sign(request: Request, nonce: str) -> str:
    return hmac.new(_secret(request), nonce.encode("ascii"), hashlib.sha256).hexdigest()


def _cookie_nonce(request: Request) -> str | None:
    nonce = request.cookies.get(COOKIE, "")
    # token_urlsafe(32) is 43 characters of [A-Za-z0-9_-]; anything else was not set by us.
    if len(nonce) == 43 and all(c.isascii() and (c.isalnum() or c in "-_") for c in nonce):
        return nonce
    return None


def form_token(request: Request) -> tuple[str, str | None]:
    """(the token for this page's forms, a new nonce to set as the cookie or None when the
    request's cookie is kept)."""
    nonce = _cookie_nonce(request)
    fresh = None
    if nonce is None:
        nonce = fresh = secrets.token_urlsafe(_NONCE_BYTES)
    return f"{nonce}.{_sign(request, nonce)}", fresh


def set_cookie(request: Request, response: Response, nonce: str | None) -> None:
    """Set the nonce cookie on `response` (when `form_token` made a new one)."""
    if nonce is None:
        return
    response.set_cookie(
        COOKIE,
        nonce,
        path=request.scope.get("root_path", "") or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _hosts(request: Request) -> set[str]:
    names = {request.headers.get("host", "")}
    forwarded = request.headers.get("x-forwarded-host")
    if forwarded:
        names.add(forwarded.split(",")[0])
    return {name.strip().lower() for name in names if name.strip()}


def _netloc(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return parts.netloc.lower()


def cross_origin(request: Request) -> str | None:
    """Why the request does not come from this site's own pages, or None when it does."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site.lower() not in ("same-origin", "none"):
        return f"the browser says the request came from another site (Sec-Fetch-Site: {fetch_site})"
    hosts = _hosts(request)
    origin = request.headers.get("origin")
    if origin is not None:
        if _netloc(origin) not in hosts:
            return f"the request came from another origin ({origin})"
        return None
    referer = request.headers.get("referer")
    if referer is None:
        return "the request carries neither Origin nor Referer"
    if _netloc(referer) not in hosts:
        return "the request came from a page of another site (Referer)"
    return None


def bad_token(request: Request, submitted: str | None) -> str | None:
    """Why the form's `csrf` field does not match the cookie, or None when it does."""
    nonce = _cookie_nonce(request)
    if nonce is None:
        return "the form's session cookie is missing: reload the page and try again"
    if not submitted:
        return "the form carries no token: reload the page and try again"
    given, _, signature = submitted.partition(".")
    if not hmac.compare_digest(given.encode(), nonce.encode()) or not hmac.compare_digest(
        signature.encode(), _sign(request, nonce).encode()
    ):
        return "the form's token does not match: reload the page and try again"
    return None

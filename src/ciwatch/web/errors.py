"""The error object of the HTTP contract (docs/architecture.md#http-and-dashboard): `{"error":
"...", "detail": ...}`.

Every error answer goes through here: `ApiError` raised by handlers, Starlette's HTTP errors
(unknown path 404, 405), FastAPI's validation errors (422, naming each bad field), the store being
unavailable (`StoreError`, 503) and anything unexpected (500, logged, no traceback in the body).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ciwatch.errors import StoreError
from ciwatch.validation import loggable

log = logging.getLogger(__name__)

STORE_UNAVAILABLE = "store unavailable"
STORE_DETAIL = "the database did not answer; the server log has the reason"


class ErrorModel(BaseModel):
    """The body of every error answer."""

    error: str = Field(description="What went wrong, in a few words.")
    detail: Any = Field(
        None,
        description=(
            "More about it: a string, null, an object, or for 422 a list of "
            "{field, in, message} naming each bad field."
        ),
    )


class ApiError(Exception):
    """An error answer: status code, the `error` words, `detail`, and extra headers."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})


def error_response(
    status: int, error: str, detail: Any = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """A JSON answer carrying the error object."""
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the error object for `codes`."""
    return {code: {"model": ErrorModel, "description": HTTPStatus(code).phrase} for code in codes}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


def _field(loc: Sequence[Any]) -> tuple[str, str]:
    """(field name, where) from a pydantic error location such as ('query', 'limit')."""
    if not loc:
        return "request", "request"
    where = str(loc[0])
    if where == "query" and len(loc) > 1:
        # A repeatable parameter (`project=a&project=b`) names the parameter, not the value.
        return str(loc[1]), where
    if where in ("query", "path", "body", "header", "cookie"):
        return ".".join(str(part) for part in loc[1:]) or where, where
    return ".".join(str(part) for part in loc), "request"


def validation_detail(errors: Sequence[Any]) -> list[dict[str, str]]:
    """One {field, in, message} per problem in a FastAPI validation error."""
    detail = []
    for item in errors:
        name, where = _field(item.get("loc", ()))
        detail.append({"field": name, "in": where, "message": str(item.get("msg", "invalid"))})
    return detail


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.error, exc.detail, exc.headers)


# Paths whose clients are programs: their 404 stays the JSON error object whatever they accept.
MACHINE_PATHS = ("/api/", "/hooks/", "/metrics", "/cc.xml", "/openapi.json", "/healthz", "/readyz")


def _root(request: Request) -> str:
    """Where the app is mounted (inside a mount, such as /static, `root_path` includes it)."""
    root: str = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    return root


def _wants_html(request: Request) -> bool:
    """A browser asking for a page (its Accept names text/html), not a program."""
    path = request.url.path.removeprefix(_root(request))
    return "text/html" in request.headers.get("accept", "") and not path.startswith(MACHINE_PATHS)


def not_found_page(request: Request) -> HTMLResponse:
    """The 404 a browser gets for an unknown page: HTML with a way back, not raw JSON."""
    root = html.escape(_root(request), quote=True)
    path = html.escape(request.url.path)
    body = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>Not found · ciwatch</title>"
        f'<link rel="stylesheet" href="{root}/static/dashboard.css">'
        '</head><body><main class="page"><section class="card empty-state">'
        f'<p class="big-code">404</p><h1>Nothing at <code>{path}</code></h1>'
        "<p>This address is not a page of ciwatch.</p>"
        f'<p><a class="button primary" href="{root}/">Back to the dashboard</a></p>'
        "</section></main></body></html>\n"
    )
    return HTMLResponse(body, status_code=404)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and exc.detail in (None, "Not Found") and _wants_html(request):
        return not_found_page(request)
    error = _phrase(exc.status_code)
    detail: Any = exc.detail
    if isinstance(detail, str) and detail.lower() == error:
        detail = None
    if exc.status_code == 404 and detail is None:
        detail = f"nothing at {request.url.path}"
    if exc.status_code == 405 and detail is None:
        detail = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, error, detail, exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = validation_detail(exc.errors())
    names = ", ".join(dict.fromkeys(item["field"] for item in detail))
    return error_response(422, f"invalid request: {names}", detail)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    log.warning("%s %s: %s", request.method, loggable(request.url.path), exc)
    return error_response(503, STORE_UNAVAILABLE, STORE_DETAIL)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("%s %s failed", request.method, loggable(request.url.path), exc_info=exc)
    return error_response(500, "internal error", None)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error of `app` with the error object."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StoreError, _store_error)
    app.add_exception_handler(Exception, _unexpected)

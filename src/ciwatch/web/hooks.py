"""Webhook receivers: `POST /hooks/{kind}/{source}`, one path per registered provider kind that
has a webhook handler (docs/architecture.md#collection, #extension-points).

This module knows no CI system: it finds the source, reads the body within its limit and hands
the delivery to the kind's `WebhookHandler` (`ProviderSpec.webhook`, in the provider's module),
then stores what the handler returned. Every request is checked in this order, and nothing is
stored from a rejected one: unknown source (404) → body over the size limit (413) → secret or
signature (401) → content type (415) → event (202 "ignored" with the reason) → payload (400
naming the problem: not JSON, nested deeper than `validation.MAX_DEPTH`, the wrong shape) →
values (422 naming each field outside the limits of `ciwatch.validation`) → a project, ref or
workflow the source does not watch (202 "ignored" naming why; `providers.watch`, the pollers'
own decision) → stored (202 "accepted", or "duplicate" for a replayed delivery). Secrets are
compared in constant time. The steps from the secret to the watch decision are the handler's
(`providers/hooks.py`).

202 "accepted" is sent only after what the delivery carried is committed in the store (see
`ciwatch.ingest`); a store failure is 503 and the delivery is not recorded, so the sender's
retry is stored rather than called a duplicate.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ciwatch.config.base import BaseSource
from ciwatch.errors import BadPayload, StoreError
from ciwatch.ingest import Ingest
from ciwatch.providers.hooks import (
    Acknowledged,
    HookRequest,
    Ignored,
    Rejected,
    Store,
    WebhookHandler,
)
from ciwatch.providers.registry import SPECS
from ciwatch.runtime import Runtime
from ciwatch.validation import Invalid, TooDeep, check_delivery, loggable
from ciwatch.web.errors import error_responses

__all__ = ["MAX_BODY", "Rejected", "ingest_of", "read_body", "router"]

log = logging.getLogger("ciwatch.hooks")

MAX_BODY = 5 * 1024 * 1024
STORE_DOWN = "the delivery was not stored; retry it later"

router = APIRouter(
    prefix="/hooks",
    tags=["webhooks"],
    responses=error_responses(400, 401, 404, 413, 415, 422, 503),
)
# The receivers read the raw body (signatures are over its bytes): documented, not parsed here.
JSON_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


def answer(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(status_code=status, content=body)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def ingest_of(request: Request) -> Ingest:
    """The runtime's ingest service (the composition root owns it: `Runtime.ingest`)."""
    return _runtime(request).ingest


def _source(request: Request, name: str, kind: str) -> BaseSource:
    for source in _runtime(request).settings.sources:
        if source.name == name and source.type == kind:
            return source
    raise Rejected(404, "unknown_source", f"no {kind} source named {name!r}")


async def read_body(request: Request, limit: int = MAX_BODY) -> bytes:
    """The raw body, refusing (413) past `limit` without reading it all into memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Rejected(413, "too_large", f"body of {declared} bytes is over the {limit} limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Rejected(413, "too_large", f"body is over the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def _store_once(request: Request, source: str, stored: Store) -> dict[str, Any]:
    """Store a delivery unless it was stored before; its answer once it is committed."""
    run, jobs = stored.run, list(stored.jobs)
    check_delivery(run, jobs, _runtime(request).clock.now())
    ingest = ingest_of(request)
    if ingest.deliveries.seen(source, stored.delivery):
        return {"status": "duplicate", "delivery": stored.delivery}
    if stored.store is not None:
        changed = await stored.store(ingest)
    else:
        changed = await ingest.store(run, jobs)
    ingest.deliveries.stored(source, stored.delivery)
    if stored.after is not None:
        stored.after(ingest, changed)
    return {
        "status": "accepted",
        "delivery": stored.delivery,
        "changed": changed,
        "run": None if run is None else {"project": run.project, "run_id": run.run_id},
        "jobs": len(jobs),
    }


async def _work(request: Request, handler: WebhookHandler, kind: str, name: str) -> dict[str, Any]:
    settings = _source(request, name, kind)
    body = await read_body(request)
    hook = HookRequest(
        source=settings,
        headers=request.headers,
        query=request.query_params,
        body=body,
        received=_runtime(request).clock.now(),
    )
    result = handler.handle(hook)
    if isinstance(result, Ignored):
        return {"status": "ignored", "reason": result.reason}
    if isinstance(result, Acknowledged):
        return {"status": "accepted", "reason": result.reason}
    return await _store_once(request, settings.name, result)


async def receive(request: Request, handler: WebhookHandler, kind: str, name: str) -> JSONResponse:
    """One delivery to the `kind` source `name`: the answer and the metrics result."""
    runtime = _runtime(request)
    try:
        result = await _work(request, handler, kind, name)
    except Rejected as exc:
        runtime.metrics.webhook(name, exc.result)
        log.info(
            "webhook %s/%s refused (%d): %s", kind, loggable(name), exc.status, loggable(exc.error)
        )
        return answer(exc.status, {"error": exc.error, "detail": exc.detail})
    except (BadPayload, TooDeep) as exc:
        runtime.metrics.webhook(name, "bad_payload")
        return answer(400, {"error": "bad payload", "detail": str(exc)})
    except Invalid as exc:
        runtime.metrics.webhook(name, "bad_payload")
        log.info("webhook %s/%s refused (422): %s", kind, loggable(name), loggable(exc))
        return answer(422, {"error": f"invalid payload: {exc.fields}", "detail": exc.detail()})
    except StoreError as exc:
        runtime.metrics.webhook(name, "store_error")
        # The reason names the database: it goes to the log, not to the sender.
        log.error("webhook %s/%s not stored: %s", kind, loggable(name), exc)
        return answer(503, {"error": "store unavailable", "detail": STORE_DOWN})
    runtime.metrics.webhook(name, result["status"])
    return answer(202, result)


def _route(kind: str, handler: WebhookHandler) -> None:
    async def endpoint(source: str, request: Request) -> JSONResponse:
        return await receive(request, handler, kind, source)

    router.add_api_route(
        f"/{kind}/{{source}}",
        endpoint,
        methods=["POST"],
        status_code=202,
        name=f"{kind}_hook",
        summary=handler.summary,
        description=f"Events read: {', '.join(handler.events)}.",
        openapi_extra=JSON_BODY,
    )


# One path per registered kind with a webhook handler, all served by `receive`.
for _spec in SPECS:
    if _spec.webhook is not None:
        _route(_spec.kind, _spec.webhook)

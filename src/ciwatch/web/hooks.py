"""Webhook receivers: `POST /hooks/{gitlab,github,jenkins}/{source}`
(docs/architecture.md#collection).

Every request is checked in this order, and nothing is stored from a rejected one:
unknown source (404) → body over the size limit (413) → secret or signature (401) → content
type (415) → event (202 "ignored" with the reason) → payload (400 naming the problem: not JSON,
nested deeper than `validation.MAX_DEPTH`, the wrong shape) → values (422 naming each field outside
the limits of `ciwatch.validation`) → a project, ref or workflow the source does not watch (202
"ignored" naming why; `providers.watch`, the pollers' own decision) → stored (202 "accepted", or
"duplicate" for a replayed delivery). Secrets are compared in constant time.

202 "accepted" is sent only after what the delivery carried is committed in the store (see
`ciwatch.ingest`); a store failure is 503 and the delivery is not recorded, so the sender's
retry is stored rather than called a duplicate.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ciwatch.config import SourceSettings
from ciwatch.domain import Job, Run
from ciwatch.errors import BadPayload, StoreError
from ciwatch.ingest import Ingest
from ciwatch.providers import github, gitlab, jenkins, watch
from ciwatch.runtime import Runtime
from ciwatch.validation import Invalid, TooDeep, check_delivery, loggable, parsed
from ciwatch.web.errors import error_responses

log = logging.getLogger("ciwatch.hooks")

MAX_BODY = 5 * 1024 * 1024
STORE_DOWN = "the delivery was not stored; retry it later"
GITLAB_EVENTS = ("Pipeline Hook", "Job Hook")
GITHUB_EVENTS = ("workflow_run", "workflow_job")

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


class Rejected(Exception):
    """A request refused with an HTTP status, a result for the metrics and a reason."""

    def __init__(self, status: int, result: str, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status, self.result, self.error, self.detail = status, result, error, detail


def answer(status: int, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(status_code=status, content=body)


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def ingest_of(request: Request) -> Ingest:
    """The runtime's ingest service (the composition root owns it: `Runtime.ingest`)."""
    return _runtime(request).ingest


def _source(request: Request, name: str, kind: str) -> SourceSettings:
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


def _require_secret(source: SourceSettings) -> bytes:
    if not source.webhook_secret:
        raise Rejected(
            401,
            "rejected_signature",
            f"source {source.name!r} has no webhook_secret: webhooks are refused",
        )
    return source.webhook_secret.encode()


def _check_token(source: SourceSettings, given: str | None) -> None:
    secret = _require_secret(source)
    if given is None or not hmac.compare_digest(given.encode(), secret):
        raise Rejected(401, "rejected_signature", "missing or wrong token")


def _json_content(request: Request) -> None:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise Rejected(415, "bad_payload", f"content type {kind!r} is not application/json")


async def _handle(
    request: Request, name: str, kind: str, work: Callable[[SourceSettings, bytes], Any]
) -> JSONResponse:
    runtime = _runtime(request)
    try:
        source = _source(request, name, kind)
        body = await read_body(request)
        result: dict[str, Any] = await work(source, body)
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


def _ignored(reason: str) -> dict[str, Any]:
    """The answer to a delivery the source does not watch: nothing is stored."""
    return {"status": "ignored", "reason": reason}


def _delivery(request: Request, *headers: str, body: bytes) -> str:
    for header in headers:
        value = request.headers.get(header)
        if value:
            return value
    return "sha256:" + hashlib.sha256(body).hexdigest()


async def _store_once(
    request: Request,
    source: str,
    delivery: str,
    run: Run | None,
    jobs: list[Job],
    store: Callable[[], Awaitable[bool]] | None = None,
) -> dict[str, Any]:
    """Store a delivery unless it was stored before; its answer once it is committed. `store`
    (default: upsert `run` and `jobs`) returns whether the run changed."""
    check_delivery(run, jobs, _runtime(request).clock.now())
    ingest = ingest_of(request)
    if ingest.deliveries.seen(source, delivery):
        return {"status": "duplicate", "delivery": delivery}
    changed = await (store() if store is not None else ingest.store(run, jobs))
    ingest.deliveries.stored(source, delivery)
    return {
        "status": "accepted",
        "delivery": delivery,
        "changed": changed,
        "run": None if run is None else {"project": run.project, "run_id": run.run_id},
        "jobs": len(jobs),
    }


# -- GitLab -----------------------------------------------------------------------------------


@router.post(
    "/gitlab/{source}",
    status_code=202,
    summary="GitLab Pipeline and Job Hooks",
    openapi_extra=JSON_BODY,
)
async def gitlab_hook(source: str, request: Request) -> JSONResponse:
    async def work(settings: SourceSettings, body: bytes) -> dict[str, Any]:
        _check_token(settings, request.headers.get("x-gitlab-token"))
        event = request.headers.get("x-gitlab-event", "")
        if event not in GITLAB_EVENTS:
            return {"status": "ignored", "reason": f"event {event!r} is not used by ciwatch"}
        _json_content(request)
        delivery = _delivery(request, "idempotency-key", "x-gitlab-event-uuid", body=body)
        if event == "Pipeline Hook":
            run, jobs = parsed(gitlab.parse_pipeline_hook, settings.name, body)
            if (reason := watch.unwatched(settings, run.project, run.ref)) is not None:
                return _ignored(reason)
            return await _store_once(request, settings.name, delivery, run, jobs)
        job = parsed(gitlab.parse_job_hook, settings.name, body, str(settings.url))
        ref = watch.gitlab_job_scope(body)
        if (reason := watch.unwatched(settings, job.project, ref)) is not None:
            return _ignored(reason)
        return await _store_once(request, settings.name, delivery, None, [job])

    return await _handle(request, source, "gitlab", work)


# -- GitHub -----------------------------------------------------------------------------------


def github_signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """`X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, compared in constant
    time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header[len("sha256=") :].strip().encode())


def _github_payload(request: Request, body: bytes) -> bytes:
    """GitHub sends JSON, or a form with the JSON in `payload` when so configured."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        values = parse_qs(body.decode("utf-8", "replace")).get("payload")
        if not values:
            raise BadPayload("GitHub webhook: form body without a `payload` field")
        return values[0].encode()
    _json_content(request)
    return body


@router.post(
    "/github/{source}",
    status_code=202,
    summary="GitHub workflow_run and workflow_job",
    openapi_extra=JSON_BODY,
)
async def github_hook(source: str, request: Request) -> JSONResponse:
    async def work(settings: SourceSettings, body: bytes) -> dict[str, Any]:
        secret = _require_secret(settings)
        if not github_signature_ok(secret, body, request.headers.get("x-hub-signature-256")):
            raise Rejected(401, "rejected_signature", "missing or wrong X-Hub-Signature-256")
        event = request.headers.get("x-github-event", "")
        if event == "ping":
            return {"status": "accepted", "reason": "ping"}
        if event not in GITHUB_EVENTS:
            return {"status": "ignored", "reason": f"event {event!r} is not used by ciwatch"}
        payload = _github_payload(request, body)
        delivery = _delivery(request, "x-github-delivery", body=body)
        if event == "workflow_run":
            run = parsed(github.parse_workflow_run_event, settings.name, payload)
            reason = watch.unwatched(settings, run.project, run.ref, run.workflow)
            if reason is not None:
                return _ignored(reason)
            result = await _store_once(request, settings.name, delivery, run, [])
            if result["status"] == "accepted" and result["changed"]:
                ingest_of(request).fetch_details_later(run)
            return result
        job = parsed(github.parse_workflow_job_event, settings.name, payload)
        ref, workflow = watch.github_job_scope(payload)
        if (reason := watch.unwatched(settings, job.project, ref, workflow)) is not None:
            return _ignored(reason)
        result = await _store_once(request, settings.name, delivery, None, [job])
        if result["status"] == "accepted":
            ingest_of(request).fetch_run_of_job_later(job)
        return result

    return await _handle(request, source, "github", work)


# -- Jenkins ----------------------------------------------------------------------------------


JENKINS_XML = "the Notification plugin's XML format is not read: set the endpoint's Format to JSON"


def _jenkins_token(request: Request) -> str | None:
    """The secret a Jenkins notification presents: `X-Ciwatch-Token`, `?token=`,
    `Authorization: Bearer <secret>`, or HTTP Basic with the secret as the password, which is
    what the Notification plugin sends for credentials in the endpoint URL
    (`https://any-user:<secret>@host/hooks/jenkins/<source>`). Any user name is accepted: the
    secret alone authenticates (the source's `username` is the account ciwatch polls Jenkins
    with, not something Jenkins sends). A user-info without a colon is taken whole. The plugin
    sends the URL's user-info as written, so percent-escapes in it are decoded (`%40` is `@`)."""
    given = request.headers.get("x-ciwatch-token") or request.query_params.get("token")
    if given is not None:
        return given
    scheme, _, value = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, colon, password = decoded.partition(":")
        return unquote(password if colon else user)
    return None


def _jenkins_content(request: Request, body: bytes) -> None:
    """415 for the plugin's XML format (`application/xml`), with a hint naming JSON."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    looks_xml = body.lstrip()[:1] == b"<" and not kind.endswith("json")
    if kind.endswith("/xml") or kind.endswith("+xml") or looks_xml:
        raise Rejected(415, "bad_payload", JENKINS_XML, {"content_type": kind or None})
    _json_content(request)


@router.post(
    "/jenkins/{source}",
    status_code=202,
    summary="Jenkins Notification plugin",
    openapi_extra=JSON_BODY,
)
async def jenkins_hook(source: str, request: Request) -> JSONResponse:
    async def work(settings: SourceSettings, body: bytes) -> dict[str, Any]:
        _check_token(settings, _jenkins_token(request))
        _jenkins_content(request, body)
        received = _runtime(request).clock.now()
        run, dated = parsed(jenkins.parse_notification_dated, settings.name, body, received)
        if (reason := watch.unwatched(settings, run.project, run.ref)) is not None:
            return _ignored(reason)
        delivery = _delivery(request, "idempotency-key", body=body)
        ingest = ingest_of(request)
        return await _store_once(
            request,
            settings.name,
            delivery,
            run,
            [],
            lambda: ingest.store_jenkins(run, dated=dated),
        )

    return await _handle(request, source, "jenkins", work)

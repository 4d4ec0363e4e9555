"""`POST /api/v1/report`: any CI step reports a run (docs/architecture.md#http-and-dashboard), with
the server's bearer token.

The body is JSON, or a form (`application/x-www-form-urlencoded`, what `curl --data-urlencode`
sends) with the same fields: `form_report` turns it into the dict the JSON body gives.

The body is one run object: `project`, `run_id` and `status` are required, every other field of
the model is optional, `source` defaults to `push`. The answer is 202 with the stored run, sent
once the run is committed in the store; a store failure is 503 (the reason goes to the log).
Reports of the same run are ordered like any other update: a later `updated_at` (default: when
the report arrived) and a further status win, so `running` then `success` reports converge.

Every field is held to the limits of `ciwatch.validation` (stated in the model below, so the
OpenAPI document shows them, and checked again on the run): a body nested deeper than
`validation.MAX_DEPTH` or a value outside them is 422 naming the field, and nothing is stored.
"""

from __future__ import annotations

import hmac
import json
import logging
from datetime import datetime
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import InitErrorDetails

from ciwatch.domain import Run, Status
from ciwatch.errors import StoreError
from ciwatch.runtime import Runtime
from ciwatch.serialize import run_to_dict
from ciwatch.timeutil import parse_time, seconds_between
from ciwatch.validation import (
    INT64_MAX,
    INT64_MIN,
    LIMITS,
    MAX_ATTEMPT,
    MAX_SECONDS,
    NO_CONTROL_PATTERN,
    NO_NUL_PATTERN,
    Invalid,
    check_run,
    json_depth_over,
    loggable,
)
from ciwatch.web.errors import error_responses
from ciwatch.web.hooks import Rejected, read_body

log = logging.getLogger("ciwatch.report")

router = APIRouter(prefix="/api/v1", tags=["report"])

MAX_REPORT = 256 * 1024


def _identifier(name: str) -> Any:
    return Field(None, max_length=LIMITS[name], pattern=NO_CONTROL_PATTERN)


def _text(name: str) -> Any:
    return Field(None, max_length=LIMITS[name], pattern=NO_NUL_PATTERN)


def _time() -> Any:
    return Field(None, description="ISO 8601, from 1970-01-01 to a day past the server's clock.")


class ReportIn(BaseModel):
    """A run reported by a CI step. Times are ISO 8601 (an offset or `Z`; none means UTC)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    project: str = Field(min_length=1, max_length=LIMITS["project"], pattern=NO_CONTROL_PATTERN)
    run_id: str = Field(min_length=1, max_length=LIMITS["run_id"], pattern=NO_CONTROL_PATTERN)
    status: Status
    source: str = Field(
        "push", min_length=1, max_length=LIMITS["source"], pattern=r"^[a-z0-9][a-z0-9_.-]*$"
    )
    number: int | None = Field(None, ge=INT64_MIN, le=INT64_MAX)
    workflow: str | None = _identifier("workflow")
    ref: str | None = _identifier("ref")
    sha: str | None = _identifier("sha")
    event: str | None = _identifier("event")
    provider_status: str | None = _text("provider_status")
    created_at: datetime | None = _time()
    started_at: datetime | None = _time()
    finished_at: datetime | None = _time()
    updated_at: datetime | None = _time()
    duration_seconds: float | None = Field(None, ge=0, le=MAX_SECONDS, allow_inf_nan=False)
    queued_seconds: float | None = Field(None, ge=0, le=MAX_SECONDS, allow_inf_nan=False)
    url: str | None = _identifier("url")
    author: str | None = _text("author")
    attempt: int = Field(1, ge=1, le=MAX_ATTEMPT)

    @field_validator("created_at", "started_at", "finished_at", "updated_at", mode="before")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        return parse_time(value) if isinstance(value, str | int | float) else value

    def to_run(self, now: datetime) -> Run:
        started = _utc(self.started_at)
        finished = _utc(self.finished_at)
        duration = self.duration_seconds
        if duration is None:
            duration = seconds_between(started, finished)
        return Run(
            source=self.source,
            provider="push",
            project=self.project,
            run_id=self.run_id,
            status=self.status,
            updated_at=_utc(self.updated_at) or now,
            number=self.number,
            workflow=self.workflow,
            ref=self.ref,
            sha=self.sha,
            event=self.event,
            provider_status=self.provider_status or self.status.value,
            created_at=_utc(self.created_at) or started or now,
            started_at=started,
            finished_at=finished,
            duration_seconds=duration,
            queued_seconds=self.queued_seconds,
            url=self.url,
            author=self.author,
            attempt=self.attempt,
        )


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else parse_time(value)


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its `$defs` put in place of their `$ref`s: the OpenAPI document holds
    it inline, where `#/$defs/...` would not resolve."""
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.removeprefix("#/$defs/")])
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    inlined: dict[str, Any] = walk(schema)
    return inlined


def _error(status: int, error: str, detail: Any = None, **headers: str) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": error, "detail": detail}, headers=headers
    )


@router.post(
    "/report",
    status_code=202,
    summary="Report a run from any CI step",
    responses={
        202: {"description": "Stored: the run as the store now holds it."},
        **error_responses(401, 413, 422, 503),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _inline(ReportIn.model_json_schema())}},
        }
    },
)
async def report(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    token = runtime.settings.server.report_token
    given = request.headers.get("authorization", "")
    if not token:
        return _error(401, "reports are disabled: set server.report_token")
    if not given.lower().startswith("bearer ") or not hmac.compare_digest(
        given[7:].strip().encode(), token.encode()
    ):
        runtime.metrics.webhook("push", "rejected_signature")
        return _error(401, "missing or wrong bearer token", None, **{"WWW-Authenticate": "Bearer"})
    try:  # refused at the declared length, or once past the limit: never read in whole
        body = await read_body(request, MAX_REPORT)
    except Rejected:
        return _error(413, f"report over {MAX_REPORT} bytes")
    if json_depth_over(body):
        runtime.metrics.webhook("push", "bad_payload")
        problem = {"field": "body", "problem": "JSON nested too deep"}
        return _error(422, "invalid report: body", [problem])
    try:
        report_in = _parse(request.headers.get("content-type"), body)
    except ValidationError as exc:
        runtime.metrics.webhook("push", "bad_payload")
        problems = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "problem": err["msg"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        fields = ", ".join(p["field"] for p in problems)
        return _error(422, f"invalid report: {fields}", problems)
    now = runtime.clock.now()
    try:
        run = report_in.to_run(now)
        check_run(run, now)
    except Invalid as exc:
        runtime.metrics.webhook("push", "bad_payload")
        return _error(422, f"invalid report: {exc.fields}", exc.detail())
    except ValueError as exc:
        runtime.metrics.webhook("push", "bad_payload")
        return _error(422, "invalid report", str(exc))
    try:
        await runtime.store.upsert_run(run)
    except StoreError as exc:
        runtime.metrics.webhook("push", "store_error")
        # The reason names the database: it goes to the log, not to the reporter.
        log.error(
            "report of %s/%s #%s not stored: %s",
            *(loggable(part) for part in run.key),
            exc,
        )
        return _error(503, "store unavailable", "the report was not stored; retry it later")
    runtime.metrics.webhook("push", "accepted")
    try:
        stored = await runtime.store.get_run(run.key)
    except StoreError as exc:  # committed already: the answer is still 202, with the report
        log.warning(
            "report of %s/%s #%s stored, not read back: %s",
            *(loggable(part) for part in run.key),
            exc,
        )
        stored = None
    return JSONResponse(status_code=202, content=run_to_dict(stored or run))


FORM = "application/x-www-form-urlencoded"


def _parse(content_type: str | None, body: bytes) -> ReportIn:
    """The report in a JSON body or in a form. A body that starts with `{` is JSON whatever its
    content type: `curl -d '{...}'` without `-H 'Content-Type: ...'` labels JSON as a form."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == FORM and not body.lstrip().startswith(b"{"):
        return ReportIn.model_validate(form_report(body))
    return ReportIn.model_validate_json(body)


def form_report(body: bytes) -> dict[str, Any]:
    """A form body as the dict the same report in JSON gives: names and values decoded as UTF-8,
    an empty value left out (an absent field), and a field that is a number or a boolean in the
    JSON schema converted from its text when the text is one (else left for the validation to
    name). Undecodable text or a field given twice: ValidationError naming the field."""
    values: dict[str, list[str]] = {}
    errors: list[InitErrorDetails] = []
    for pair in body.split(b"&"):
        if not pair.strip():
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        try:
            name = _form_text(raw_name)
        except UnicodeDecodeError:
            errors.append({"type": "string_unicode", "loc": ("body",), "input": raw_name})
            continue
        try:
            value = _form_text(raw_value)
        except UnicodeDecodeError:
            errors.append({"type": "string_unicode", "loc": (name,), "input": raw_value})
            continue
        values.setdefault(name, []).append(value)
    fields: dict[str, Any] = {}
    for name, given in values.items():
        present = [value for value in given if value != ""]
        if len(present) > 1:
            errors.append(
                {"type": "value_error", "loc": (name,), "input": present, "ctx": {"error": _TWICE}}
            )
        elif present:
            fields[name] = _typed(name, present[0])
    if errors:
        raise ValidationError.from_exception_data(ReportIn.__name__, errors)
    return fields


_TWICE = ValueError("given more than once")


def _form_text(raw: bytes) -> str:
    """One form name or value: `+` is a space, `%XX` a byte, the bytes UTF-8."""
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")


def _json_types() -> dict[str, set[str]]:
    """Each field's JSON types in the report's schema (`integer`, `number`, `boolean`, ...)."""
    types: dict[str, set[str]] = {}
    for name, schema in ReportIn.model_json_schema().get("properties", {}).items():
        options = schema.get("anyOf", [schema])
        types[name] = {option["type"] for option in options if "type" in option}
    return types


_TYPES = _json_types()


def _typed(name: str, text: str) -> Any:
    """The form text as JSON would have it where the schema says number or boolean."""
    types = _TYPES.get(name, set())
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if types & {"integer", "number"}:
        try:
            number = json.loads(text)
        except ValueError:
            return text
        if isinstance(number, int | float) and not isinstance(number, bool):
            return number
    return text


def _form_in_openapi() -> None:
    """The OpenAPI document gives the form body beside the JSON one, with the same schema."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.endpoint is report and route.openapi_extra:
            content = route.openapi_extra["requestBody"]["content"]
            content[FORM] = {"schema": content["application/json"]["schema"]}


_form_in_openapi()

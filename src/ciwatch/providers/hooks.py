"""The webhook extension point: what `POST /hooks/{kind}/{source}` asks of a provider, without
the web framework (docs/architecture.md#extension-points).

`web/hooks.py` finds the source (404) and reads the body within its limit (413), then calls the
kind's `WebhookHandler.handle` with a `HookRequest`. The handler, in this order: authenticates
(raising `Rejected(401, ...)`), checks the content type (`Rejected(415, ...)`), picks the event
(an event it does not read is `Ignored`), parses the payload (raising `BadPayload` / `TooDeep`
for 400, `Invalid` for 422: wrap vendor parsers in `ciwatch.validation.parsed`), decides whether
the source watches it (`providers.watch.unwatched`, else `Ignored`), and returns a `Store`
naming the delivery id, the run and jobs, how to store them and what to do after. The route
then checks the values (422), stores once per delivery id and answers 202 "accepted" (or
"duplicate") only after the store committed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ciwatch.domain import Job, Run

if TYPE_CHECKING:
    from ciwatch.config.base import BaseSource
    from ciwatch.ingest import Ingest


class Rejected(Exception):
    """A request refused with an HTTP status, a result for the metrics
    (`ciwatch_webhooks_total{result}`) and a reason (`error`, with an optional `detail`)."""

    def __init__(self, status: int, result: str, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status, self.result, self.error, self.detail = status, result, error, detail


@dataclass(frozen=True, slots=True)
class HookRequest:
    """One delivery as a handler sees it. `headers` is case-insensitive (lower-case keys work);
    `body` is the raw bytes (signatures are over them); `received` is when it arrived (UTC)."""

    source: BaseSource
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    received: datetime

    @property
    def content_type(self) -> str:
        """The media type, lower-cased, without parameters ("" when absent)."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def delivery(self, *headers: str, body: bytes | None = None) -> str:
        """The delivery id: the first of `headers` present, else the SHA-256 of the body."""
        for header in headers:
            value = self.headers.get(header)
            if value:
                return value
        return "sha256:" + hashlib.sha256(self.body if body is None else body).hexdigest()


@dataclass(frozen=True, slots=True)
class Ignored:
    """Nothing is stored: an event the provider does not read, or a project, ref or workflow
    the source does not watch. Answered 202 `{"status": "ignored", "reason": ...}`."""

    reason: str


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """Nothing to store, and nothing wrong (GitHub's `ping`): 202
    `{"status": "accepted", "reason": ...}`."""

    reason: str


StoreFn = Callable[["Ingest"], Awaitable[bool]]
AfterFn = Callable[["Ingest", bool], None]


@dataclass(frozen=True, slots=True)
class Store:
    """What to store from a delivery. `store` (default: `ingest.store(run, jobs)`) returns
    whether the run changed; `after(ingest, changed)` runs once the delivery was stored for
    the first time (follow-ups such as `ingest.fetch_details_later(run)`)."""

    delivery: str
    run: Run | None
    jobs: Sequence[Job] = field(default_factory=tuple)
    store: StoreFn | None = None
    after: AfterFn | None = None


HookResult = Ignored | Acknowledged | Store


class WebhookHandler(Protocol):
    """One provider's webhook receiver. `events` names the events it reads (as the vendor spells
    them, for the docs and the OpenAPI summary); `summary` is the OpenAPI summary."""

    @property
    def events(self) -> tuple[str, ...]: ...

    @property
    def summary(self) -> str: ...

    def handle(self, request: HookRequest) -> HookResult: ...


# -- shared checks ----------------------------------------------------------------------------


def require_secret(source: BaseSource) -> bytes:
    """The source's `webhook_secret`, or 401: a source without one refuses webhooks."""
    if not source.webhook_secret:
        raise Rejected(
            401,
            "rejected_signature",
            f"source {source.name!r} has no webhook_secret: webhooks are refused",
        )
    return source.webhook_secret.encode()


def check_token(source: BaseSource, given: str | None) -> None:
    """401 unless `given` is the source's `webhook_secret` (compared in constant time)."""
    secret = require_secret(source)
    if given is None or not hmac.compare_digest(given.encode(), secret):
        raise Rejected(401, "rejected_signature", "missing or wrong token")


def require_json(request: HookRequest) -> None:
    """415 unless the content type is absent, `application/json` or `*+json`."""
    kind = request.content_type
    if kind and kind != "application/json" and not kind.endswith("+json"):
        raise Rejected(415, "bad_payload", f"content type {kind!r} is not application/json")


def not_read(event: str) -> Ignored:
    """The answer to an event the provider does not read."""
    return Ignored(f"event {event!r} is not used by ciwatch")

"""A JSON event POSTed to any URL (docs/channels.md has the schema).

With a `secret`, `X-Ciwatch-Signature-256: sha256=<hex>` carries the HMAC-SHA256 of the exact
body bytes, keyed with the secret, so the receiver can check where the event came from.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

import aiohttp

from ciwatch.channels.base import Delivery, Message, Notice
from ciwatch.channels.render import PLAIN, render_title, safe_url, start_sentence
from ciwatch.channels.spec import EXAMPLE_SECRET, ChannelSpec
from ciwatch.channels.transport import Answer, HttpSender
from ciwatch.config.models import WebhookChannel
from ciwatch.serialize import commit_range_to_dict, run_to_dict

SCHEMA_VERSION = 1
SIGNATURE_HEADER = "X-Ciwatch-Signature-256"
EVENT_HEADER = "X-Ciwatch-Event"


def signature(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=` and the hex HMAC-SHA256 of `body`."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def event(notice: Notice) -> dict[str, Any]:
    """One notice as a JSON event (without `version`)."""
    run = notice.run
    return {
        "event": notice.kind,
        "fingerprint": notice.fingerprint,
        "source": notice.source,
        "project": notice.project,
        "ref": notice.ref,
        "run": run_to_dict(run) if run is not None else None,
        "failing_jobs": list(notice.failing_jobs),
        "red_for_seconds": notice.red_for.total_seconds() if notice.red_for is not None else None,
        "flaky": notice.flaky,
        "likely_flaky": notice.likely_flaky,
        "at_start": notice.at_start,
        "detail": notice.detail,
        "green_sha": notice.green_sha,
        "commit_range": (
            commit_range_to_dict(notice.commit_range) if notice.commit_range is not None else None
        ),
        "people": [asdict(person) for person in notice.people],
        "links": {
            "run": safe_url(run.url) if run is not None else None,
            "dashboard": safe_url(notice.dashboard_url),
        },
    }


def summary(message: Message) -> str:
    """The `summary` of the body: the title; for a start summary, the sentence naming the
    refs (`5 refs were already failing when ciwatch started: group/app main, ...`)."""
    return PLAIN.parts(start_sentence(message)) if message.at_start else render_title(message)


def document(message: Message) -> dict[str, Any]:
    """The body: one event with `version`, or `{"version", "group", "summary", "events"}`
    (every event, also those a start summary's text only counts)."""
    if message.grouped:
        return {
            "version": SCHEMA_VERSION,
            "group": message.group,
            "summary": summary(message),
            "events": [event(notice) for notice in message.notices],
        }
    return {
        "version": SCHEMA_VERSION,
        **event(message.notices[0]),
        "summary": summary(message),
    }


def payload(
    settings: WebhookChannel, message: Message, now: datetime | None = None
) -> dict[str, Any]:
    """The JSON body (`document`); the headers and signature are added by the sender."""
    return document(message)


def verdict(answer: Answer, label: str) -> Delivery:
    """The receiver's reply after `check_status`: any 2xx is a delivery."""
    return Delivery(f"HTTP {answer.status}" + (f" {answer.snippet()}" if answer.body else ""))


class WebhookSender(HttpSender[WebhookChannel]):
    """POSTs events to one URL (`WebhookChannel` settings)."""

    kind = "webhook"
    min_interval = 0.0

    def request(self, message: Message) -> tuple[bytes, dict[str, str]]:
        """The body and the headers (the configured ones, then ours, which win)."""
        body = json.dumps(payload(self.settings, message), ensure_ascii=False).encode("utf-8")
        ours = {"content-type", EVENT_HEADER.lower(), SIGNATURE_HEADER.lower()}
        headers = {k: v for k, v in self.settings.headers.items() if k.lower() not in ours}
        headers["Content-Type"] = "application/json"
        headers[EVENT_HEADER] = "group" if message.grouped else message.notices[0].kind
        if self.settings.secret:
            headers[SIGNATURE_HEADER] = signature(self.settings.secret, body)
        return body, headers

    async def send(self, message: Message) -> Delivery:
        body, headers = self.request(message)
        answer = await self.http.post(self.settings.url, body, headers)
        self.http.check_status(answer)
        return verdict(answer, self.http.label)


def _build(settings: WebhookChannel, session: aiohttp.ClientSession | None) -> WebhookSender:
    return WebhookSender(settings, session=session)


SPEC = ChannelSpec(
    kind="webhook",
    title="Webhook",
    settings=WebhookChannel,
    build=_build,
    payload=payload,
    verdict=verdict,
    example={
        "url": f"https://hooks.example.com/ciwatch?token={EXAMPLE_SECRET}",
        "secret": EXAMPLE_SECRET,
        "headers": {"Authorization": f"Bearer {EXAMPLE_SECRET}"},
    },
    secrets=("secret",),
)

"""Slack incoming webhook: Block Kit blocks with a mrkdwn `text` fallback.

Slack answers `200 ok` (a plain-text body) when it took the message; `429` with `Retry-After`
when throttled (about one message a second per webhook); 4xx with a short code in the body
(`invalid_payload`, `no_text`, `no_service`, `channel_not_found`, `channel_is_archived`,
`action_prohibited`, ...) when it never will.
"""

from __future__ import annotations

from typing import Any

from ciwatch.channels.base import Delivery, Message
from ciwatch.channels.render import render_slack_blocks, render_slack_text
from ciwatch.channels.transport import HttpSender, json_body
from ciwatch.config.models import SlackChannel

MIN_INTERVAL = 1.0


class SlackSender(HttpSender[SlackChannel]):
    """Sends to one Slack incoming webhook (`SlackChannel` settings)."""

    kind = "slack"
    min_interval = MIN_INTERVAL

    def payload(self, message: Message) -> dict[str, Any]:
        text, blocks = render_slack_text(message), render_slack_blocks(message)
        # The people of a breaking run (`people:`), as Slack's `<@member id>` mentions: in the
        # notification text and in a block of their own.
        mentions = " ".join(f"<@{p.slack}>" for p in message.people if p.slack)
        if mentions:
            text = f"{text}\ncc {mentions}"
            blocks = [
                *blocks,
                {"type": "section", "text": {"type": "mrkdwn", "text": f"cc {mentions}"}},
            ]
        return {
            "text": text,
            "blocks": blocks,
            "unfurl_links": False,
            "unfurl_media": False,
        }

    async def send(self, message: Message) -> Delivery:
        body = json_body(self.payload(message))
        answer = await self.http.post(self.settings.url, body)
        # 429 and 5xx are retryable (Retry-After honoured); other 4xx carry Slack's reason.
        self.http.check_status(answer)
        return Delivery(f"HTTP {answer.status} {answer.snippet()}")

"""Slack incoming webhook: Block Kit blocks with a mrkdwn `text` fallback.

Slack answers `200 ok` (a plain-text body) when it took the message; `429` with `Retry-After`
when throttled (about one message a second per webhook); 4xx with a short code in the body
(`invalid_payload`, `no_text`, `no_service`, `channel_not_found`, `channel_is_archived`,
`action_prohibited`, ...) when it never will.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp

from ciwatch.channels.base import Delivery, Message
from ciwatch.channels.render import (
    Format,
    as_lines,
    cut,
    escape_robot_text,
    escape_slack,
    facts,
    links,
    listed,
    primary_link,
    render_title,
    start_sentence,
    summary_line,
    title_parts,
)
from ciwatch.channels.spec import EXAMPLE_SECRET, ChannelSpec
from ciwatch.channels.transport import Answer, HttpSender, json_body
from ciwatch.config.models import SlackChannel

MIN_INTERVAL = 1.0
SLACK_HEADER_MAX = 150
SLACK_SECTION_MAX = 3000
SLACK_FIELD_MAX = 2000
SLACK_MAX_FIELDS = 10
SLACK_MAX_LINES = 45  # Slack allows 50 blocks: a header, 45 lines, a context, room to spare

SLACK = Format(
    escape_slack,
    lambda text: text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
    lambda label, url: f"<{url}|{label}>",
    lambda text: f"*{text}*",
)


def render_slack_text(message: Message) -> str:
    """The `text` fallback of a Slack message (notifications, clients without blocks)."""
    if message.at_start:
        return cut(SLACK.parts(start_sentence(message)), SLACK_SECTION_MAX)
    title = SLACK.parts(title_parts(message))
    if message.grouped:
        mixed = len({notice.kind for notice in message.notices}) > 1
        lines = [SLACK.parts(summary_line(n, with_kind=mixed)) for n in message.notices]
        return cut("\n".join([title, *lines]), SLACK_SECTION_MAX)
    link = primary_link(message)
    return f"{title} – <{link}|details>" if link else title


def _plain_text_object(text: str, limit: int) -> dict[str, Any]:
    # plain_text is not parsed for links or mentions; angle brackets still get look-alikes so
    # nothing that looks like Slack syntax reaches a notification.
    return {"type": "plain_text", "text": cut(escape_robot_text(text), limit), "emoji": True}


def _mrkdwn(text: str, limit: int) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": cut(text, limit)}


def render_slack_blocks(message: Message) -> list[dict[str, Any]]:
    """Block Kit blocks: a header, then the facts as fields (one notice) or one section per
    notice (a group, at most 45, then a count of the rest)."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain_text_object(render_title(message), SLACK_HEADER_MAX)}
    ]
    if as_lines(message):
        mixed = len({notice.kind for notice in message.notices}) > 1
        shown = listed(message)[:SLACK_MAX_LINES]
        for notice in shown:
            text = SLACK.parts(summary_line(notice, with_kind=mixed))
            blocks.append({"type": "section", "text": _mrkdwn(text, SLACK_SECTION_MAX)})
        rest = len(message.notices) - len(shown)
        if rest > 0:
            more = f"… and {rest} more"
            blocks.append({"type": "context", "elements": [_mrkdwn(more, SLACK_SECTION_MAX)]})
        return blocks
    notice = message.notices[0]
    fields = [
        _mrkdwn(f"*{fact.label}*\n{SLACK.parts(fact.parts)}", SLACK_FIELD_MAX)
        for fact in facts(notice, message.zone)
    ]
    blocks.append({"type": "section", "fields": fields[:SLACK_MAX_FIELDS]})
    found = links(notice)
    if found:
        text = " · ".join(SLACK.parts([link]) for link in found)
        blocks.append({"type": "section", "text": _mrkdwn(text, SLACK_SECTION_MAX)})
    return blocks


def payload(
    settings: SlackChannel, message: Message, now: datetime | None = None
) -> dict[str, Any]:
    """The JSON body: the blocks, the `text` fallback, and the people mentioned."""
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


def verdict(answer: Answer, label: str) -> Delivery:
    """Slack's reply after `check_status`: any 2xx (`ok`) is a delivery."""
    return Delivery(f"HTTP {answer.status} {answer.snippet()}")


class SlackSender(HttpSender[SlackChannel]):
    """Sends to one Slack incoming webhook (`SlackChannel` settings)."""

    kind = "slack"
    min_interval = MIN_INTERVAL

    def payload(self, message: Message) -> dict[str, Any]:
        return payload(self.settings, message)

    async def send(self, message: Message) -> Delivery:
        body = json_body(self.payload(message))
        answer = await self.http.post(self.settings.url, body)
        # 429 and 5xx are retryable (Retry-After honoured); other 4xx carry Slack's reason.
        self.http.check_status(answer)
        return verdict(answer, self.http.label)


def _build(settings: SlackChannel, session: aiohttp.ClientSession | None) -> SlackSender:
    return SlackSender(settings, session=session)


SPEC = ChannelSpec(
    kind="slack",
    title="Slack",
    settings=SlackChannel,
    build=_build,
    payload=payload,
    verdict=verdict,
    example={"url": f"https://hooks.slack.com/services/T000/B000/{EXAMPLE_SECRET}"},
)

"""WeCom (WeChat Work) group robot: Markdown, or plain text when phone numbers are to be
mentioned.

WeCom's Markdown cannot carry `mentioned_list` / `mentioned_mobile_list`; it mentions users by
`<@userid>` in the content. So: with only `mentioned_list` (user ids) the message stays Markdown
with `<@userid>` appended; with `mentioned_mobile_list` or `@all` it is sent as `text` with both
lists. Content is cut to the robot's byte limits (4096 Markdown, 2048 text) with "… see <link>".
The verdict is the `errcode` in the HTTP-200 body.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiohttp

from ciwatch.channels.base import Delivery, Message
from ciwatch.channels.render import (
    primary_link,
    render_markdown,
    render_robot_text,
    truncate_utf8,
)
from ciwatch.channels.spec import EXAMPLE_SECRET, ChannelSpec
from ciwatch.channels.transport import Answer, HttpSender, errcode_verdict, json_body
from ciwatch.config.models import WeComChannel

MIN_INTERVAL = 3.1  # 20 messages a minute per robot
MARKDOWN_MAX_BYTES = 4096
TEXT_MAX_BYTES = 2048
RATE_LIMITED = 45009
RATE_LIMIT_WAIT = 60.0


def _mention_token(userid: str) -> str:
    return "<@" + userid.replace("<", "").replace(">", "").strip() + ">"


def uses_text(settings: WeComChannel) -> bool:
    """Plain text is needed to mention by phone number, or everyone."""
    return bool(settings.mentioned_mobile_list) or "@all" in settings.mentioned_list


def markdown(message: Message) -> str:
    """The message in WeCom's Markdown (a new line at every newline)."""
    return render_markdown(message, line_break="\n")


def payload(
    settings: WeComChannel, message: Message, now: datetime | None = None
) -> dict[str, Any]:
    """The JSON body: Markdown with `<@userid>` mentions, or text with both mention lists."""
    # The people of a breaking run (`people:`), by WeCom userid, beside the channel's own.
    people = [p.wecom for p in message.people if p.wecom]
    mentioned = list(dict.fromkeys([*settings.mentioned_list, *people]))
    link = primary_link(message)
    tail = f"… see {link}" if link else "… (truncated)"
    if uses_text(settings):
        text = truncate_utf8(render_robot_text(message), TEXT_MAX_BYTES, tail)
        return {
            "msgtype": "text",
            "text": {
                "content": text,
                "mentioned_list": mentioned,
                "mentioned_mobile_list": list(settings.mentioned_mobile_list),
            },
        }
    mentions = " ".join(_mention_token(user) for user in mentioned)
    suffix = "\n" + mentions if mentions else ""
    budget = MARKDOWN_MAX_BYTES - len(suffix.encode("utf-8"))
    content = truncate_utf8(markdown(message), budget, tail) + suffix
    return {"msgtype": "markdown", "markdown": {"content": content}}


def verdict(answer: Answer, label: str) -> Delivery:
    """The robot's `errcode`: 45009 (too many messages) retryable after a minute."""
    return errcode_verdict(answer, label, rate_limited=RATE_LIMITED, wait=RATE_LIMIT_WAIT)


class WeComSender(HttpSender[WeComChannel]):
    """Sends to one WeCom group robot (`WeComChannel` settings)."""

    kind = "wecom"
    min_interval = MIN_INTERVAL

    @property
    def uses_text(self) -> bool:
        return uses_text(self.settings)

    def payload(self, message: Message) -> dict[str, Any]:
        return payload(self.settings, message)

    async def send(self, message: Message) -> Delivery:
        body = json_body(self.payload(message))
        answer = await self.http.post(self.settings.url, body)
        self.http.check_status(answer)
        return verdict(answer, self.http.label)


def _build(settings: WeComChannel, session: aiohttp.ClientSession | None) -> WeComSender:
    return WeComSender(settings, session=session)


SPEC = ChannelSpec(
    kind="wecom",
    title="WeCom",
    settings=WeComChannel,
    build=_build,
    payload=payload,
    verdict=verdict,
    example={"url": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={EXAMPLE_SECRET}"},
)

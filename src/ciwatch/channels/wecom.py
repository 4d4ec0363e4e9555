"""WeCom (WeChat Work) group robot: Markdown, or plain text when phone numbers are to be
mentioned.

WeCom's Markdown cannot carry `mentioned_list` / `mentioned_mobile_list`; it mentions users by
`<@userid>` in the content. So: with only `mentioned_list` (user ids) the message stays Markdown
with `<@userid>` appended; with `mentioned_mobile_list` or `@all` it is sent as `text` with both
lists. Content is cut to the robot's byte limits (4096 Markdown, 2048 text) with "… see <link>".
The verdict is the `errcode` in the HTTP-200 body.
"""

from __future__ import annotations

from typing import Any

from ciwatch.channels.base import Delivery, Message
from ciwatch.channels.render import (
    primary_link,
    render_markdown,
    render_robot_text,
    truncate_utf8,
)
from ciwatch.channels.transport import HttpSender, errcode_verdict, json_body
from ciwatch.config.models import WeComChannel

MIN_INTERVAL = 3.1  # 20 messages a minute per robot
MARKDOWN_MAX_BYTES = 4096
TEXT_MAX_BYTES = 2048
RATE_LIMITED = 45009
RATE_LIMIT_WAIT = 60.0


def _mention_token(userid: str) -> str:
    return "<@" + userid.replace("<", "").replace(">", "").strip() + ">"


class WeComSender(HttpSender[WeComChannel]):
    """Sends to one WeCom group robot (`WeComChannel` settings)."""

    kind = "wecom"
    min_interval = MIN_INTERVAL

    @property
    def uses_text(self) -> bool:
        """Plain text is needed to mention by phone number, or everyone."""
        settings = self.settings
        return bool(settings.mentioned_mobile_list) or "@all" in settings.mentioned_list

    def payload(self, message: Message) -> dict[str, Any]:
        # The people of a breaking run (`people:`), by WeCom userid, beside the channel's own.
        people = [p.wecom for p in message.people if p.wecom]
        mentioned = list(dict.fromkeys([*self.settings.mentioned_list, *people]))
        link = primary_link(message)
        tail = f"… see {link}" if link else "… (truncated)"
        if self.uses_text:
            text = truncate_utf8(render_robot_text(message), TEXT_MAX_BYTES, tail)
            return {
                "msgtype": "text",
                "text": {
                    "content": text,
                    "mentioned_list": mentioned,
                    "mentioned_mobile_list": list(self.settings.mentioned_mobile_list),
                },
            }
        mentions = " ".join(_mention_token(user) for user in mentioned)
        suffix = "\n" + mentions if mentions else ""
        budget = MARKDOWN_MAX_BYTES - len(suffix.encode("utf-8"))
        content = truncate_utf8(render_markdown(message, "wecom"), budget, tail) + suffix
        return {"msgtype": "markdown", "markdown": {"content": content}}

    async def send(self, message: Message) -> Delivery:
        body = json_body(self.payload(message))
        answer = await self.http.post(self.settings.url, body)
        self.http.check_status(answer)
        return errcode_verdict(
            answer, self.http.label, rate_limited=RATE_LIMITED, wait=RATE_LIMIT_WAIT
        )

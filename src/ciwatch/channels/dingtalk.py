"""DingTalk custom robot: a Markdown message, optional @-mentions, optional signing.

With a `secret` the robot demands `timestamp` (epoch milliseconds) and `sign` query parameters:
`sign` is base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")), URL-encoded once. The
robot answers HTTP 200 even when it refuses a message: the verdict is the `errcode` in the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
from yarl import URL

from ciwatch.channels.base import Delivery, Message
from ciwatch.channels.render import render_markdown, render_title, truncate_utf8
from ciwatch.channels.spec import EXAMPLE_SECRET, ChannelSpec
from ciwatch.channels.transport import Answer, HttpSender, errcode_verdict, json_body
from ciwatch.config.models import DingTalkChannel
from ciwatch.config.types import is_mobile

# The robot takes 20 messages a minute; one every 3.1 s stays under it.
MIN_INTERVAL = 3.1
RATE_LIMITED = 130101
RATE_LIMIT_WAIT = 60.0
# DingTalk documents no size limit for Markdown; long groups are cut at this many bytes anyway,
# so one message stays readable and small.
MAX_BYTES = 18000


def sign(secret: str, timestamp_ms: int) -> str:
    """The `sign` parameter, base64 and not yet URL-encoded."""
    message = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_url(url: str, secret: str, timestamp_ms: int) -> URL:
    """`url` with `timestamp` and `sign` appended to its query, each encoded exactly once (the
    returned URL is marked encoded so aiohttp sends it as is)."""
    parts = urlsplit(url)
    extra = f"timestamp={timestamp_ms}&sign={quote(sign(secret, timestamp_ms), safe='')}"
    query = f"{parts.query}&{extra}" if parts.query else extra
    return URL(urlunsplit(parts._replace(query=query)), encoded=True)


def markdown(message: Message) -> str:
    """The message in DingTalk's Markdown: a new line only at a blank line, so the facts are
    separated by blank lines."""
    return render_markdown(message, line_break="\n\n")


def payload(
    settings: DingTalkChannel, message: Message, now: datetime | None = None
) -> dict[str, Any]:
    """The JSON body: `msgtype: markdown` with a title, the text and the mentions (the
    signature goes in the URL, see `signed_url`)."""
    text = markdown(message)
    # The people of a breaking run (`people:`): a mobile number goes to `atMobiles`, a user
    # id to `atUserIds`, beside the channel's own.
    handles = [p.dingtalk for p in message.people if p.dingtalk]
    mobiles = list(dict.fromkeys([*settings.at_mobiles, *filter(is_mobile, handles)]))
    users = [h for h in handles if not is_mobile(h)]
    user_ids = list(dict.fromkeys([*settings.at_user_ids, *users]))
    # A mention shows only when the @mobile / @userid also appears in the text.
    mentions = [f"@{who}" for who in (*mobiles, *user_ids)]
    tail = "\n\n" + " ".join(mentions) if mentions else ""
    text = truncate_utf8(text, MAX_BYTES - len(tail.encode()), "… (truncated)") + tail
    body: dict[str, Any] = {
        "msgtype": "markdown",
        "markdown": {"title": render_title(message), "text": text},
    }
    if mentions or settings.at_all:
        body["at"] = {
            "atMobiles": mobiles,
            "atUserIds": user_ids,
            "isAtAll": settings.at_all,
        }
    return body


def verdict(answer: Answer, label: str) -> Delivery:
    """The robot's `errcode`: 130101 (too many messages) retryable after a minute."""
    return errcode_verdict(answer, label, rate_limited=RATE_LIMITED, wait=RATE_LIMIT_WAIT)


class DingTalkSender(HttpSender[DingTalkChannel]):
    """Sends to one DingTalk custom robot (`DingTalkChannel` settings)."""

    kind = "dingtalk"
    min_interval = MIN_INTERVAL

    def payload(self, message: Message) -> dict[str, Any]:
        return payload(self.settings, message)

    def url(self) -> str | URL:
        if not self.settings.secret:
            return self.settings.url
        now_ms = round(self.http.clock.now().timestamp() * 1000)
        return signed_url(self.settings.url, self.settings.secret, now_ms)

    async def send(self, message: Message) -> Delivery:
        body = json_body(self.payload(message))
        answer = await self.http.post(self.url(), body)
        self.http.check_status(answer)
        return verdict(answer, self.http.label)


def _build(settings: DingTalkChannel, session: aiohttp.ClientSession | None) -> DingTalkSender:
    return DingTalkSender(settings, session=session)


SPEC = ChannelSpec(
    kind="dingtalk",
    title="DingTalk",
    settings=DingTalkChannel,
    build=_build,
    payload=payload,
    verdict=verdict,
    example={
        "url": f"https://oapi.dingtalk.com/robot/send?access_token={EXAMPLE_SECRET}",
        "secret": EXAMPLE_SECRET,
    },
    secrets=("secret",),
)

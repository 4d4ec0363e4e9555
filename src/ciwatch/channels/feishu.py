"""Feishu (Lark) custom bot: a rich-text `post` message, optional @-mentions, optional signing.

The hook URL (`https://open.feishu.cn/open-apis/bot/v2/hook/<token>`, on Lark
`https://open.larksuite.com/...`) holds the bot's token; `mask_url` hides every path segment
after `hook`. Facts from the custom bot guide (docs/channels.md#feishu links it):

- The body is `{"msg_type": "post", "content": {"post": {"zh_cn": {"title", "content"}}}}`:
  `content` is a list of lines, each a list of elements: `text` (plain text, not parsed for
  markup), `a` (`text` + `href`) and `at` (`user_id`: an open_id, user_id or union_id, or
  `all`). Mentions are `at` elements, so no handle is ever spliced into text.
- With a `secret` ("signature verification"), the body carries `timestamp` (epoch seconds, as a
  string) and `sign`: base64 of HMAC-SHA256 keyed with `f"{timestamp}\\n{secret}"` over an empty
  message. A timestamp more than an hour away from the server's clock is refused.
- The reply is JSON with `code` (or `StatusCode`, in older replies) and `msg`: 0 is delivered;
  11232 (frequency limited: a bot may send 100 messages a minute, 5 a second) is retryable; any
  other code (19021 bad signature or timestamp, 19022 IP not allowed, 19024 keyword missing,
  9499 bad request, ...) is permanent.
- A request body is at most 20 KB: a long group is cut, whole lines at a time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import aiohttp

from ciwatch.channels.base import Delivery, Message
from ciwatch.channels.render import (
    Link,
    Part,
    Val,
    as_lines,
    escape_robot_text,
    facts,
    links,
    listed,
    one_line,
    primary_link,
    render_title,
    safe_url,
    start_more,
    start_rest,
    summary_line,
)
from ciwatch.channels.spec import EXAMPLE_SECRET, ChannelSpec
from ciwatch.channels.transport import Answer, HttpSender, code_verdict, json_body
from ciwatch.config.models import FeishuChannel

# 100 messages a minute per bot (and 5 a second): one every 0.6 s stays under both.
MIN_INTERVAL = 0.6
RATE_LIMITED = 11232
RATE_LIMIT_WAIT = 60.0
MAX_BYTES = 20_000  # "the request body must not exceed 20 KB"
# The locale of the post; the text is ciwatch's own (English) whatever the key says.
LOCALE = "zh_cn"

Element = dict[str, str]


def sign(secret: str, timestamp: int) -> str:
    """The body's `sign`: base64(HMAC-SHA256(key=f"{timestamp}\\n{secret}", msg=b""))."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode("ascii")


def _text(text: str) -> Element:
    return {"tag": "text", "text": text}


def elements(parts: Sequence[Part]) -> list[Element]:
    """Parts as post elements: ciwatch's text and CI values as `text` (values on one line, with
    look-alikes for `< >`), http(s) links as `a`; adjacent texts merged."""
    out: list[Element] = []
    for part in parts:
        if isinstance(part, Link):
            label = part.label
            text = (
                escape_robot_text(one_line(label.text, label.limit))
                if isinstance(label, Val)
                else label
            )
            url = safe_url(part.url)
            element = {"tag": "a", "text": text, "href": url} if url else _text(text)
        elif isinstance(part, Val):
            element = _text(escape_robot_text(one_line(part.text, part.limit)))
        else:
            element = _text(part)
        if element["tag"] == "text" and out and out[-1]["tag"] == "text":
            out[-1] = _text(out[-1]["text"] + element["text"])
        else:
            out.append(element)
    return out


def lines(message: Message) -> list[list[Element]]:
    """The post's lines: the facts of one notice and its links, or a line per notice."""
    if as_lines(message):
        mixed = len({notice.kind for notice in message.notices}) > 1
        out = [elements(["• ", *summary_line(n, with_kind=mixed)]) for n in listed(message)]
        if message.at_start and start_rest(message):
            out.append([_text(start_more(message))])
        return out
    notice = message.notices[0]
    out = [elements([f"{fact.label}: ", *fact.parts]) for fact in facts(notice, message.zone)]
    found: list[Part] = []
    for link in links(notice):
        found += [" · ", link] if found else [link]
    if found:
        out.append(elements(found))
    return out


def mentions(settings: FeishuChannel, message: Message) -> list[Element]:
    """`at` elements: the channel's `at_user_ids` and the people of a breaking run (`people:`
    `feishu`), each once; `all` when `at_all`."""
    users = [*settings.at_user_ids, *(p.feishu for p in message.people if p.feishu)]
    found = [{"tag": "at", "user_id": user} for user in dict.fromkeys(users)]
    if settings.at_all:
        found.append({"tag": "at", "user_id": "all"})
    return found


def payload(
    settings: FeishuChannel, message: Message, now: datetime | None = None
) -> dict[str, Any]:
    """The JSON body: a `post` (title, lines, a mention line), cut to `MAX_BYTES`, signed with
    `timestamp` and `sign` when the channel has a `secret` (`now` is then required)."""
    title = escape_robot_text(render_title(message))
    body_lines = lines(message)
    at = mentions(settings, message)
    tail = [[_text("cc "), *at]] if at else []

    def body(shown: list[list[Element]]) -> dict[str, Any]:
        post = {LOCALE: {"title": title, "content": [*shown, *tail]}}
        document: dict[str, Any] = {"msg_type": "post", "content": {"post": post}}
        if settings.secret:
            if now is None:
                raise ValueError("a signed Feishu message needs the time")
            stamp = int(now.timestamp())
            document = {"timestamp": str(stamp), "sign": sign(settings.secret, stamp), **document}
        return document

    document = body(body_lines)
    if len(json_body(document)) <= MAX_BYTES:
        return document
    link = primary_link(message)
    cut_line = [_text("… (truncated)")] + (
        [{"tag": "a", "text": "see more", "href": link}] if link else []
    )
    # The most leading lines that fit with the cut line (a binary search: one encoding per step).
    low, high = 0, len(body_lines) - 1
    while low < high:
        middle = (low + high + 1) // 2
        if len(json_body(body([*body_lines[:middle], cut_line]))) <= MAX_BYTES:
            low = middle
        else:
            high = middle - 1
    return body([*body_lines[:low], cut_line])


def verdict(answer: Answer, label: str) -> Delivery:
    """The bot's `code` (or `StatusCode`): 0 delivered, 11232 retryable after a minute, any other
    code permanent (see the module docstring)."""
    return code_verdict(
        answer,
        label,
        codes=("code", "StatusCode"),
        messages=("msg", "StatusMessage"),
        retryable={RATE_LIMITED: RATE_LIMIT_WAIT},
    )


def _has_code(answer: Answer) -> bool:
    try:
        reply = json.loads(answer.body)
    except ValueError:
        return False
    return isinstance(reply, dict) and ("code" in reply or "StatusCode" in reply)


class FeishuSender(HttpSender[FeishuChannel]):
    """Sends to one Feishu (Lark) custom bot (`FeishuChannel` settings)."""

    kind = "feishu"
    min_interval = MIN_INTERVAL

    def payload(self, message: Message) -> dict[str, Any]:
        return payload(self.settings, message, self.http.clock.now())

    async def send(self, message: Message) -> Delivery:
        body = json_body(self.payload(message))
        answer = await self.http.post(self.settings.url, body)
        # A refusal may come on a 4xx with a code in the body: the code decides (11232 is
        # retryable whatever the status); without one, the status does.
        if not (400 <= answer.status < 500 and _has_code(answer)):
            self.http.check_status(answer)
        return verdict(answer, self.http.label)


def _build(settings: FeishuChannel, session: aiohttp.ClientSession | None) -> FeishuSender:
    return FeishuSender(settings, session=session)


SPEC = ChannelSpec(
    kind="feishu",
    title="Feishu (Lark)",
    settings=FeishuChannel,
    build=_build,
    payload=payload,
    verdict=verdict,
    example={
        "url": f"https://open.feishu.cn/open-apis/bot/v2/hook/{EXAMPLE_SECRET}",
        "secret": EXAMPLE_SECRET,
    },
    secrets=("secret",),
)

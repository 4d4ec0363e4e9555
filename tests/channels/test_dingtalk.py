"""DingTalk custom robot against a local robot that checks signatures and answers errcodes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

import aiohttp
import pytest

from ciwatch.channels import build_channel, make_test_message
from ciwatch.channels.dingtalk import DingTalkSender, sign, signed_url
from ciwatch.clock import FakeClock
from ciwatch.config.models import DingTalkChannel
from ciwatch.errors import ChannelError

from .conftest import RUN_URL, grouped, hostile, single
from .harness import DingTalkRobot, dingtalk_sign


def channel(
    url: str,
    session: aiohttp.ClientSession,
    *,
    secret: str | None = None,
    clock: FakeClock | None = None,
    **extra: object,
) -> DingTalkSender:
    settings = DingTalkChannel(name="ding", url=url, secret=secret, **extra)
    return DingTalkSender(settings, session=session, clock=clock)


async def test_markdown_message_delivered(
    dingtalk: DingTalkRobot, session: aiohttp.ClientSession
) -> None:
    delivery = await channel(dingtalk.url, session).send(single("broken"))
    assert delivery.answer == "errcode 0 (ok)"
    [payload] = dingtalk.messages
    assert payload["msgtype"] == "markdown"
    assert payload["markdown"]["title"] == "🔴 Broken: group/app on main"
    text = payload["markdown"]["text"]
    for expected in ("group/app", "main", "#17", "test, lint", RUN_URL):
        assert expected in text
    assert "at" not in payload


async def test_signed_request_is_verified(
    dingtalk_signed: DingTalkRobot, session: aiohttp.ClientSession
) -> None:
    secret = dingtalk_signed.secret
    assert secret is not None
    now = int(datetime.now(UTC).timestamp() * 1000)
    # timestamps whose signatures hold '+' and '/', which break when encoded twice or not at all
    stamps = [next(t for t in range(now, now + 10_000) if char in sign(secret, t)) for char in "+/"]
    for stamp in stamps:
        clock = FakeClock(datetime.fromtimestamp(stamp / 1000, UTC))
        await channel(dingtalk_signed.url, session, secret=secret, clock=clock).send(single())
    assert len(dingtalk_signed.messages) == 2
    for request, stamp in zip(dingtalk_signed.requests, stamps, strict=True):
        assert request.query["access_token"] == "ding-token"
        assert request.query["timestamp"] == str(stamp)
        assert request.query["sign"] == dingtalk_sign(secret, str(stamp))


def test_sign_is_url_encoded_exactly_once() -> None:
    secret = "SECding+secret/with=chars"
    # find a timestamp whose signature holds characters that need encoding
    stamp = next(t for t in range(1_700_000_000_000, 1_700_000_001_000) if "+" in sign(secret, t))
    url = signed_url("https://oapi.dingtalk.com/robot/send?access_token=abc", secret, stamp)
    raw = str(url)
    assert raw.startswith("https://oapi.dingtalk.com/robot/send?access_token=abc&timestamp=")
    encoded = raw.rpartition("sign=")[2]
    assert "+" not in encoded and "%2B" in encoded and "%25" not in encoded
    assert unquote(encoded) == sign(secret, stamp)
    assert url.query["sign"] == sign(secret, stamp)


@pytest.mark.parametrize(
    ("secret", "skew", "errmsg"),
    [
        ("wrong-secret", timedelta(0), "sign not match"),
        (None, timedelta(0), "missing timestamp or sign"),
        ("SECding+secret/with=chars", timedelta(hours=-2), "invalid timestamp"),
        ("SECding+secret/with=chars", timedelta(hours=2), "invalid timestamp"),
    ],
)
async def test_signature_problems_are_permanent(
    dingtalk_signed: DingTalkRobot,
    session: aiohttp.ClientSession,
    secret: str | None,
    skew: timedelta,
    errmsg: str,
) -> None:
    clock = FakeClock(datetime.now(UTC) + skew)
    sender = channel(dingtalk_signed.url, session, secret=secret, clock=clock)
    with pytest.raises(ChannelError) as caught:
        await sender.send(single())
    assert caught.value.permanent
    assert "errcode 310000" in str(caught.value) and errmsg in str(caught.value)
    assert caught.value.retry_after is None
    assert not dingtalk_signed.messages


@pytest.mark.parametrize(
    ("code", "permanent", "retry_after", "errmsg"),
    [
        (130101, False, 60.0, "send too fast"),
        (-1, False, None, "error -1"),
        (310000, True, None, "sign not match"),
        (300001, True, None, "token is not exist"),
        (400102, True, None, "error 400102"),
    ],
)
async def test_errcodes(
    dingtalk: DingTalkRobot,
    session: aiohttp.ClientSession,
    code: int,
    permanent: bool,
    retry_after: float | None,
    errmsg: str,
) -> None:
    dingtalk.script.append(code)
    with pytest.raises(ChannelError) as caught:
        await channel(dingtalk.url, session).send(single())
    assert caught.value.permanent is permanent
    assert caught.value.retry_after == retry_after
    assert f"errcode {code}" in str(caught.value) and errmsg in str(caught.value)
    assert "access_token" not in str(caught.value)


async def test_wrong_token_is_permanent(
    dingtalk: DingTalkRobot, session: aiohttp.ClientSession
) -> None:
    url = dingtalk.url.replace("ding-token", "other")
    with pytest.raises(ChannelError, match="errcode 300001") as caught:
        await channel(url, session).send(single())
    assert caught.value.permanent


async def test_twenty_per_minute_then_rate_limited(session: aiohttp.ClientSession) -> None:
    robot = DingTalkRobot(per_minute=20)
    await robot.start()
    try:
        sender = channel(robot.url, session)
        for _ in range(20):
            await sender.send(single())
        with pytest.raises(ChannelError, match="130101") as caught:
            await sender.send(single())
    finally:
        await robot.stop()
    assert not caught.value.permanent and caught.value.retry_after == 60.0
    assert sender.min_interval * 20 > 60  # the pace the caller keeps stays under the limit


async def test_mentions(dingtalk: DingTalkRobot, session: aiohttp.ClientSession) -> None:
    sender = channel(
        dingtalk.url, session, at_mobiles=["13800000000"], at_user_ids=["u1"], at_all=False
    )
    await sender.send(single())
    [payload] = dingtalk.messages
    assert payload["at"] == {"atMobiles": ["13800000000"], "atUserIds": ["u1"], "isAtAll": False}
    assert payload["markdown"]["text"].endswith("@13800000000 @u1")


async def test_at_all(dingtalk: DingTalkRobot, session: aiohttp.ClientSession) -> None:
    await channel(dingtalk.url, session, at_all=True).send(single())
    assert dingtalk.messages[0]["at"]["isAtAll"] is True


async def test_grouped_and_hostile(dingtalk: DingTalkRobot, session: aiohttp.ClientSession) -> None:
    sender = channel(dingtalk.url, session)
    await sender.send(grouped(5))
    await sender.send(hostile())
    group, bad = (payload["markdown"] for payload in dingtalk.messages)
    assert group["title"] == "🔴 5 refs broke in group/*"
    assert all(f"group/app-{i}" in group["text"] for i in range(5))
    assert "<script>" not in bad["text"] and "](javascript" not in bad["text"]
    assert "*bold*" not in bad["text"]


async def test_build_channel_uses_the_given_session(
    dingtalk: DingTalkRobot, session: aiohttp.ClientSession
) -> None:
    settings = DingTalkChannel(name="ding", url=dingtalk.url)
    sender = build_channel(settings, session=session)
    assert isinstance(sender, DingTalkSender) and sender.kind == "dingtalk"
    await sender.send(single())
    await sender.close()
    assert not session.closed
    assert len(dingtalk.messages) == 1


async def test_test_message(dingtalk: DingTalkRobot, session: aiohttp.ClientSession) -> None:
    delivery = await channel(dingtalk.url, session).send(make_test_message())
    assert delivery.answer == "errcode 0 (ok)"
    assert "the channel works" in dingtalk.messages[0]["markdown"]["text"]

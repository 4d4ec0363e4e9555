"""WeCom group robot against a local robot checking msgtype, byte limits and the key."""

from __future__ import annotations

import aiohttp
import pytest

from ciwatch.channels.base import Message
from ciwatch.channels.wecom import MARKDOWN_MAX_BYTES, TEXT_MAX_BYTES, WeComSender
from ciwatch.config.models import WeComChannel
from ciwatch.errors import ChannelError

from .conftest import DASHBOARD, RUN_URL, grouped, hostile, single
from .harness import WeComRobot


def channel(url: str, session: aiohttp.ClientSession, **extra: object) -> WeComSender:
    return WeComSender(WeComChannel(name="wecom", url=url, **extra), session=session)


async def test_markdown_message_delivered(
    wecom: WeComRobot, session: aiohttp.ClientSession
) -> None:
    delivery = await channel(wecom.url, session).send(single("still_failing"))
    assert delivery.answer == "errcode 0 (ok)"
    [payload] = wecom.messages
    assert payload["msgtype"] == "markdown"
    content = payload["markdown"]["content"]
    for expected in ("❌ Still failing", "group/app", "main", "#17", "test, lint", RUN_URL):
        assert expected in content


async def test_user_ids_are_mentioned_in_markdown(
    wecom: WeComRobot, session: aiohttp.ClientSession
) -> None:
    await channel(wecom.url, session, mentioned_list=["zhangsan", "li<si>"]).send(single())
    [payload] = wecom.messages
    assert payload["msgtype"] == "markdown"
    assert payload["markdown"]["content"].endswith("\n<@zhangsan> <@lisi>")


@pytest.mark.parametrize(
    ("mentioned", "mobiles"),
    [([], ["13800001111"]), (["@all"], []), (["wangqing"], ["13800001111", "@all"])],
)
async def test_phone_mentions_and_all_switch_to_text(
    wecom: WeComRobot,
    session: aiohttp.ClientSession,
    mentioned: list[str],
    mobiles: list[str],
) -> None:
    sender = channel(wecom.url, session, mentioned_list=mentioned, mentioned_mobile_list=mobiles)
    await sender.send(hostile())
    [payload] = wecom.messages
    assert payload["msgtype"] == "text"
    text = payload["text"]
    assert text["mentioned_list"] == mentioned
    assert text["mentioned_mobile_list"] == mobiles
    assert "<@U123>" not in text["content"] and "<!channel>" not in text["content"]
    assert "alert(1)" in text["content"]


@pytest.mark.parametrize("count", [40, 400])
async def test_big_groups_are_truncated_under_the_markdown_limit(
    wecom: WeComRobot, session: aiohttp.ClientSession, count: int
) -> None:
    message = grouped(count)
    await channel(wecom.url, session).send(message)
    [payload] = wecom.messages
    content = payload["markdown"]["content"]
    size = len(content.encode("utf-8"))
    assert size <= MARKDOWN_MAX_BYTES
    assert content.endswith(f"… see {DASHBOARD}")
    assert "group/app-0" in content
    assert f"group/app-{count - 1}" not in content
    assert size > MARKDOWN_MAX_BYTES - 600  # filled, not cut far too early


async def test_text_is_truncated_under_its_limit(
    wecom: WeComRobot, session: aiohttp.ClientSession
) -> None:
    await channel(wecom.url, session, mentioned_mobile_list=["13800001111"]).send(grouped(100))
    content = wecom.messages[0]["text"]["content"]
    assert len(content.encode("utf-8")) <= TEXT_MAX_BYTES
    assert content.endswith(f"… see {DASHBOARD}")


async def test_a_single_notice_fits_whole(
    wecom: WeComRobot, session: aiohttp.ClientSession
) -> None:
    message: Message = single(failing_jobs=tuple(f"job-{i}" for i in range(50)))
    await channel(wecom.url, session).send(message)
    content = wecom.messages[0]["markdown"]["content"]
    assert "… see" not in content and "(+40 more)" in content


@pytest.mark.parametrize(
    ("code", "permanent", "retry_after", "errmsg"),
    [
        (45009, False, 60.0, "api freq out of limit"),
        (-1, False, None, "system busy"),
        (93000, True, None, "invalid webhook url"),
        (40058, True, None, "content exceed max length"),
    ],
)
async def test_errcodes(
    wecom: WeComRobot,
    session: aiohttp.ClientSession,
    code: int,
    permanent: bool,
    retry_after: float | None,
    errmsg: str,
) -> None:
    wecom.script.append(code)
    with pytest.raises(ChannelError) as caught:
        await channel(wecom.url, session).send(single())
    assert caught.value.permanent is permanent
    assert caught.value.retry_after == retry_after
    assert f"errcode {code}: {errmsg}" in str(caught.value)
    assert "wecom-key" not in str(caught.value)


async def test_wrong_key_is_permanent(wecom: WeComRobot, session: aiohttp.ClientSession) -> None:
    url = wecom.url.replace("wecom-key", "revoked")
    with pytest.raises(ChannelError, match="errcode 93000") as caught:
        await channel(url, session).send(single())
    assert caught.value.permanent


async def test_rate_limit(session: aiohttp.ClientSession) -> None:
    robot = WeComRobot(per_minute=3)
    await robot.start()
    try:
        sender = channel(robot.url, session)
        for _ in range(3):
            await sender.send(single())
        with pytest.raises(ChannelError, match="45009") as caught:
            await sender.send(single())
    finally:
        await robot.stop()
    assert not caught.value.permanent and caught.value.retry_after == 60.0


async def test_hostile_markdown(wecom: WeComRobot, session: aiohttp.ClientSession) -> None:
    await channel(wecom.url, session).send(hostile())
    content = wecom.messages[0]["markdown"]["content"]
    assert "<script>" not in content and "<@U123>" not in content
    assert "](javascript" not in content and "*bold*" not in content

"""Feishu (Lark) custom bot against a local bot that checks signatures, keywords and the body's
shape, and answers Feishu's codes."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from typer.testing import CliRunner

from ciwatch.alerting.people import People
from ciwatch.channels import build_channel, make_test_message
from ciwatch.channels.base import Message
from ciwatch.channels.feishu import MAX_BYTES, FeishuSender, payload, sign
from ciwatch.cli import app
from ciwatch.clock import FakeClock
from ciwatch.config.masking import mask_url
from ciwatch.config.models import FeishuChannel, PersonSettings
from ciwatch.errors import ChannelError
from factories import make_run

from .conftest import RUN_URL, grouped, hostile, notice, single
from .harness import FeishuBot, Reply, feishu_sign


def channel(
    url: str,
    session: aiohttp.ClientSession,
    *,
    secret: str | None = None,
    clock: FakeClock | None = None,
    **extra: Any,
) -> FeishuSender:
    settings = FeishuChannel(name="lark", url=url, secret=secret, **extra)
    return FeishuSender(settings, session=session, clock=clock)


def texts(document: dict[str, Any]) -> list[dict[str, str]]:
    """Every element of the post, in order."""
    [body] = document["content"]["post"].values()
    return [element for line in body["content"] for element in line]


def plain(document: dict[str, Any]) -> str:
    return "".join(e.get("text", "") for e in texts(document))


async def test_post_message_delivered(feishu: FeishuBot, session: aiohttp.ClientSession) -> None:
    delivery = await channel(feishu.url, session).send(single("broken"))
    assert delivery.answer == "code 0 (success)"
    [document] = feishu.messages
    assert document["msg_type"] == "post"
    assert "sign" not in document and "timestamp" not in document
    [body] = document["content"]["post"].values()
    assert body["title"] == "🔴 Broken: group/app on main"
    text = plain(document)
    for expected in ("Run: CI #17", "Failing jobs: test, lint", "Source: gitlab-main"):
        assert expected in text
    hrefs = [e["href"] for e in texts(document) if e["tag"] == "a"]
    assert RUN_URL in hrefs
    assert not [e for e in texts(document) if e["tag"] == "at"]


async def test_signed_request_is_verified(session: aiohttp.ClientSession) -> None:
    secret = "feishu+secret/with=chars"
    bot = FeishuBot(secret=secret)
    await bot.start()
    try:
        delivery = await channel(bot.url, session, secret=secret).send(single())
        assert delivery.answer == "code 0 (success)"
        [document] = bot.messages
        assert document["sign"] == feishu_sign(secret, document["timestamp"])
        # a wrong secret, and a clock two hours off: refused for good (19021)
        for wrong in (
            channel(bot.url, session, secret="not-the-secret"),
            channel(
                bot.url,
                session,
                secret=secret,
                clock=FakeClock(datetime.now(UTC) - timedelta(hours=2)),
            ),
        ):
            with pytest.raises(ChannelError, match="code 19021") as caught:
                await wrong.send(single())
            assert caught.value.permanent
            assert secret not in str(caught.value)
    finally:
        await bot.stop()
    assert len(bot.messages) == 1


def test_signature_is_the_documented_one() -> None:
    """HMAC-SHA256 keyed with `timestamp + "\\n" + secret` over an empty message, base64; the
    body carries the timestamp in seconds, as a string."""
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    settings = FeishuChannel(name="c", url="https://open.feishu.cn/x", secret="s3cret")
    document = payload(settings, single(), at)
    assert document["timestamp"] == str(int(at.timestamp()))
    assert document["sign"] == sign("s3cret", int(at.timestamp()))
    assert document["sign"] == feishu_sign("s3cret", document["timestamp"])


async def test_keyword_missing_is_permanent(session: aiohttp.ClientSession) -> None:
    bot = FeishuBot(keyword="ciwatch-alert")
    await bot.start()
    try:
        with pytest.raises(ChannelError, match="code 19024: Key Words Not Found") as caught:
            await channel(bot.url, session).send(single())
        assert caught.value.permanent
        # the bot's keyword in the text (here: the project name) lets it through
        message = Message((notice("broken", project="ciwatch-alert/app"),))
        assert (await channel(bot.url, session).send(message)).answer == "code 0 (success)"
    finally:
        await bot.stop()


async def test_rate_limit_is_retryable(feishu: FeishuBot, session: aiohttp.ClientSession) -> None:
    feishu.script.append(11232)
    with pytest.raises(ChannelError, match="code 11232") as caught:
        await channel(feishu.url, session).send(single())
    assert not caught.value.permanent
    assert caught.value.retry_after == 60.0
    # the same code on an HTTP 400 is still the code's verdict
    feishu.replies.append(
        Reply(400, json.dumps({"code": 11232, "msg": "frequency limited"}), {}, "application/json")
    )
    with pytest.raises(ChannelError, match="code 11232") as caught:
        await channel(feishu.url, session).send(single())
    assert not caught.value.permanent


async def test_bad_request_is_permanent(feishu: FeishuBot, session: aiohttp.ClientSession) -> None:
    feishu.replies.append(
        Reply(
            400,
            json.dumps({"code": 9499, "msg": "Bad Request", "data": {}}),
            {},
            "application/json",
        )
    )
    with pytest.raises(ChannelError, match="code 9499: Bad Request") as caught:
        await channel(feishu.url, session).send(single())
    assert caught.value.permanent


async def test_older_status_code_reply_and_server_errors(
    feishu: FeishuBot, session: aiohttp.ClientSession
) -> None:
    older = {"Extra": None, "StatusCode": 0, "StatusMessage": "success"}
    feishu.replies.append(Reply(200, json.dumps(older), {}, "application/json"))
    assert (await channel(feishu.url, session).send(single())).answer == "StatusCode 0 (success)"
    feishu.replies.append(Reply(503, "upstream unavailable", {"Retry-After": "7"}))
    with pytest.raises(ChannelError, match="HTTP 503") as caught:
        await channel(feishu.url, session).send(single())
    assert not caught.value.permanent and caught.value.retry_after == 7.0
    feishu.replies.append(Reply(200, "<html>proxy login</html>", {}, "text/html"))
    with pytest.raises(ChannelError, match="without a result code") as caught:
        await channel(feishu.url, session).send(single())
    assert not caught.value.permanent


async def test_mentions_people_and_everyone(
    feishu: FeishuBot, session: aiohttp.ClientSession
) -> None:
    people = People(
        [
            PersonSettings(names=["ada"], feishu="ou_7d8a6e6df7621556ce0d21922b676706"),
            PersonSettings(names=["bob"], slack="U0BOB"),
        ]
    )
    run = make_run(author="ada", commit_author="bob")
    message = Message((notice("broken", run=run, people=people.of(run)),))
    sender = channel(
        feishu.url,
        session,
        at_user_ids=["ou_oncall", "ou_7d8a6e6df7621556ce0d21922b676706"],
        at_all=True,
    )
    await sender.send(message)
    [document] = feishu.messages
    at = [e["user_id"] for e in texts(document) if e["tag"] == "at"]
    assert at == ["ou_oncall", "ou_7d8a6e6df7621556ce0d21922b676706", "all"]


async def test_hostile_values_stay_text(feishu: FeishuBot, session: aiohttp.ClientSession) -> None:
    await channel(feishu.url, session).send(hostile())
    [document] = feishu.messages
    elements = texts(document)
    assert not [e for e in elements if e["tag"] == "at"]
    for element in elements:
        assert "<" not in element.get("text", ""), element
        if element["tag"] == "a":
            assert element["href"].startswith("https://")
    assert "javascript" not in json.dumps([e.get("href") for e in elements])


async def test_long_group_fits_the_body_limit(
    feishu: FeishuBot, session: aiohttp.ClientSession
) -> None:
    await channel(feishu.url, session).send(grouped(400))
    [document] = feishu.messages
    assert len(json.dumps(document, ensure_ascii=False).encode()) <= MAX_BYTES
    assert "… (truncated)" in plain(document)
    assert "group/app-0" in plain(document)


async def test_test_message_and_build_channel(
    feishu: FeishuBot, session: aiohttp.ClientSession
) -> None:
    settings = FeishuChannel(name="lark", url=feishu.url)
    sender = build_channel(settings, session=session)
    assert isinstance(sender, FeishuSender) and sender.kind == "feishu"
    assert sender.min_interval == 0.6
    await sender.send(make_test_message())
    assert "test message from ciwatch" in plain(feishu.messages[0])


def test_hook_tokens_are_masked() -> None:
    for host in ("open.feishu.cn", "open.larksuite.com"):
        url = f"https://{host}/open-apis/bot/v2/hook/6c9f3e0a-token"
        assert mask_url(url) == f"https://{host}/open-apis/bot/v2/hook/***"
        assert "6c9f3e0a" not in repr(FeishuChannel(name="c", url=url, secret="s3cret"))


async def test_alerts_test_command(feishu: FeishuBot, tmp_path: Path) -> None:
    """`ciwatch alerts test` through a Feishu channel: the bot's answer, the token masked."""
    config = tmp_path / "ciwatch.yaml"
    config.write_text(
        f"alerts:\n  channels:\n    - {{name: lark, type: feishu, url: '{feishu.url}'}}\n"
    )
    args = ["alerts", "test", "lark", "--config", str(config)]
    # the command runs its own event loop: in a thread, while this loop serves the bot
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    assert "lark (feishu, " in result.stdout and "/open-apis/bot/v2/hook/***" in result.stdout
    assert "answered: code 0 (success)" in result.stdout
    assert feishu.token not in result.output
    assert len(feishu.messages) == 1

"""The registry, the pacing helper, and what every HTTP channel does when no answer comes."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from ciwatch.channels import CHANNELS, Channel, Throttle, build_channel
from ciwatch.channels.dingtalk import DingTalkSender
from ciwatch.channels.feishu import FeishuSender
from ciwatch.channels.slack import SlackSender
from ciwatch.channels.webhook import WebhookSender
from ciwatch.channels.wecom import WeComSender
from ciwatch.clock import FakeClock
from ciwatch.config.models import (
    CHANNEL_TYPES,
    DingTalkChannel,
    FeishuChannel,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
)
from ciwatch.errors import ChannelError

from .conftest import single

HttpSettings = DingTalkChannel | WeComChannel | SlackChannel | WebhookChannel | FeishuChannel
HTTP_KINDS: list[tuple[type[HttpSettings], type[Channel]]] = [
    (DingTalkChannel, DingTalkSender),
    (FeishuChannel, FeishuSender),
    (WeComChannel, WeComSender),
    (SlackChannel, SlackSender),
    (WebhookChannel, WebhookSender),
]


def test_every_configured_type_has_a_factory() -> None:
    assert set(CHANNELS) == set(CHANNEL_TYPES)


@pytest.mark.parametrize(("settings_type", "sender_type"), HTTP_KINDS)
def test_build_channel(settings_type: type[HttpSettings], sender_type: type[Channel]) -> None:
    settings = settings_type(name="c", url="https://example.com/hook?key=secret-token")
    channel = build_channel(settings)
    assert isinstance(channel, sender_type)
    assert channel.name == "c" and channel.kind == settings.type
    assert channel.min_interval == {"dingtalk": 3.1, "wecom": 3.1, "slack": 1.0, "feishu": 0.6}.get(
        settings.type, 0.0
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize(("settings_type", "sender_type"), HTTP_KINDS)
async def test_connection_refused_is_retryable(
    settings_type: type[HttpSettings], sender_type: type[Channel]
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/send?access_token=tok-123&key=tok-123"
    channel = build_channel(settings_type(name="c", url=url))
    try:
        with pytest.raises(ChannelError) as caught:
            await channel.send(single())
    finally:
        await channel.close()
    assert not caught.value.permanent
    assert "tok-123" not in str(caught.value)


@pytest.fixture
async def silent() -> AsyncIterator[str]:
    """A server that accepts the request and never answers."""

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hang)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/send?key=tok-123"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(("settings_type", "sender_type"), HTTP_KINDS)
async def test_timeout_is_retryable(
    silent: str, settings_type: type[HttpSettings], sender_type: type[Channel]
) -> None:
    channel = sender_type(settings_type(name="c", url=silent), timeout=0.3)  # type: ignore[call-arg]
    try:
        with pytest.raises(ChannelError, match="timed out") as caught:
            await channel.send(single())
    finally:
        await channel.close()
    assert not caught.value.permanent


@pytest.mark.parametrize(("settings_type", "sender_type"), HTTP_KINDS)
async def test_robots_need_an_errcode(
    settings_type: type[HttpSettings], sender_type: type[Channel]
) -> None:
    """An HTML page on HTTP 200 (a captive proxy, say) is not a delivery for the robots."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<html>proxy login</html>", content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/send"
    try:
        async with aiohttp.ClientSession() as session:
            channel = build_channel(settings_type(name="c", url=url), session=session)
            if settings_type in (DingTalkChannel, WeComChannel, FeishuChannel):
                with pytest.raises(ChannelError, match="without a result code") as caught:
                    await channel.send(single())
                assert not caught.value.permanent
            else:
                await channel.send(single())
    finally:
        await runner.cleanup()


async def test_throttle_spaces_sends() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    throttle = Throttle(3.1, clock=clock)
    start = clock.now()
    stamps = []
    for _ in range(4):
        await throttle.wait()
        stamps.append((clock.now() - start).total_seconds())
    assert stamps == pytest.approx([0.0, 3.1, 6.2, 9.3])
    clock.advance(60)
    before = clock.now()
    await throttle.wait()
    assert clock.now() == before  # idle long enough: no wait


async def test_throttle_queues_concurrent_waiters() -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    throttle = Throttle(1.0, clock=clock)
    await asyncio.gather(*(throttle.wait() for _ in range(5)))
    assert (clock.now() - datetime(2026, 1, 1, tzinfo=UTC)).total_seconds() >= 4.0


def test_zero_interval_never_waits() -> None:
    assert Throttle(-1).min_interval == 0.0

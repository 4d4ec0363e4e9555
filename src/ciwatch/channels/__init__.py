"""Notification channels (docs/architecture.md#alerting): one registry, `kind -> factory`, and
`build_channel`.

Each factory takes the channel's settings and the shared aiohttp session (used by the HTTP
channels; created lazily by a channel when none is given) and returns a `Channel`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from ciwatch.channels.apprise import AppriseSender
from ciwatch.channels.base import (
    NOTICE_KINDS,
    Channel,
    Delivery,
    Message,
    Notice,
    Throttle,
    make_test_message,
)
from ciwatch.channels.dingtalk import DingTalkSender
from ciwatch.channels.email import EmailSender
from ciwatch.channels.slack import SlackSender
from ciwatch.channels.webhook import WebhookSender
from ciwatch.channels.wecom import WeComSender
from ciwatch.config.models import (
    AppriseChannel,
    ChannelSettings,
    DingTalkChannel,
    EmailChannel,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
)

Factory = Callable[[Any, aiohttp.ClientSession | None], Channel]


def _email(settings: EmailChannel, session: aiohttp.ClientSession | None) -> Channel:
    return EmailSender(settings)


def _dingtalk(settings: DingTalkChannel, session: aiohttp.ClientSession | None) -> Channel:
    return DingTalkSender(settings, session=session)


def _wecom(settings: WeComChannel, session: aiohttp.ClientSession | None) -> Channel:
    return WeComSender(settings, session=session)


def _slack(settings: SlackChannel, session: aiohttp.ClientSession | None) -> Channel:
    return SlackSender(settings, session=session)


def _webhook(settings: WebhookChannel, session: aiohttp.ClientSession | None) -> Channel:
    return WebhookSender(settings, session=session)


def _apprise(settings: AppriseChannel, session: aiohttp.ClientSession | None) -> Channel:
    return AppriseSender(settings)


CHANNELS: dict[str, Factory] = {
    "email": _email,
    "dingtalk": _dingtalk,
    "wecom": _wecom,
    "slack": _slack,
    "webhook": _webhook,
    "apprise": _apprise,
}


def build_channel(
    settings: ChannelSettings, *, session: aiohttp.ClientSession | None = None
) -> Channel:
    """The channel for `settings` (its `type` picks the factory). HTTP channels use `session`
    when given (the caller closes it), else one of their own (closed by `Channel.close`)."""
    return CHANNELS[settings.type](settings, session)


__all__ = [
    "CHANNELS",
    "NOTICE_KINDS",
    "Channel",
    "Delivery",
    "Message",
    "Notice",
    "Throttle",
    "build_channel",
    "make_test_message",
]

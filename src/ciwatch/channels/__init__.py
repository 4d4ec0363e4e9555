"""Notification channels (docs/architecture.md#alerting): one `ChannelSpec` per kind, listed in
`channels/registry.py`, and `build_channel`.

Each spec's factory takes the channel's settings and the shared aiohttp session (used by the
HTTP channels; created lazily by a channel when none is given) and returns a `Channel`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp

from ciwatch.channels.base import (
    NOTICE_KINDS,
    Channel,
    Delivery,
    Message,
    Notice,
    Throttle,
    make_test_message,
)
from ciwatch.channels.registry import BY_KIND, SPECS
from ciwatch.config.models import ChannelSettings

Factory = Callable[[Any, aiohttp.ClientSession | None], Channel]

CHANNELS: dict[str, Factory] = {spec.kind: spec.build for spec in SPECS}


def build_channel(
    settings: ChannelSettings, *, session: aiohttp.ClientSession | None = None
) -> Channel:
    """The channel for `settings` (its `type` picks the spec). HTTP channels use `session`
    when given (the caller closes it), else one of their own (closed by `Channel.close`)."""
    return BY_KIND[settings.type].build(settings, session)


__all__ = [
    "CHANNELS",
    "NOTICE_KINDS",
    "SPECS",
    "Channel",
    "Delivery",
    "Message",
    "Notice",
    "Throttle",
    "build_channel",
    "make_test_message",
]

"""The notification channels: one `ChannelSpec` per kind (channels/spec.py), listed once here.

Adding a channel is its module (settings model in config/models.py, `SPEC` in the module) and
its line below; `build_channel`, the factories and the agreement test follow from this list.
"""

from __future__ import annotations

from typing import Any

from ciwatch.channels import apprise, dingtalk, email, feishu, slack, webhook, wecom
from ciwatch.channels.spec import ChannelSpec

SPECS: tuple[ChannelSpec[Any], ...] = (
    email.SPEC,
    dingtalk.SPEC,
    wecom.SPEC,
    slack.SPEC,
    webhook.SPEC,
    feishu.SPEC,
    apprise.SPEC,
)

BY_KIND: dict[str, ChannelSpec[Any]] = {spec.kind: spec for spec in SPECS}


def spec(kind: str) -> ChannelSpec[Any]:
    """The spec of channel type `kind` (KeyError for an unknown one)."""
    return BY_KIND[kind]

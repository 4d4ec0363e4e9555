"""Apprise with a `json://` URL pointing at a local receiver."""

from __future__ import annotations

import socket

import pytest

from ciwatch.channels import build_channel
from ciwatch.channels.apprise import AppriseSender
from ciwatch.config.models import AppriseChannel
from ciwatch.errors import ChannelError

from .conftest import RUN_URL, hostile, single
from .harness import Reply, WebhookReceiver

# Apprise's PGP helper imports the standard library's deprecated imghdr when its plugins load.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


def channel(url: str) -> AppriseSender:
    return AppriseSender(AppriseChannel(name="other", url=url), timeout=10.0)


def json_url(receiver: WebhookReceiver, query: str = "") -> str:
    return receiver.base.replace("http://", "json://") + "/notify" + (f"?{query}" if query else "")


async def test_delivered_through_json(json_target: WebhookReceiver) -> None:
    sender = channel(json_url(json_target))
    delivery = await sender.send(single("broken"))
    await sender.close()
    assert delivery.answer.startswith("apprise: delivered")
    [request] = json_target.requests
    assert request.path == "/notify"
    body = request.json()
    assert body["title"] == "🔴 Broken: group/app on main"
    for expected in ("group/app", "main", "#17", "test, lint", RUN_URL):
        assert expected in body["message"]


async def test_hostile_values_go_as_plain_text(json_target: WebhookReceiver) -> None:
    await channel(json_url(json_target)).send(hostile())
    body = json_target.requests[0].json()
    assert "<script>alert(1)</script>" in body["message"]  # plain text; Apprise escapes per target
    assert "javascript:alert" not in body["message"].replace("[x](javascript:alert(1))", "")


@pytest.mark.parametrize("status", [400, 500, 503])
async def test_failure_is_retryable_and_not_retried_by_apprise(
    json_target: WebhookReceiver, status: int
) -> None:
    json_target.default = Reply(status, "no")
    sender = channel(json_url(json_target, "retry=3"))
    with pytest.raises(ChannelError, match="not delivered") as caught:
        await sender.send(single())
    assert not caught.value.permanent
    assert len(json_target.requests) == 1  # Apprise's own retries are off


async def test_unreachable_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ChannelError) as caught:
        await channel(f"json://127.0.0.1:{port}/").send(single())
    assert not caught.value.permanent


async def test_unknown_scheme_is_permanent() -> None:
    with pytest.raises(ChannelError, match=r"does not understand the URL nosuchservice://\*\*\*"):
        await channel("nosuchservice://token@host").send(single())


async def test_registry_builds_apprise(json_target: WebhookReceiver) -> None:
    sender = build_channel(AppriseChannel(name="other", url=json_url(json_target)))
    assert isinstance(sender, AppriseSender) and sender.kind == "apprise"
    await sender.send(single())
    assert len(json_target.requests) == 1

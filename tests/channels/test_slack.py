"""Slack incoming webhook against a local hook that checks Block Kit and answers like Slack."""

from __future__ import annotations

import aiohttp
import pytest

from ciwatch.channels import make_test_message
from ciwatch.channels.slack import SlackSender
from ciwatch.config.models import SlackChannel
from ciwatch.errors import ChannelError

from .conftest import RUN_URL, grouped, hostile, single
from .harness import Reply, SlackWebhook


def channel(url: str, session: aiohttp.ClientSession) -> SlackSender:
    return SlackSender(SlackChannel(name="ops", url=url), session=session)


async def test_blocks_and_fallback_delivered(
    slack: SlackWebhook, session: aiohttp.ClientSession
) -> None:
    delivery = await channel(slack.url, session).send(single("recovered", flaky=True))
    assert delivery.answer == "HTTP 200 ok"
    [payload] = slack.messages
    assert payload["text"].startswith("✅ Recovered: group/app on main")
    assert RUN_URL in payload["text"]
    header, fields, links = payload["blocks"]
    assert header["text"] == {
        "type": "plain_text",
        "text": "✅ Recovered: group/app on main",
        "emoji": True,
    }
    texts = [field["text"] for field in fields["fields"]]
    assert f"*Run*\nCI <{RUN_URL}|#17>" in texts
    assert "*Red for*\n2h 03m" in texts
    assert any(text.startswith("*Likely flaky*") for text in texts)
    assert f"<{RUN_URL}|Open the run>" in links["text"]["text"]


async def test_grouped_message_stays_valid(
    slack: SlackWebhook, session: aiohttp.ClientSession
) -> None:
    await channel(slack.url, session).send(grouped(60))
    [payload] = slack.messages
    assert payload["blocks"][0]["text"]["text"] == "🔴 60 refs broke in group/*"
    assert len(payload["blocks"]) <= 50
    assert "group/app-0" in payload["blocks"][1]["text"]["text"]


async def test_hostile_values(slack: SlackWebhook, session: aiohttp.ClientSession) -> None:
    await channel(slack.url, session).send(hostile())
    [payload] = slack.messages
    body = str(payload)
    assert "<!channel>" not in body and "<@U123>" not in body
    assert "<http://evil.example|click>" not in body
    assert "<javascript" not in body and "|javascript" not in body


@pytest.mark.parametrize(
    ("reply", "permanent", "retry_after", "said"),
    [
        (Reply(429, "rate_limited", {"Retry-After": "7"}), False, 7.0, "rate_limited"),
        (Reply(429, "rate_limited"), False, None, "rate_limited"),
        (Reply(500, "internal_error"), False, None, "internal_error"),
        (Reply(503, "", {"Retry-After": "30"}), False, 30.0, "(empty body)"),
        (Reply(400, "invalid_payload"), True, None, "invalid_payload"),
        (Reply(400, "no_text"), True, None, "no_text"),
        (Reply(403, "action_prohibited"), True, None, "action_prohibited"),
        (Reply(404, "channel_not_found"), True, None, "channel_not_found"),
        (Reply(410, "channel_is_archived"), True, None, "channel_is_archived"),
        (Reply(302, "", {"Location": "https://example.com/"}), True, None, "redirect"),
    ],
)
async def test_errors(
    slack: SlackWebhook,
    session: aiohttp.ClientSession,
    reply: Reply,
    permanent: bool,
    retry_after: float | None,
    said: str,
) -> None:
    slack.script.append(reply)
    with pytest.raises(ChannelError) as caught:
        await channel(slack.url, session).send(single())
    error = caught.value
    assert error.permanent is permanent
    assert (
        error.retry_after == pytest.approx(retry_after)
        if retry_after
        else error.retry_after is None
    )
    assert f"HTTP {reply.status}" in str(error) and said in str(error)
    assert "slack-secret" not in str(error)


async def test_unknown_hook_is_no_service(
    slack: SlackWebhook, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(ChannelError, match="HTTP 404 no_service") as caught:
        await channel(slack.url.replace("slack-secret", "revoked"), session).send(single())
    assert caught.value.permanent
    assert "revoked" not in str(caught.value)


async def test_own_session_is_created_and_closed(slack: SlackWebhook) -> None:
    sender = SlackSender(SlackChannel(name="ops", url=slack.url))
    await sender.send(single())
    await sender.send(single())
    await sender.close()
    await sender.close()  # twice is fine
    assert len(slack.messages) == 2


async def test_test_message(slack: SlackWebhook, session: aiohttp.ClientSession) -> None:
    message = make_test_message(dashboard_url="https://ciwatch.example.com/")
    delivery = await channel(slack.url, session).send(message)
    assert delivery.answer == "HTTP 200 ok"
    assert slack.messages[0]["text"].startswith("🔔 Test message from ciwatch")

"""The JSON webhook: event schema, signature, headers, and how answers are classified."""

from __future__ import annotations

import hashlib
import hmac
import json

import aiohttp
import pytest

from ciwatch.channels import make_test_message
from ciwatch.channels.webhook import SIGNATURE_HEADER, WebhookSender, signature
from ciwatch.config.models import WebhookChannel
from ciwatch.errors import ChannelError
from ciwatch.serialize import run_to_dict

from .conftest import DASHBOARD, RUN_URL, grouped, hostile, notice, single
from .harness import Reply, WebhookReceiver


def channel(
    url: str,
    session: aiohttp.ClientSession,
    *,
    secret: str | None = "hook-secret",  # noqa: S107 - the test receiver's secret
    headers: dict[str, str] | None = None,
) -> WebhookSender:
    settings = WebhookChannel(name="hook", url=url, secret=secret, headers=headers or {})
    return WebhookSender(settings, session=session)


async def test_event_schema(receiver: WebhookReceiver, session: aiohttp.ClientSession) -> None:
    message = single("recovered", flaky=True)
    delivery = await channel(receiver.url, session).send(message)
    assert delivery.answer == "HTTP 204"
    [event] = receiver.events
    assert event == {
        "version": 1,
        "event": "recovered",
        "fingerprint": "recovered:gitlab-main:group/app:main",
        "source": "gitlab-main",
        "project": "group/app",
        "ref": "main",
        "run": run_to_dict(message.notices[0].run),  # type: ignore[arg-type]
        "failing_jobs": [],
        "red_for_seconds": 7380.0,
        "flaky": True,
        "likely_flaky": None,
        "at_start": False,
        "detail": None,
        "green_sha": None,
        "commit_range": None,
        "people": [],
        "links": {"run": RUN_URL, "dashboard": DASHBOARD},
        "summary": "✅ Recovered: group/app on main",
    }
    assert event["run"]["finished_at"] == "2026-01-05T09:05:00Z"
    assert receiver.requests[0].headers["x-ciwatch-event"] == "recovered"


async def test_grouped_schema(receiver: WebhookReceiver, session: aiohttp.ClientSession) -> None:
    await channel(receiver.url, session).send(grouped(3))
    [document] = receiver.events
    assert document["version"] == 1 and document["group"] == "group/*"
    assert document["summary"] == "🔴 3 refs broke in group/*"
    assert [event["project"] for event in document["events"]] == [
        "group/app-0",
        "group/app-1",
        "group/app-2",
    ]
    assert all("version" not in event for event in document["events"])
    assert document["events"][0]["failing_jobs"] == ["test", "lint"]
    assert receiver.requests[0].headers["x-ciwatch-event"] == "group"


async def test_signature_is_hmac_of_the_exact_body(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    await channel(receiver.url, session).send(single())
    request = receiver.requests[0]
    expected = hmac.new(b"hook-secret", request.body, hashlib.sha256).hexdigest()
    assert request.headers[SIGNATURE_HEADER.lower()] == f"sha256={expected}"
    assert signature("hook-secret", request.body) == f"sha256={expected}"


async def test_wrong_secret_is_refused_permanently(
    receiver: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    for secret in ("other-secret", None):
        with pytest.raises(ChannelError, match="HTTP 401 bad signature") as caught:
            await channel(receiver.url, session, secret=secret).send(single())
        assert caught.value.permanent
    assert not receiver.events


async def test_custom_headers_and_ours_win(
    json_target: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": "Bearer t0ken", "content-type": "text/plain", "X-Team": "ci"}
    await channel(json_target.url, session, secret=None, headers=headers).send(single())
    sent = json_target.requests[0].headers
    assert sent["authorization"] == "Bearer t0ken" and sent["x-team"] == "ci"
    assert sent["content-type"] == "application/json"
    assert SIGNATURE_HEADER.lower() not in sent


async def test_null_run_and_unsafe_links(
    json_target: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    sender = channel(json_target.url, session, secret=None)
    await sender.send(single("broken", run=None, dashboard_url=None))
    await sender.send(hostile())
    plain, bad = json_target.events
    assert plain["run"] is None and plain["links"] == {"run": None, "dashboard": None}
    assert bad["links"]["run"] is None  # javascript: never passed on as a link
    assert bad["project"] == "<script>alert(1)</script>/*bold*"  # raw data, JSON-escaped
    assert json.loads(json_target.requests[1].body)["run"]["author"] == "<!channel> <@U123>"


@pytest.mark.parametrize(
    ("reply", "permanent", "retry_after"),
    [
        (Reply(429, "slow down", {"Retry-After": "12"}), False, 12.0),
        (Reply(503, "maintenance", {"Retry-After": "120"}), False, 120.0),
        (Reply(500, "boom"), False, None),
        (Reply(502, "<html>bad gateway</html>", content_type="text/html"), False, None),
        (Reply(408, "timeout"), False, None),
        (Reply(400, "bad event"), True, None),
        (Reply(404, "gone"), True, None),
        (Reply(410, "gone for good"), True, None),
        (Reply(301, "", {"Location": "https://elsewhere.example/"}), True, None),
    ],
)
async def test_answers(
    receiver: WebhookReceiver,
    session: aiohttp.ClientSession,
    reply: Reply,
    permanent: bool,
    retry_after: float | None,
) -> None:
    receiver.script.append(reply)
    with pytest.raises(ChannelError) as caught:
        await channel(receiver.url, session).send(single())
    assert caught.value.permanent is permanent
    if retry_after is None:
        assert caught.value.retry_after is None
    else:
        assert caught.value.retry_after == pytest.approx(retry_after)


@pytest.mark.parametrize("status", [200, 201, 202])
async def test_2xx_is_delivered(
    receiver: WebhookReceiver, session: aiohttp.ClientSession, status: int
) -> None:
    receiver.script.append(Reply(status, "thanks"))
    delivery = await channel(receiver.url, session).send(single(notice("stuck").kind))
    assert delivery.answer == f"HTTP {status} thanks"


async def test_test_message(json_target: WebhookReceiver, session: aiohttp.ClientSession) -> None:
    await channel(json_target.url, session, secret=None).send(make_test_message())
    [event] = json_target.events
    assert event["event"] == "test" and event["run"] is None
    assert event["summary"] == "🔔 Test message from ciwatch"


async def test_a_header_that_cannot_be_sent_is_permanent(
    json_target: WebhookReceiver, session: aiohttp.ClientSession
) -> None:
    sender = channel(json_target.url, session, headers={"X-Bad": "a\r\nInjected: yes"})
    with pytest.raises(ChannelError, match="cannot be sent") as caught:
        await sender.send(single())
    assert caught.value.permanent
    assert not json_target.requests

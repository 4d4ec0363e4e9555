"""The start summary (`alerts.on_start: summary`): one message naming the refs that were already
failing when ciwatch started, in every format, sent through every kind of channel to the local
receivers."""

from __future__ import annotations

import json
from collections.abc import Callable

import aiohttp
import pytest

from ciwatch.channels import Message, dingtalk, email, slack, wecom
from ciwatch.channels import render as r
from ciwatch.channels.apprise import AppriseSender
from ciwatch.channels.dingtalk import DingTalkSender
from ciwatch.channels.email import EmailSender
from ciwatch.channels.slack import SlackSender
from ciwatch.channels.webhook import WebhookSender
from ciwatch.channels.wecom import WeComSender
from ciwatch.config.models import (
    AppriseChannel,
    DingTalkChannel,
    EmailChannel,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
)

from .conftest import HOSTILE, notice
from .harness import (
    Certificates,
    DingTalkRobot,
    SlackWebhook,
    SmtpServer,
    WebhookReceiver,
    WeComRobot,
)

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

TITLE = "🔴 12 refs were already failing when ciwatch started"
LISTED = [f"team/app-{i:02d}" for i in range(r.START_MAX_REFS)]
COUNTED = ["team/app-10", "team/app-11"]


def summary(count: int = 12) -> Message:
    """What the delivery worker builds from `count` rows of the start group."""
    notices = tuple(
        notice(
            "broken",
            project=f"team/app-{i:02d}",
            at_start=True,
            fingerprint=f"broken:gitlab-main:team/app-{i:02d}:main",
            run_fields={"run_id": str(3000 + i), "number": 200 + i},
        )
        for i in range(count)
    )
    return Message(notices, group="already failing at start")


def _names_the_first_refs_and_counts_the_rest(out: str) -> None:
    for project in LISTED:
        assert project in out, project
    for project in COUNTED:
        assert project not in out, project
    assert "and 2 more" in out


FORMATS: dict[str, Callable[[Message], str]] = {
    "text": r.render_text,
    "robot_text": r.render_robot_text,
    "dingtalk": lambda m: dingtalk.markdown(m),
    "wecom": lambda m: wecom.markdown(m),
    "slack": slack.render_slack_text,
    "slack_blocks": lambda m: json.dumps(slack.render_slack_blocks(m), ensure_ascii=False),
    "html": email.render_html,
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_says_already_failing_and_bounds_the_list(fmt: str) -> None:
    out = FORMATS[fmt](summary())
    if fmt == "slack":  # the fallback is one sentence
        assert out.startswith("12 refs were already failing when ciwatch started: team/app-00 main")
    else:
        assert TITLE in out
    _names_the_first_refs_and_counts_the_rest(out)


def test_titles_and_sentence() -> None:
    assert r.render_title(summary()) == TITLE
    assert r.render_title(summary(1)) == "🔴 1 ref was already failing when ciwatch started"
    assert r.PLAIN.parts(r.start_sentence(summary(2))) == (
        "2 refs were already failing when ciwatch started: team/app-00 main, team/app-01 main"
    )
    assert r.PLAIN.parts(r.start_sentence(summary(11))).endswith("team/app-09 main and 1 more")
    # Not every notice at_start (a route sharing the group's name): an ordinary group.
    mixed = Message((*summary(2).notices, notice("broken")), group="g")
    assert r.render_title(mixed) == "🔴 3 refs broke in g"


def test_one_ref_alone_is_still_the_summary() -> None:
    text = r.render_text(summary(1))
    assert text.startswith("🔴 1 ref was already failing when ciwatch started\n\n- ")
    assert "- 🔴 team/app-00 · main · #200 https://" in text
    assert " failed · failing: test, lint · dashboard https://" in text
    assert "more" not in text


def test_ci_values_in_the_summary_are_neutralised() -> None:
    hostile = notice("broken", project=HOSTILE["project"], ref=HOSTILE["ref"], at_start=True)
    message = Message((hostile, *summary(2).notices))
    slack_text = slack.render_slack_text(message)  # the sentence: a new place for CI values
    assert "<script>" not in slack_text and "&lt;script&gt;" in slack_text
    assert "*bold*" not in slack_text
    for markdown in (dingtalk.markdown, wecom.markdown):
        out = markdown(message)
        assert "*bold*" not in out and "](javascript" not in out and "<script>" not in out
    html = email.render_html(message)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_only_broken_notices_can_be_at_start() -> None:
    with pytest.raises(ValueError, match="only a broken notice can be at_start"):
        notice("recovered", at_start=True)


# --- through each kind of channel, to the local receivers ----------------------------------


async def test_slack(slack: SlackWebhook, session: aiohttp.ClientSession) -> None:
    sender = SlackSender(SlackChannel(name="ops", url=slack.url), session=session)
    await sender.send(summary())
    [payload] = slack.messages  # the receiver checked the blocks as Slack would
    header, *sections, more = payload["blocks"]
    assert header["text"]["text"] == TITLE
    assert len(sections) == r.START_MAX_REFS
    assert more == {"type": "context", "elements": [{"type": "mrkdwn", "text": "… and 2 more"}]}
    _names_the_first_refs_and_counts_the_rest(payload["text"])


async def test_webhook(receiver: WebhookReceiver, session: aiohttp.ClientSession) -> None:
    settings = WebhookChannel(name="hook", url=receiver.url, secret="hook-secret")
    await WebhookSender(settings, session=session).send(summary())
    [document] = receiver.events
    assert document["summary"].startswith("12 refs were already failing when ciwatch started: ")
    _names_the_first_refs_and_counts_the_rest(document["summary"])
    # The events are every ref, machine-readable: broken, at_start.
    assert [e["project"] for e in document["events"]] == LISTED + COUNTED
    assert {(e["event"], e["at_start"]) for e in document["events"]} == {("broken", True)}


async def test_dingtalk(dingtalk: DingTalkRobot, session: aiohttp.ClientSession) -> None:
    settings = DingTalkChannel(name="ding", url=dingtalk.url)
    await DingTalkSender(settings, session=session).send(summary())
    [payload] = dingtalk.messages
    assert payload["markdown"]["title"] == TITLE
    assert payload["markdown"]["text"].startswith(f"### {TITLE}\n\n- ")
    _names_the_first_refs_and_counts_the_rest(payload["markdown"]["text"])


@pytest.mark.parametrize("mobiles", [[], ["13800000000"]])
async def test_wecom(wecom: WeComRobot, session: aiohttp.ClientSession, mobiles: list[str]) -> None:
    settings = WeComChannel(name="wx", url=wecom.url, mentioned_mobile_list=mobiles)
    await WeComSender(settings, session=session).send(summary())
    [payload] = wecom.messages
    text = payload["text"]["content"] if mobiles else payload["markdown"]["content"]
    assert TITLE in text
    _names_the_first_refs_and_counts_the_rest(text)


async def test_email(smtp_plain: SmtpServer, certificates: Certificates) -> None:
    settings = EmailChannel.model_validate(
        {
            "name": "mail",
            "type": "email",
            "smtp_url": smtp_plain.url(),
            "from": "ci@example.com",
            "to": ["dev@example.com"],
        }
    )
    sender = EmailSender(settings, tls_context=certificates.client_context(), timeout=5.0)
    await sender.send(summary())
    [mail] = smtp_plain.mailbox.mails
    message = mail.message
    assert message["Subject"] == f"[ciwatch] {TITLE}"
    for subtype in ("plain", "html"):
        body = message.get_body((subtype,))
        assert body is not None
        _names_the_first_refs_and_counts_the_rest(body.get_content())


async def test_apprise(json_target: WebhookReceiver) -> None:
    url = json_target.base.replace("http://", "json://") + "/notify"
    sender = AppriseSender(AppriseChannel(name="other", url=url), timeout=10.0)
    await sender.send(summary())
    await sender.close()
    body = json_target.requests[0].json()
    assert body["title"] == TITLE
    _names_the_first_refs_and_counts_the_rest(body["message"])

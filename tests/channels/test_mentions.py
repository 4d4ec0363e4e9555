"""A breaking message mentions the people (`people:`) of the breaking run in each channel's own
syntax, delivered to real receivers: Slack `<@U…>`, DingTalk `at.atMobiles` / `at.atUserIds`
with `@…` in the text, WeCom `<@userid>` (markdown) or `mentioned_list` (text), e-mail Cc."""

from __future__ import annotations

import aiohttp

from ciwatch.alerting.delivery import notice_from_payload, notice_to_payload
from ciwatch.alerting.people import People
from ciwatch.channels.base import Message, Person
from ciwatch.channels.dingtalk import DingTalkSender
from ciwatch.channels.email import EmailSender
from ciwatch.channels.slack import SlackSender
from ciwatch.channels.wecom import WeComSender
from ciwatch.config.models import (
    DingTalkChannel,
    EmailChannel,
    PersonSettings,
    SlackChannel,
    WeComChannel,
)
from factories import make_run

from .conftest import notice
from .harness import Certificates, DingTalkRobot, SlackWebhook, SmtpServer, WeComRobot

ADA = Person(
    "ada",
    slack="U012AB3CD",
    dingtalk="13800000000",
    wecom="ada.l",
    email="Ada Lovelace <ada@example.com>",
)
BOB = Person("bob", dingtalk="bob-user", email="bob@example.com")


def mentioning(*people: Person) -> Message:
    return Message((notice(people=people),))


async def test_slack(slack: SlackWebhook, session: aiohttp.ClientSession) -> None:
    sender = SlackSender(SlackChannel(name="ops", url=slack.url), session=session)
    await sender.send(mentioning(ADA, BOB))
    [payload] = slack.messages
    assert payload["text"].endswith("\ncc <@U012AB3CD>")
    assert payload["blocks"][-1] == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "cc <@U012AB3CD>"},
    }


async def test_dingtalk(dingtalk: DingTalkRobot, session: aiohttp.ClientSession) -> None:
    settings = DingTalkChannel(name="ding", url=dingtalk.url, at_user_ids=["lead"])
    await DingTalkSender(settings, session=session).send(mentioning(ADA, BOB))
    [payload] = dingtalk.messages
    assert payload["at"] == {
        "atMobiles": ["13800000000"],
        "atUserIds": ["lead", "bob-user"],
        "isAtAll": False,
    }
    assert payload["markdown"]["text"].endswith("@13800000000 @lead @bob-user")


async def test_wecom_markdown_and_text(wecom: WeComRobot, session: aiohttp.ClientSession) -> None:
    plain = WeComSender(WeComChannel(name="w", url=wecom.url), session=session)
    await plain.send(mentioning(ADA))
    texted = WeComSender(
        WeComChannel(name="w", url=wecom.url, mentioned_mobile_list=["13900000000"]),
        session=session,
    )
    await texted.send(mentioning(ADA))
    markdown, text = wecom.messages
    assert markdown["markdown"]["content"].endswith("\n<@ada.l>")
    assert text["text"]["mentioned_list"] == ["ada.l"]
    assert text["text"]["mentioned_mobile_list"] == ["13900000000"]


async def test_email_cc(smtp_starttls: SmtpServer, certificates: Certificates) -> None:
    settings = EmailChannel.model_validate(
        {
            "name": "mail",
            "type": "email",
            "smtp_url": smtp_starttls.url(login=("ci", "s3cret%3A%2F%40")),
            "from": "ciwatch <ci@example.com>",
            "to": ["dev@example.com", "bob@example.com"],
        }
    )
    sender = EmailSender(settings, tls_context=certificates.client_context(), timeout=5.0)
    delivery = await sender.send(mentioning(ADA, BOB))
    assert "3 of 3" in delivery.answer
    [mail] = smtp_starttls.mailbox.mails
    # Bob is already an addressee: not repeated on Cc.
    assert mail.rcpt_tos == ["dev@example.com", "bob@example.com", "ada@example.com"]
    assert mail.message["Cc"] == "ada@example.com"
    assert mail.message["To"] == "dev@example.com, bob@example.com"


async def test_no_people_no_mentions(slack: SlackWebhook, session: aiohttp.ClientSession) -> None:
    await SlackSender(SlackChannel(name="ops", url=slack.url), session=session).send(mentioning())
    [payload] = slack.messages
    assert "<@" not in payload["text"]


def test_people_match_login_email_or_name_without_case() -> None:
    people = People(
        [
            PersonSettings(names=["ada", "ada@example.com"], slack="U012AB3CD"),
            PersonSettings(names=["Bob Builder"], email="bob@example.com"),
        ]
    )
    by_login = make_run(author="ADA")
    assert [p.name for p in people.of(by_login)] == ["ada"]
    by_commit = make_run(author="ci-bot", commit_author="bob builder", commit_email="x@y.z")
    assert [p.name for p in people.of(by_commit)] == ["Bob Builder"]
    both = make_run(author="ada", commit_email="Ada@Example.com", commit_author="Bob Builder")
    assert [p.name for p in people.of(both)] == ["ada", "Bob Builder"]
    assert people.of(make_run(author="nobody")) == ()


def test_people_survive_the_outbox() -> None:
    original = notice(people=(ADA, BOB), green_sha="a" * 40)
    assert notice_from_payload(notice_to_payload(original)) == original

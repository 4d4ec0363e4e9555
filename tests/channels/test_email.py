"""E-mail through real aiosmtpd servers: STARTTLS, implicit TLS, plain; refusals and errors."""

from __future__ import annotations

import socket

import pytest

from ciwatch.channels import build_channel
from ciwatch.channels.email import EmailSender
from ciwatch.config.models import EmailChannel
from ciwatch.errors import ChannelError, ConfigError

from .conftest import DASHBOARD, RUN_URL, grouped, hostile, single
from .harness import Certificates, Mail, SmtpServer

TO = ["dev@example.com", "Ops Team <ops@example.com>"]


def settings(url: str, *, to: list[str] | None = None, prefix: str = "[ciwatch]") -> EmailChannel:
    return EmailChannel.model_validate(
        {
            "name": "mail",
            "type": "email",
            "smtp_url": url,
            "from": "ciwatch <ci@example.com>",
            "to": to or TO,
            "subject_prefix": prefix,
        }
    )


def sender(
    url: str,
    certificates: Certificates | None,
    *,
    to: list[str] | None = None,
    prefix: str = "[ciwatch]",
) -> EmailSender:
    context = certificates.client_context() if certificates else None
    return EmailSender(
        settings(url, to=to, prefix=prefix),
        tls_context=context,
        timeout=5.0,
        local_hostname="ciwatch.test",
    )


def parts(mail: Mail) -> tuple[str, str]:
    message = mail.message
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None and html is not None
    return plain.get_content(), html.get_content()


async def test_starttls_with_login(smtp_starttls: SmtpServer, certificates: Certificates) -> None:
    url = smtp_starttls.url(login=("ci", "s3cret%3A%2F%40"))  # password "s3cret:/@", URL-encoded
    delivery = await sender(url, certificates).send(single("broken"))
    assert "Message accepted" in delivery.answer and "2 of 2" in delivery.answer
    [mail] = smtp_starttls.mailbox.mails
    assert mail.tls and mail.login == "ci"
    assert mail.mail_from == "ci@example.com"
    assert mail.rcpt_tos == ["dev@example.com", "ops@example.com"]
    message = mail.message
    assert message["Subject"] == "[ciwatch] 🔴 Broken: group/app on main"
    assert message["To"] == "dev@example.com, Ops Team <ops@example.com>"
    assert message["From"] == "ciwatch <ci@example.com>"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Ciwatch-Fingerprint"] == "broken:gitlab-main:group/app:main"
    assert message["Message-ID"].endswith("@example.com>")
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts(mail)
    for expected in ("group/app", "main", "#17", "test, lint", "alice", RUN_URL, DASHBOARD):
        assert expected in text
        assert expected in html
    assert f'<a href="{RUN_URL}">#17</a>' in html


async def test_implicit_tls(smtp_implicit: SmtpServer, certificates: Certificates) -> None:
    url = smtp_implicit.url(login=("ci", "s3cret"))
    assert url.startswith("smtps://")
    await sender(url, certificates, to=["a@example.com"], prefix="").send(grouped(3))
    [mail] = smtp_implicit.mailbox.mails
    assert mail.login == "ci" and mail.rcpt_tos == ["a@example.com"]
    assert mail.message["Subject"] == "🔴 3 refs broke in group/*"
    text, html = parts(mail)
    assert all(f"group/app-{i}" in text and f"group/app-{i}" in html for i in range(3))


async def test_hostile_values_are_escaped_in_html(
    smtp_starttls: SmtpServer, certificates: Certificates
) -> None:
    url = smtp_starttls.url(login=("ci", "s3cret%3A%2F%40"))
    await sender(url, certificates).send(hostile())
    text, html = parts(smtp_starttls.mailbox.mails[0])
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert 'href="javascript' not in html
    assert "<script>alert(1)</script>" in text  # plain text is plain
    subject = smtp_starttls.mailbox.mails[0].message["Subject"]
    assert "\n" not in subject


async def test_untrusted_certificate_is_permanent(smtp_starttls: SmtpServer) -> None:
    url = smtp_starttls.url(login=("ci", "s3cret%3A%2F%40"))
    with pytest.raises(ChannelError, match="certificate") as caught:
        await sender(url, None).send(single())  # the system CAs do not know the test CA
    assert caught.value.permanent
    assert "s3cret" not in str(caught.value)
    assert not smtp_starttls.mailbox.mails


async def test_untrusted_certificate_on_implicit_tls(smtp_implicit: SmtpServer) -> None:
    with pytest.raises(ChannelError, match="certificate") as caught:
        await sender(smtp_implicit.url(), None).send(single())
    assert caught.value.permanent


async def test_certificate_for_another_name_is_permanent() -> None:
    elsewhere = Certificates(names=("mail.example.org",))  # trusted CA, another host's name
    server = SmtpServer("starttls", elsewhere)
    await server.start()
    try:
        with pytest.raises(ChannelError, match="certificate") as caught:
            await sender(server.url(), elsewhere).send(single())
    finally:
        await server.stop()
    assert caught.value.permanent
    assert not server.mailbox.mails


async def test_localhost_matches_the_certificate(
    smtp_starttls: SmtpServer, certificates: Certificates
) -> None:
    url = smtp_starttls.url(login=("ci", "s3cret%3A%2F%40")).replace("127.0.0.1", "localhost")
    await sender(url, certificates).send(single())
    assert smtp_starttls.mailbox.mails[0].tls


@pytest.mark.parametrize(
    ("query", "login", "match"),
    [
        ("starttls=require", None, "does not offer STARTTLS"),
        ("", ("ci", "s3cret"), "refusing to send the password"),
        ("starttls=never", ("ci", "s3cret"), "refusing to send the password"),
    ],
)
async def test_no_starttls_offered(
    smtp_plain: SmtpServer,
    certificates: Certificates,
    query: str,
    login: tuple[str, str] | None,
    match: str,
) -> None:
    with pytest.raises(ChannelError, match=match) as caught:
        await sender(smtp_plain.url(login=login, query=query), certificates).send(single())
    assert caught.value.permanent
    assert not smtp_plain.mailbox.mails


@pytest.mark.parametrize("query", ["", "starttls=auto", "starttls=never"])
async def test_plain_relay_without_password(
    smtp_plain: SmtpServer, certificates: Certificates, query: str
) -> None:
    await sender(smtp_plain.url(query=query), certificates).send(single())
    [mail] = smtp_plain.mailbox.mails
    assert not mail.tls


async def test_starttls_required_and_offered(
    smtp_starttls: SmtpServer, certificates: Certificates
) -> None:
    url = smtp_starttls.url(login=("ci", "s3cret%3A%2F%40"), query="starttls=require")
    await sender(url, certificates).send(single())
    assert smtp_starttls.mailbox.mails[0].tls


async def test_wrong_password_is_permanent(
    smtp_starttls: SmtpServer, certificates: Certificates
) -> None:
    with pytest.raises(ChannelError, match="SMTP 535") as caught:
        await sender(smtp_starttls.url(login=("ci", "nope")), certificates).send(single())
    assert caught.value.permanent
    assert "nope" not in str(caught.value)


async def test_some_recipients_refused_is_delivered(
    smtp_starttls: SmtpServer, certificates: Certificates
) -> None:
    smtp_starttls.mailbox.refuse["ops@example.com"] = "550 5.1.1 No such user"
    url = smtp_starttls.url(login=("ci", "s3cret%3A%2F%40"))
    delivery = await sender(url, certificates).send(single())
    assert "1 of 2" in delivery.answer
    assert "refused: ops@example.com (550 5.1.1 No such user)" in delivery.answer
    assert smtp_starttls.mailbox.mails[0].rcpt_tos == ["dev@example.com"]


@pytest.mark.parametrize(
    ("refusals", "permanent"),
    [
        (("550 5.1.1 No such user", "553 5.1.3 Bad address"), True),
        (("450 4.2.1 Mailbox busy", "550 5.1.1 No such user"), False),
    ],
)
async def test_every_recipient_refused(
    smtp_starttls: SmtpServer,
    certificates: Certificates,
    refusals: tuple[str, str],
    permanent: bool,
) -> None:
    smtp_starttls.mailbox.refuse["dev@example.com"] = refusals[0]
    smtp_starttls.mailbox.refuse["ops@example.com"] = refusals[1]
    url = smtp_starttls.url(login=("ci", "s3cret%3A%2F%40"))
    with pytest.raises(ChannelError, match="every recipient refused") as caught:
        await sender(url, certificates).send(single())
    assert caught.value.permanent is permanent


@pytest.mark.parametrize(
    ("reply", "permanent"),
    [
        ("554 5.7.1 Message rejected as spam", True),
        ("552 5.3.4 Message too big", True),
        ("451 4.3.0 Try again later", False),
        ("421 4.7.0 Too many connections", False),
    ],
)
async def test_data_refused(
    smtp_starttls: SmtpServer, certificates: Certificates, reply: str, permanent: bool
) -> None:
    smtp_starttls.mailbox.data_reply = reply
    url = smtp_starttls.url(login=("ci", "s3cret%3A%2F%40"))
    with pytest.raises(ChannelError, match=f"SMTP {reply[:3]}") as caught:
        await sender(url, certificates).send(single())
    assert caught.value.permanent is permanent


async def test_connection_refused_is_retryable(certificates: Certificates) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ChannelError) as caught:
        await sender(f"smtp://127.0.0.1:{port}", certificates).send(single())
    assert not caught.value.permanent


@pytest.mark.parametrize(
    ("url", "host", "port", "implicit", "mode"),
    [
        ("smtp://mail.example.com", "mail.example.com", 587, False, "auto"),
        ("smtps://mail.example.com", "mail.example.com", 465, True, "auto"),
        ("smtp://u:p@mail.example.com:25?starttls=never", "mail.example.com", 25, False, "never"),
        (
            "SMTP://mail.example.com:2525?starttls=REQUIRE",
            "mail.example.com",
            2525,
            False,
            "require",
        ),
    ],
)
def test_url_parsing(url: str, host: str, port: int, implicit: bool, mode: str) -> None:
    target = EmailSender(settings(url)).target
    assert (target.host, target.port, target.implicit_tls, target.starttls) == (
        host,
        port,
        implicit,
        mode,
    )


def test_bad_starttls_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="starttls='maybe'"):
        EmailSender(settings("smtp://mail.example.com?starttls=maybe"))


async def test_registry_builds_email(smtp_plain: SmtpServer) -> None:
    channel = build_channel(settings(smtp_plain.url()))
    assert isinstance(channel, EmailSender) and channel.kind == "email"
    assert channel.min_interval == 0
    await channel.close()

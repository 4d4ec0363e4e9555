"""E-mail over SMTP with aiosmtplib: a multipart message (plain text and HTML) to every address
in `to`.

`smtp://USER:PASSWORD@HOST:PORT` (port 587 by default) upgrades the connection with STARTTLS;
`smtps://...` (port 465 by default) speaks TLS from the first byte. Certificates are verified
against the system's CAs (or the `tls_context` given, for tests or a private CA). The query
parameter `starttls` of an `smtp://` URL says what to do when the server offers no STARTTLS:

- `auto` (the default): go on in clear text, but never with a password (refused, permanent);
- `require`: refuse (permanent);
- `never`: do not even try (a relay on the same host, say).

A 5xx answer is permanent; 4xx answers, timeouts and lost connections are retryable. When some
recipients are refused and others accepted, the message counts as delivered (retrying would
send it again to those who got it) and the answer names the refused ones.
"""

from __future__ import annotations

import html
import ssl
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from ciwatch.channels.base import Delivery, Message
from ciwatch.channels.render import (
    Format,
    as_lines,
    facts,
    links,
    listed,
    render_text,
    render_title,
    start_more,
    start_rest,
    summary_line,
    title_parts,
)
from ciwatch.channels.spec import EXAMPLE_SECRET, ChannelSpec
from ciwatch.clock import Clock, SystemClock
from ciwatch.config.models import EmailChannel
from ciwatch.errors import ChannelError, ConfigError

if TYPE_CHECKING:
    import aiohttp

StartTls = Literal["auto", "require", "never"]
STARTTLS_MODES: tuple[StartTls, ...] = ("auto", "require", "never")
DEFAULT_PORTS = {"smtp": 587, "smtps": 465}

HTML = Format(
    lambda text: html.escape(text, quote=True),
    lambda text: html.escape(text, quote=True),
    lambda label, url: f'<a href="{html.escape(url, quote=True)}">{label}</a>',
    lambda text: f"<strong>{text}</strong>",
)


_HTML_STYLE = (
    "font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:14px;color:#1f2328"
)


def render_html(message: Message) -> str:
    """A small HTML document for the e-mail's HTML part; every value escaped."""
    fmt = HTML
    title = fmt.parts(title_parts(message))
    body: list[str] = [f'<h2 style="font-size:18px;margin:0 0 12px">{title}</h2>']
    if as_lines(message):
        mixed = len({notice.kind for notice in message.notices}) > 1
        items = "".join(
            f"<li>{fmt.parts(summary_line(n, with_kind=mixed))}</li>" for n in listed(message)
        )
        body.append(f"<ul>{items}</ul>")
        if message.at_start and start_rest(message):
            body.append(f"<p>{fmt.own(start_more(message))}</p>")
    else:
        notice = message.notices[0]
        rows = "".join(
            f'<tr><th align="left" style="padding:2px 12px 2px 0">{fmt.own(fact.label)}</th>'
            f"<td>{fmt.parts(fact.parts)}</td></tr>"
            for fact in facts(notice, message.zone)
        )
        body.append(f'<table style="border-collapse:collapse">{rows}</table>')
        found = links(notice)
        if found:
            body.append("<p>" + " · ".join(fmt.parts([link]) for link in found) + "</p>")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{title}</title></head>"
        f'<body style="{_HTML_STYLE}">{"".join(body)}</body></html>\n'
    )


def recipients(settings: EmailChannel) -> list[str]:
    return [address for _, address in getaddresses(settings.to) if address]


def cc(settings: EmailChannel, message: Message) -> list[str]:
    """The mentioned people's addresses (`people:` `email`), on Cc so that the channel's own
    `to` stays the addressee; an address already in `to` is not repeated."""
    mine = {address.lower() for address in recipients(settings)}
    found: dict[str, None] = {}
    for person in message.people:
        address = parseaddr(person.email or "")[1]
        if address and address.lower() not in mine:
            found[address] = None
    return list(found)


def payload(settings: EmailChannel, message: Message, now: datetime) -> EmailMessage:
    """The MIME message: text/plain and text/html alternatives, dated `now`."""
    mail = EmailMessage()
    prefix = settings.subject_prefix.strip()
    title = render_title(message)
    mail["Subject"] = f"{prefix} {title}" if prefix else title
    mail["From"] = settings.from_
    mail["To"] = ", ".join(settings.to)
    copied = cc(settings, message)
    if copied:
        mail["Cc"] = ", ".join(copied)
    mail["Date"] = format_datetime(now)
    domain = parseaddr(settings.from_)[1].rpartition("@")[2] or "ciwatch.invalid"
    mail["Message-ID"] = make_msgid(domain=domain)
    mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
    if not message.grouped and message.notices[0].fingerprint:
        mail["X-Ciwatch-Fingerprint"] = message.notices[0].fingerprint
    mail.set_content(render_text(message))
    mail.add_alternative(render_html(message), subtype="html")
    return mail


@dataclass(frozen=True)
class SmtpReply:
    """What the server said to a message: its last answer, how many recipients were given, and
    those it refused (address -> reply)."""

    answer: str
    recipients: int
    refused: Mapping[str, aiosmtplib.SMTPResponse]


def verdict(reply: SmtpReply, label: str) -> Delivery:
    """Accepted for at least one recipient is delivered (retrying would send it again to those
    who got it); the answer names the refused ones. (Every recipient refused, and the other SMTP
    errors, are raised by the sender before a reply exists.)"""
    accepted = reply.recipients - len(reply.refused)
    text = f"{' '.join(reply.answer.split())} (accepted for {accepted} of {reply.recipients})"
    if reply.refused:
        text += "; refused: " + ", ".join(
            f"{address} ({answer.code} {' '.join(answer.message.split())})"
            for address, answer in reply.refused.items()
        )
    return Delivery(text)


class SmtpTarget:
    """What an `smtp://` / `smtps://` URL says: where, how, and as whom."""

    def __init__(self, url: str, *, channel: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ConfigError(f"channel {channel}: smtp_url must be smtp://HOST or smtps://HOST")
        self.implicit_tls = scheme == "smtps"
        self.host = parts.hostname
        self.port = parts.port or DEFAULT_PORTS[scheme]
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        mode = parse_qs(parts.query).get("starttls", ["auto"])[-1].lower()
        if mode not in STARTTLS_MODES:
            raise ConfigError(
                f"channel {channel}: smtp_url starttls={mode!r} is not one of "
                + ", ".join(STARTTLS_MODES)
            )
        self.starttls: StartTls = mode


class EmailSender:
    """Sends one e-mail per message (`EmailChannel` settings)."""

    kind = "email"
    min_interval = 0.0

    def __init__(
        self,
        settings: EmailChannel,
        *,
        tls_context: ssl.SSLContext | None = None,
        timeout: float = 30.0,
        local_hostname: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.target = SmtpTarget(settings.smtp_url, channel=settings.name)
        self.tls_context = tls_context or ssl.create_default_context()
        self.timeout = timeout
        self.local_hostname = local_hostname
        self.clock = clock or SystemClock()
        self.label = f"email {settings.name}"

    @property
    def sender(self) -> str:
        return parseaddr(self.settings.from_)[1]

    @property
    def recipients(self) -> list[str]:
        return recipients(self.settings)

    def cc(self, message: Message) -> list[str]:
        return cc(self.settings, message)

    def envelope(self, message: Message) -> list[str]:
        return [*self.recipients, *self.cc(message)]

    def build(self, message: Message) -> EmailMessage:
        """The MIME message (see `payload`)."""
        return payload(self.settings, message, self.clock.now())

    async def send(self, message: Message) -> Delivery:
        mail = self.build(message)
        recipients = self.envelope(message)
        target = self.target
        client = aiosmtplib.SMTP(
            hostname=target.host,
            port=target.port,
            use_tls=target.implicit_tls,
            start_tls=False,  # decided below, so a server without STARTTLS is handled our way
            tls_context=self.tls_context,
            timeout=self.timeout,
            local_hostname=self.local_hostname,
        )
        try:
            await client.connect()
            await self._secure(client)
            if target.username is not None:
                await client.login(target.username, target.password or "")
            refused, answer = await client.send_message(
                mail, sender=self.sender, recipients=recipients
            )
            with suppress(aiosmtplib.SMTPException, OSError):
                await client.quit()
        except ChannelError:
            raise
        except BaseException as exc:
            mapped = self._map(exc)
            if mapped is None:
                raise
            raise mapped from exc
        finally:
            client.close()
        return verdict(SmtpReply(answer, len(recipients), refused), self.label)

    async def close(self) -> None:
        """Nothing to release: each message uses a connection of its own."""

    async def _secure(self, client: aiosmtplib.SMTP) -> None:
        target = self.target
        if target.implicit_tls or target.starttls == "never":
            if not target.implicit_tls and target.username is not None:
                self._refuse_clear_password()
            return
        await client.ehlo()
        if client.supports_extension("starttls"):
            await client.starttls()
            return
        if target.starttls == "require":
            raise ChannelError(
                f"{self.label}: {target.host} does not offer STARTTLS (starttls=require)",
                permanent=True,
            )
        if target.username is not None:
            self._refuse_clear_password()

    def _refuse_clear_password(self) -> None:
        raise ChannelError(
            f"{self.label}: {self.target.host} offers no STARTTLS; refusing to send the "
            "password in clear text (use smtps://, or a server with STARTTLS)",
            permanent=True,
        )

    def _map(self, exc: BaseException) -> ChannelError | None:
        label = self.label
        if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
            codes = [refusal.code for refusal in exc.recipients]
            detail = "; ".join(
                f"{refusal.recipient}: {refusal.code} {refusal.message}"
                for refusal in exc.recipients
            )
            permanent = all(code >= 500 for code in codes)
            return ChannelError(f"{label}: every recipient refused: {detail}", permanent=permanent)
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            text = " ".join(exc.message.split())
            return ChannelError(f"{label}: SMTP {exc.code} {text}", permanent=exc.code >= 500)
        certificate = _certificate_error(exc)
        if certificate is not None:
            message = f"{label}: TLS certificate of {self.target.host} not accepted: {certificate}"
            return ChannelError(message, permanent=True)
        if isinstance(exc, OSError | TimeoutError):  # incl. lost connections and SMTP timeouts
            return ChannelError(f"{label}: {exc or type(exc).__name__}", permanent=False)
        if isinstance(exc, aiosmtplib.SMTPException):  # e.g. no AUTH offered: a setup problem
            return ChannelError(f"{label}: {exc}", permanent=True)
        return None


def _certificate_error(exc: BaseException) -> str | None:
    """The verification failure somewhere in `exc`'s chain of causes, if there is one."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _build(settings: EmailChannel, session: aiohttp.ClientSession | None) -> EmailSender:
    return EmailSender(settings)


SPEC = ChannelSpec(
    kind="email",
    title="E-mail",
    settings=EmailChannel,
    build=_build,
    payload=payload,
    verdict=verdict,
    example={
        "smtp_url": f"smtps://alerts:{EXAMPLE_SECRET}@smtp.example.com",
        "from": "ciwatch@example.com",
        "to": ["team@example.com"],
    },
    url_field="smtp_url",
)

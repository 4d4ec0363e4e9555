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

import ssl
from contextlib import suppress
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid, parseaddr
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from ciwatch.channels.base import Delivery, Message
from ciwatch.channels.render import render_html, render_text, render_title
from ciwatch.clock import Clock, SystemClock
from ciwatch.config.models import EmailChannel
from ciwatch.errors import ChannelError, ConfigError

StartTls = Literal["auto", "require", "never"]
STARTTLS_MODES: tuple[StartTls, ...] = ("auto", "require", "never")
DEFAULT_PORTS = {"smtp": 587, "smtps": 465}


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
        return [address for _, address in getaddresses(self.settings.to) if address]

    def cc(self, message: Message) -> list[str]:
        """The mentioned people's addresses (`people:` `email`), on Cc so that the channel's
        own `to` stays the addressee; an address already in `to` is not repeated."""
        mine = {address.lower() for address in self.recipients}
        found: dict[str, None] = {}
        for person in message.people:
            address = parseaddr(person.email or "")[1]
            if address and address.lower() not in mine:
                found[address] = None
        return list(found)

    def envelope(self, message: Message) -> list[str]:
        return [*self.recipients, *self.cc(message)]

    def build(self, message: Message) -> EmailMessage:
        """The MIME message: text/plain and text/html alternatives."""
        mail = EmailMessage()
        prefix = self.settings.subject_prefix.strip()
        title = render_title(message)
        mail["Subject"] = f"{prefix} {title}" if prefix else title
        mail["From"] = self.settings.from_
        mail["To"] = ", ".join(self.settings.to)
        cc = self.cc(message)
        if cc:
            mail["Cc"] = ", ".join(cc)
        mail["Date"] = format_datetime(self.clock.now())
        domain = self.sender.rpartition("@")[2] or "ciwatch.invalid"
        mail["Message-ID"] = make_msgid(domain=domain)
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies, please
        if not message.grouped and message.notices[0].fingerprint:
            mail["X-Ciwatch-Fingerprint"] = message.notices[0].fingerprint
        mail.set_content(render_text(message))
        mail.add_alternative(render_html(message), subtype="html")
        return mail

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
        accepted = len(recipients) - len(refused)
        text = f"{' '.join(answer.split())} (accepted for {accepted} of {len(recipients)})"
        if refused:
            text += "; refused: " + ", ".join(
                f"{address} ({reply.code} {' '.join(reply.message.split())})"
                for address, reply in refused.items()
            )
        return Delivery(text)

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

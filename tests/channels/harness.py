"""Real local receivers on 127.0.0.1 that answer like the services the channels talk to.

- `DingTalkRobot`: checks the token, the `timestamp`/`sign` pair (recomputed from the secret,
  more than an hour of skew refused), the body's shape; answers errcodes like DingTalk, with 20
  messages a minute; `script` queues errcodes (0, 130101, 310000, 300001, ...).
- `WeComRobot`: checks the key, the msgtype, the Markdown (4096 bytes) and text (2048 bytes)
  limits; 20 messages a minute; scripted errcodes (45009, 93000, ...).
- `FeishuBot`: checks the hook token, the `timestamp`/`sign` pair of the body (recomputed from
  the secret: HMAC-SHA256 keyed with `timestamp + "\\n" + secret` over nothing, more than an hour
  of skew refused), a keyword when it has one, the `post` shape and the 20 KB body limit;
  answers `{"code": 0, "msg": "success", "data": {}}` or Feishu's codes (19021, 19024, 9499 on
  HTTP 400, 11232); 100 messages a minute; `script` queues codes, `replies` whole answers.
- `SlackWebhook`: checks the path, the JSON and the Block Kit limits; answers `ok`, or the
  scripted (status, body, headers): 429 + Retry-After, 400 invalid_payload, 404 no_service.
- `WebhookReceiver`: checks `X-Ciwatch-Signature-256` when it has a secret; scripted answers.
  Also the target of Apprise's `json://` URLs.
- `SmtpServer`: aiosmtpd on the test's loop, STARTTLS, implicit TLS or plain, with AUTH, scripted
  refusals of recipients and of the DATA; `Mailbox` keeps what it accepted.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, ClassVar, Literal

import trustme
from aiohttp import web
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it (query values decoded, as a server would)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain"


class Receiver:
    """An aiohttp server on 127.0.0.1 with a random port that records every request."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._runner: web.AppRunner | None = None
        self.base = ""

    async def handle(self, request: web.Request, received: Received) -> web.StreamResponse:
        raise NotImplementedError

    async def _entry(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        received = Received(
            request.method,
            request.path,
            dict(request.query),
            {key.lower(): value for key, value in request.headers.items()},
            body,
        )
        self.requests.append(received)
        return await self.handle(request, received)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._entry)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, HOST, 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://{HOST}:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class RateWindow:
    """At most `limit` accepted messages in any 60 s."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.stamps: deque[float] = deque()

    def full(self) -> bool:
        now = time.monotonic()
        while self.stamps and now - self.stamps[0] > 60:
            self.stamps.popleft()
        return len(self.stamps) >= self.limit

    def add(self) -> None:
        self.stamps.append(time.monotonic())


def errcode(code: int, message: str) -> web.Response:
    return web.json_response({"errcode": code, "errmsg": message})


class Robot(Receiver):
    """What DingTalk and WeCom robots share: HTTP 200 with an errcode, a rate limit, scripted
    errcodes, the accepted messages."""

    ERRMSG: ClassVar[dict[int, str]] = {}
    RATE_LIMITED = 0

    def __init__(self, per_minute: int = 20) -> None:
        super().__init__()
        self.script: deque[int] = deque()
        self.messages: list[dict[str, Any]] = []
        self.rate = RateWindow(per_minute)

    def answer(self, code: int) -> web.Response:
        return errcode(code, self.ERRMSG.get(code, f"error {code}"))

    def finish(self, payload: dict[str, Any]) -> web.Response:
        if self.script:
            code = self.script.popleft()
            if code:
                return self.answer(code)
        if self.rate.full():
            return self.answer(self.RATE_LIMITED)
        self.rate.add()
        self.messages.append(payload)
        return errcode(0, "ok")


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def dingtalk_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


class DingTalkRobot(Robot):
    """`POST /robot/send?access_token=TOKEN[&timestamp=MS&sign=SIGN]`."""

    ERRMSG: ClassVar[dict[int, str]] = {
        130101: "send too fast, exceed 20 times per minute",
        300001: "token is not exist",
        310000: "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
        40035: "缺少参数 json",
        43004: "无效的HTTP HEADER Content-Type",
    }
    RATE_LIMITED = 130101

    def __init__(
        self,
        *,
        token: str = "ding-token",  # noqa: S107 - the test robot's token
        secret: str | None = None,
        per_minute: int = 20,
    ) -> None:
        super().__init__(per_minute)
        self.token = token
        self.secret = secret

    @property
    def url(self) -> str:
        return f"{self.base}/robot/send?access_token={self.token}"

    def _signature_problem(self, query: dict[str, str]) -> str | None:
        if self.secret is None:
            return None
        timestamp, sign = query.get("timestamp"), query.get("sign")
        if not timestamp or not sign or not timestamp.isdigit():
            return "sign not match (missing timestamp or sign)"
        if abs(time.time() * 1000 - int(timestamp)) > 3600 * 1000:
            return "invalid timestamp (more than an hour away)"
        if not hmac.compare_digest(sign, dingtalk_sign(self.secret, timestamp)):
            return "sign not match"
        return None

    async def handle(self, request: web.Request, received: Received) -> web.StreamResponse:
        if request.method != "POST" or received.path != "/robot/send":
            return web.Response(status=404, text="not found")
        if received.query.get("access_token") != self.token:
            return self.answer(300001)
        problem = self._signature_problem(received.query)
        if problem:
            return errcode(310000, problem)
        if not received.headers.get("content-type", "").startswith("application/json"):
            return self.answer(43004)
        try:
            payload = received.json()
        except ValueError:
            return self.answer(40035)
        if not self._valid(payload):
            return self.answer(40035)
        return self.finish(payload)

    @staticmethod
    def _valid(payload: Any) -> bool:
        if not isinstance(payload, dict) or payload.get("msgtype") != "markdown":
            return False
        markdown = payload.get("markdown")
        if not isinstance(markdown, dict):
            return False
        if not all(
            isinstance(markdown.get(key), str) and markdown[key] for key in ("title", "text")
        ):
            return False
        at = payload.get("at", {})
        return (
            isinstance(at, dict)
            and _strings(at.get("atMobiles", []))
            and _strings(at.get("atUserIds", []))
            and isinstance(at.get("isAtAll", False), bool)
        )


class WeComRobot(Robot):
    """`POST /cgi-bin/webhook/send?key=KEY`."""

    ERRMSG: ClassVar[dict[int, str]] = {
        45009: "api freq out of limit",
        93000: "invalid webhook url",
        40008: "invalid message type",
        40058: "content exceed max length",
        44004: "empty content",
        -1: "system busy",
    }
    RATE_LIMITED = 45009
    LIMITS: ClassVar[dict[str, int]] = {"markdown": 4096, "text": 2048}

    def __init__(self, *, key: str = "wecom-key", per_minute: int = 20) -> None:
        super().__init__(per_minute)
        self.key = key

    @property
    def url(self) -> str:
        return f"{self.base}/cgi-bin/webhook/send?key={self.key}"

    async def handle(self, request: web.Request, received: Received) -> web.StreamResponse:
        if request.method != "POST" or received.path != "/cgi-bin/webhook/send":
            return web.Response(status=404, text="not found")
        if received.query.get("key") != self.key:
            return self.answer(93000)
        try:
            payload = received.json()
        except ValueError:
            return errcode(40058, "invalid json")
        msgtype = payload.get("msgtype") if isinstance(payload, dict) else None
        if msgtype not in self.LIMITS:
            return self.answer(40008)
        part = payload.get(msgtype)
        content = part.get("content") if isinstance(part, dict) else None
        if not isinstance(content, str) or not content:
            return self.answer(44004)
        if len(content.encode("utf-8")) > self.LIMITS[msgtype]:
            limit = self.LIMITS[msgtype]
            return errcode(40058, f"{msgtype}.content exceed max length {limit}")
        if msgtype == "text":
            lists = (part.get("mentioned_list", []), part.get("mentioned_mobile_list", []))
            if not all(_strings(item) for item in lists):
                return errcode(40058, "invalid mentioned list")
        return self.finish(payload)


def feishu_sign(secret: str, timestamp: str) -> str:
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class FeishuBot(Receiver):
    """`POST /open-apis/bot/v2/hook/TOKEN` with a JSON body."""

    MSG: ClassVar[dict[int, str]] = {
        0: "success",
        9499: "Bad Request",
        11232: "frequency limited",
        19021: "sign match fail or timestamp is not within one hour from current time",
        19024: "Key Words Not Found",
    }
    ELEMENT_TAGS = frozenset({"text", "a", "at", "img"})
    MAX_BYTES = 20 * 1024

    def __init__(
        self,
        *,
        token: str = "feishu-hook-token",  # noqa: S107 - the test bot's token
        secret: str | None = None,
        keyword: str | None = None,
        per_minute: int = 100,
    ) -> None:
        super().__init__()
        self.token = token
        self.secret = secret
        self.keyword = keyword
        self.script: deque[int] = deque()
        self.replies: deque[Reply] = deque()
        self.messages: list[dict[str, Any]] = []
        self.rate = RateWindow(per_minute)

    @property
    def url(self) -> str:
        return f"{self.base}/open-apis/bot/v2/hook/{self.token}"

    def answer(self, code: int, status: int = 200) -> web.Response:
        body = {"code": code, "msg": self.MSG.get(code, f"error {code}"), "data": {}}
        return web.json_response(body, status=status)

    def _signature_problem(self, payload: dict[str, Any]) -> bool:
        if self.secret is None:
            return False
        timestamp, sign = payload.get("timestamp"), payload.get("sign")
        if not isinstance(timestamp, str) or not isinstance(sign, str) or not timestamp.isdigit():
            return True
        if abs(time.time() - int(timestamp)) > 3600:
            return True
        return not hmac.compare_digest(sign, feishu_sign(self.secret, timestamp))

    def _valid(self, payload: dict[str, Any]) -> bool:
        if payload.get("msg_type") != "post":
            return False
        post = payload.get("content", {}).get("post")
        if not isinstance(post, dict) or not post:
            return False
        for body in post.values():
            if not isinstance(body, dict) or not isinstance(body.get("content"), list):
                return False
            for line in body["content"]:
                if not isinstance(line, list):
                    return False
                for element in line:
                    if not isinstance(element, dict) or element.get("tag") not in self.ELEMENT_TAGS:
                        return False
        return True

    async def handle(self, request: web.Request, received: Received) -> web.StreamResponse:
        if request.method != "POST" or received.path != f"/open-apis/bot/v2/hook/{self.token}":
            return web.Response(status=404, text="404 page not found")
        if self.replies:
            reply = self.replies.popleft()
            return web.Response(
                status=reply.status,
                text=reply.body,
                headers=reply.headers,
                content_type=reply.content_type,
            )
        if len(received.body) > self.MAX_BYTES:
            return self.answer(9499, status=400)
        try:
            payload = received.json()
        except ValueError:
            return self.answer(9499, status=400)
        if not isinstance(payload, dict) or not self._valid(payload):
            return self.answer(9499, status=400)
        if self._signature_problem(payload):
            return self.answer(19021)
        if self.keyword is not None and self.keyword not in received.body.decode():
            return self.answer(19024)
        if self.script:
            code = self.script.popleft()
            if code:
                return self.answer(code)
        if self.rate.full():
            return self.answer(11232)
        self.rate.add()
        self.messages.append(payload)
        return self.answer(0)


class SlackWebhook(Receiver):
    """`POST /services/T0/B0/SECRET`: `ok`, or Slack's error codes; scripted replies first."""

    PATH = "/services/T0000/B0000/slack-secret"
    BLOCK_TYPES = frozenset({"header", "section", "context", "divider", "actions"})

    def __init__(self) -> None:
        super().__init__()
        self.script: deque[Reply] = deque()
        self.messages: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return self.base + self.PATH

    async def handle(self, request: web.Request, received: Received) -> web.StreamResponse:
        if received.path != self.PATH:
            return web.Response(status=404, text="no_service")
        if self.script:
            reply = self.script.popleft()
            return web.Response(status=reply.status, text=reply.body, headers=reply.headers)
        try:
            payload = received.json()
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(payload, dict):
            return web.Response(status=400, text="invalid_payload")
        if not payload.get("text") and not payload.get("blocks"):
            return web.Response(status=400, text="no_text")
        if "blocks" in payload and not self._valid_blocks(payload["blocks"]):
            return web.Response(status=400, text="invalid_blocks")
        self.messages.append(payload)
        return web.Response(text="ok", content_type="text/html")

    def _valid_blocks(self, blocks: Any) -> bool:
        if not isinstance(blocks, list) or len(blocks) > 50:
            return False
        for block in blocks:
            if not isinstance(block, dict) or block.get("type") not in self.BLOCK_TYPES:
                return False
            text = block.get("text")
            if block["type"] == "header":
                if (
                    not isinstance(text, dict)
                    or text.get("type") != "plain_text"
                    or len(text.get("text", "")) > 150
                ):
                    return False
            elif block["type"] == "section":
                fields = block.get("fields", [])
                if text is None and not fields:
                    return False
                if text is not None and len(text.get("text", "")) > 3000:
                    return False
                if len(fields) > 10 or any(len(f.get("text", "")) > 2000 for f in fields):
                    return False
        return True


class WebhookReceiver(Receiver):
    """Any path; checks the signature when it has a secret (401 otherwise), then the scripted
    replies, then `default`."""

    def __init__(self, *, secret: str | None = None, default: Reply | None = None) -> None:
        super().__init__()
        self.secret = secret
        self.default = default or Reply(204)
        self.script: deque[Reply] = deque()
        self.events: list[Any] = []

    @property
    def url(self) -> str:
        return self.base + "/hooks/ci"

    async def handle(self, request: web.Request, received: Received) -> web.StreamResponse:
        if self.secret is not None:
            expected = (
                "sha256="
                + hmac.new(self.secret.encode(), received.body, hashlib.sha256).hexdigest()
            )
            given = received.headers.get("x-ciwatch-signature-256", "")
            if not hmac.compare_digest(given, expected):
                return web.Response(status=401, text="bad signature")
        reply = self.script.popleft() if self.script else self.default
        if 200 <= reply.status < 300:
            self.events.append(received.json())
        if reply.status == 204:
            return web.Response(status=204, headers=reply.headers)
        return web.Response(
            status=reply.status,
            text=reply.body,
            headers=reply.headers,
            content_type=reply.content_type,
        )


# --- SMTP ---------------------------------------------------------------------------------


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


class Mailbox:
    """An aiosmtpd handler: keeps accepted mail; `refuse` maps a recipient to its refusal
    (`550 5.1.1 ...`); `data_reply` replaces the answer to DATA (`451 ...`, `554 ...`)."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        self.refuse: dict[str, str] = {}
        self.data_reply: str | None = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        assert isinstance(envelope.content, bytes)
        auth = session.auth_data
        self.mails.append(
            Mail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=list(envelope.rcpt_tos),
                data=envelope.content,
                tls=session.ssl is not None,
                login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class Certificates:
    """A private CA (trustme) and a server certificate for `names` (127.0.0.1, localhost)."""

    def __init__(self, names: tuple[str, ...] = (HOST, "localhost")) -> None:
        self.ca = trustme.CA()
        self.server_cert = self.ca.issue_cert(*names)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Verification on, trusting only the private CA."""
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


SmtpMode = Literal["starttls", "implicit", "plain"]


class SmtpServer:
    """aiosmtpd serving on the running loop: `starttls` (offers and requires STARTTLS before
    AUTH and MAIL), `implicit` (TLS from the first byte) or `plain` (no TLS at all)."""

    def __init__(
        self,
        mode: SmtpMode,
        certificates: Certificates,
        *,
        users: dict[str, str] | None = None,
    ) -> None:
        self.mode = mode
        self.certificates = certificates
        self.users = users or {}
        self.mailbox = Mailbox()
        self.port = 0
        self._server: Any = None

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            login, password = data.login.decode(), data.password.decode()
            if self.users.get(login) == password:
                return AuthResult(success=True, auth_data=data)
        return AuthResult(success=False, handled=False)

    def _protocol(self) -> SMTP:
        context = self.certificates.server_context()
        return SMTP(
            self.mailbox,
            hostname="mail.ciwatch.test",
            tls_context=context if self.mode == "starttls" else None,
            require_starttls=self.mode == "starttls",
            authenticator=self._authenticate,
            # aiosmtpd only knows of TLS it negotiated itself (STARTTLS): on the implicit-TLS
            # and plain servers AUTH is offered but not required.
            auth_required=bool(self.users) and self.mode == "starttls",
            auth_require_tls=self.mode == "starttls",
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        context = self.certificates.server_context() if self.mode == "implicit" else None
        self._server = await loop.create_server(self._protocol, HOST, 0, ssl=context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self, *, login: tuple[str, str] | None = None, query: str = "") -> str:
        scheme = "smtps" if self.mode == "implicit" else "smtp"
        userinfo = f"{login[0]}:{login[1]}@" if login else ""
        return f"{scheme}://{userinfo}{HOST}:{self.port}" + (f"?{query}" if query else "")

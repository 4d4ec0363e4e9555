"""HTTP for the chat and webhook channels: one aiohttp session (the caller's, or one created on
first use and closed by `close`), POST with a timeout, and the mapping of what went wrong into
`ChannelError` (retryable or permanent) without ever echoing the URL, which holds a token."""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import aiohttp
from yarl import URL

from ciwatch.channels.base import Delivery
from ciwatch.clock import Clock, SystemClock
from ciwatch.config.masking import mask_url
from ciwatch.config.models import BaseChannel
from ciwatch.errors import ChannelError
from ciwatch.http import USER_AGENT, retry_after_seconds
from ciwatch.retries import Client, honours_retry_after, retryable

DEFAULT_TIMEOUT = 15.0


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # lower-cased names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def snippet(self, limit: int = 200) -> str:
        """What the server said, on one line, cut short; `(an HTML page)` for HTML."""
        text = " ".join(self.text.split())
        if not text:
            return "(empty body)"
        if text.startswith("<"):
            return "(an HTML page)"
        return text if len(text) <= limit else text[: limit - 1] + "…"


class HttpPoster:
    """POSTs for one channel. `label` (`slack ops`) starts every error message."""

    def __init__(
        self,
        label: str,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Clock | None = None,
    ) -> None:
        self.label = label
        self.clock = clock or SystemClock()
        self._given = session
        self._own: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0))

    def _session(self) -> aiohttp.ClientSession:
        if self._given is not None:
            return self._given
        if self._own is None or self._own.closed:
            self._own = aiohttp.ClientSession(timeout=self._timeout)
        return self._own

    async def close(self) -> None:
        if self._own is not None and not self._own.closed:
            await self._own.close()
        self._own = None

    async def post(
        self, url: str | URL, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Answer:
        """POST `body`; the answer whatever its status. Raises ChannelError when no answer came
        (timeout, connection refused: retryable; a bad URL or certificate: permanent)."""
        sent = {"User-Agent": USER_AGENT, "Content-Type": "application/json", **(headers or {})}
        try:
            async with self._session().post(
                url, data=body, headers=sent, timeout=self._timeout, allow_redirects=False
            ) as resp:
                data = await resp.read()
                plain = {key.lower(): value for key, value in resp.headers.items()}
                return Answer(resp.status, plain, data)
        except TimeoutError as exc:
            raise ChannelError(f"{self.label}: timed out", permanent=False) from exc
        except aiohttp.InvalidURL as exc:
            message = f"{self.label}: invalid URL {mask_url(str(url))}"
            raise ChannelError(message, permanent=True) from exc
        except ValueError as exc:  # e.g. a configured header value holding a newline
            message = f"{self.label}: the request cannot be sent ({type(exc).__name__})"
            raise ChannelError(message, permanent=True) from exc
        except aiohttp.ClientConnectorCertificateError as exc:
            reason = _reason(exc.certificate_error, url)
            message = f"{self.label}: TLS certificate not accepted: {reason}"
            raise ChannelError(message, permanent=True) from exc
        except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            raise ChannelError(f"{self.label}: {_reason(exc, url)}", permanent=False) from exc

    def retry_after(self, answer: Answer) -> float | None:
        return retry_after_seconds(answer.headers, self.clock.now())

    def check_status(self, answer: Answer) -> None:
        """Raise ChannelError unless the answer is 2xx: what the retry policy table
        (`ciwatch/retries.py`) retries is retryable (honouring `Retry-After`: 408, 425, 429,
        5xx), 3xx and other 4xx permanent with what the server said."""
        status = answer.status
        if 200 <= status < 300:
            return
        message = f"{self.label}: HTTP {status} {answer.snippet()}"
        if retryable(Client.CHANNEL, status):
            wait = self.retry_after(answer) if honours_retry_after(Client.CHANNEL, status) else None
            raise ChannelError(message, permanent=False, retry_after=wait)
        if 300 <= status < 400:
            message = f"{self.label}: HTTP {status} redirect (configure the final URL)"
        raise ChannelError(message, permanent=True)


def _reason(exc: BaseException, url: str | URL) -> str:
    text = str(exc) or type(exc).__name__
    raw = str(url)
    return text.replace(raw, mask_url(raw)) if raw else text


# Robots' "system busy": worth another try.
BUSY_ERRCODES = frozenset({-1})


def code_verdict(
    answer: Answer,
    label: str,
    *,
    codes: tuple[str, ...],
    messages: tuple[str, ...],
    retryable: Mapping[int, float | None],
) -> Delivery:
    """The verdict of a robot that answers HTTP 200 with a JSON result code: the first of
    `codes` present in the reply (`errcode`; Feishu's `code`, or `StatusCode` in its older
    replies), explained by the first of `messages` present. 0 is delivered; a code in
    `retryable` is retryable (after the seconds it maps to, when not None); any other code is
    permanent: the same message will be refused again until the configuration changes. A body
    without any of `codes` is retryable (a proxy's page, say)."""
    try:
        reply = json.loads(answer.body)
        code = int(next(reply[name] for name in codes if name in reply))
        text = str(next((reply[name] for name in messages if reply.get(name)), ""))
    except (ValueError, TypeError, KeyError, StopIteration) as exc:
        wanted = " or ".join(codes)
        message = (
            f"{label}: HTTP {answer.status} without a result code ({wanted}): {answer.snippet()}"
        )
        raise ChannelError(message, permanent=False) from exc
    name = next(name for name in codes if name in reply)
    if code == 0:
        return Delivery(f"{name} 0 ({text or 'ok'})")
    message = f"{label}: {name} {code}: {' '.join(text.split())[:300]}"
    if code in retryable:
        raise ChannelError(message, permanent=False, retry_after=retryable[code])
    raise ChannelError(message, permanent=True)


def errcode_verdict(answer: Answer, label: str, *, rate_limited: int, wait: float) -> Delivery:
    """The verdict of a chat robot (DingTalk, WeCom) that answers HTTP 200 with
    `{"errcode": N, "errmsg": "..."}`: `rate_limited` is retryable after `wait` seconds, -1
    (busy) is retryable, see `code_verdict`."""
    retryable: dict[int, float | None] = dict.fromkeys(BUSY_ERRCODES)
    retryable[rate_limited] = wait
    return code_verdict(
        answer, label, codes=("errcode",), messages=("errmsg",), retryable=retryable
    )


SettingsT = TypeVar("SettingsT", bound=BaseChannel)


class HttpSender(Generic[SettingsT]):
    """What the HTTP channels share: their settings, an `HttpPoster` whose errors start with
    `<kind> <name>`, `close`, and a JSON body. A subclass sets `kind` (and `min_interval`, the
    service's pace) and writes `send`."""

    kind: str
    min_interval: float = 0.0

    def __init__(
        self,
        settings: SettingsT,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Clock | None = None,
    ) -> None:
        self.name = settings.name
        self.settings = settings
        self.http = HttpPoster(
            f"{self.kind} {settings.name}", session=session, timeout=timeout, clock=clock
        )

    async def close(self) -> None:
        await self.http.close()


def json_body(payload: object) -> bytes:
    """A JSON request body, UTF-8, non-ASCII kept as is."""
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")

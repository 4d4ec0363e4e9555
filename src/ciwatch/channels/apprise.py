"""Any Apprise URL (`tgram://`, `discord://`, `mailto://`, `json://`, ...): the long tail.

Apprise's own retries are turned off (the asset's `default_service_retry` and the service's
`retry`, whatever the URL's `?retry=` says), so ciwatch's delivery policy is the only one.
Apprise reports a failure as a bare "no", without telling a refused message from an outage, so
every failure is retryable; the delivery policy's attempt limit bounds the cost.
The message goes as plain text with a title: Apprise converts it for services that want
Markdown or HTML, escaping as it goes.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ciwatch.channels.base import Delivery, Message
from ciwatch.channels.render import render_text, render_title
from ciwatch.channels.spec import EXAMPLE_SECRET, ChannelSpec
from ciwatch.config.masking import mask_all_but_scheme
from ciwatch.config.models import AppriseChannel
from ciwatch.errors import ChannelError

if TYPE_CHECKING:
    import aiohttp
    import apprise

# Apprise's limit for one service, retries included; ciwatch retries on its own schedule.
SERVICE_TIMEOUT = 30.0


class AppriseSender:
    """Sends through Apprise to one URL (`AppriseChannel` settings). Apprise is imported on
    first use: it loads every plugin it has."""

    kind = "apprise"
    min_interval = 0.0

    def __init__(self, settings: AppriseChannel, *, timeout: float = SERVICE_TIMEOUT) -> None:
        self.name = settings.name
        self.settings = settings
        self.timeout = timeout
        self.label = f"apprise {settings.name}"
        self._apprise: apprise.Apprise | None = None

    def _client(self) -> apprise.Apprise:
        if self._apprise is not None:
            return self._apprise
        import apprise

        # Memory-only persistent storage: nothing written next to the service's files.
        asset = apprise.AppriseAsset(storage_mode="memory")
        if hasattr(asset, "default_service_retry"):
            asset.default_service_retry = 0
        scheme = mask_all_but_scheme(self.settings.url)
        service = apprise.Apprise.instantiate(self.settings.url, asset=asset)
        if service is None:
            raise ChannelError(
                f"{self.label}: Apprise does not understand the URL {scheme}", permanent=True
            )
        if hasattr(service, "retry"):
            service.retry = 0
        client = apprise.Apprise(asset=asset)
        client.add(service)
        self._apprise = client
        return client

    async def send(self, message: Message) -> Delivery:
        client = self._client()
        result: Any = await client.async_notify(
            **payload(self.settings, message), body_format="text", timeout=self.timeout
        )
        return verdict(result, self.label)

    async def close(self) -> None:
        self._apprise = None


def payload(
    settings: AppriseChannel, message: Message, now: datetime | None = None
) -> dict[str, str]:
    """What Apprise is given: a plain-text body and a title."""
    return {"body": render_text(message), "title": render_title(message)}


def verdict(result: Any, label: str) -> Delivery:
    """Apprise's result: true is delivered; false is retryable (Apprise does not tell a refused
    message from an outage), with the last thing it logged."""
    if result:
        return Delivery(f"apprise: delivered ({_services(result)})")
    raise ChannelError(f"{label}: not delivered{_reason(result)}", permanent=False)


def _services(result: Any) -> str:
    try:
        names = [str(getattr(item, "name", "?")) for item in result]
    except TypeError:  # Apprise before 2.x returns a bool
        return "ok"
    return ", ".join(names) or "ok"


def _reason(result: Any) -> str:
    """The last warning or error Apprise logged for this call (it holds no secret: Apprise
    masks URLs in its logs), if this version of Apprise keeps them."""
    logs = getattr(result, "logs", None)
    if not callable(logs):
        return ""
    entries = [str(entry) for entry in logs()]
    if not entries:
        return ""
    last = " ".join(entries[-1].split())
    return f": {last[-300:]}"


def _build(settings: AppriseChannel, session: aiohttp.ClientSession | None) -> AppriseSender:
    return AppriseSender(settings)


SPEC = ChannelSpec(
    kind="apprise",
    title="Apprise",
    settings=AppriseChannel,
    build=_build,
    payload=payload,
    verdict=verdict,
    example={"url": f"tgram://123456:{EXAMPLE_SECRET}/-100200300"},
)

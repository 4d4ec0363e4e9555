"""`ciwatch alerts test CHANNEL`: send a test message through one channel."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from ciwatch.channels import build_channel
from ciwatch.channels.base import Delivery, make_test_message
from ciwatch.cli.common import EXIT_RUNTIME, EXIT_USAGE, ConfigOption, err, load_config, out
from ciwatch.config import mask_url
from ciwatch.errors import ChannelError


def alerts_test(
    channel: Annotated[str, typer.Argument(help="Channel name from the configuration.")],
    config: ConfigOption = None,
) -> None:
    """Send a test message through one channel and print the channel's answer.

    Exit 0 when the service accepted it, 3 when it refused or could not be reached (the
    service's own error text is printed, and whether retrying could help)."""
    settings = load_config(config)
    found = settings.alerts.channel(channel)
    if found is None:
        names = ", ".join(c.name for c in settings.alerts.channels) or "none configured"
        err.print(f"no channel named {channel!r} (channels: {names})", markup=False)
        raise typer.Exit(EXIT_USAGE)
    base = settings.server.base_url
    message = make_test_message(dashboard_url=str(base) if base else None)

    async def send() -> Delivery:
        sender = build_channel(found)
        try:
            return await sender.send(message)
        finally:
            await sender.close()

    try:
        delivery = asyncio.run(send())
    except ChannelError as exc:
        kind = "permanent: fix the channel's settings" if exc.permanent else "retryable"
        err.print(
            f"{channel} ({found.type}) refused the test message ({kind}): {exc}", markup=False
        )
        raise typer.Exit(EXIT_RUNTIME) from None
    target = mask_url(str(getattr(found, "url", "") or getattr(found, "smtp_url", "")))
    out.print(f"{channel} ({found.type}, {target}) answered: {delivery.answer}", markup=False)

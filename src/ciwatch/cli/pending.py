"""Commands whose behaviour later work completes. Each already has its final options and help,
and exits 3 saying it is not implemented yet: never fake output."""

from __future__ import annotations

from typing import Annotated

import typer

from ciwatch.cli.common import ConfigOption, JsonOption, not_implemented

COLLECTION = "issue #3, collection"
WEB = "issue #4, web"
PUSH = "issue #5, webhooks and push reporting"
ALERTING = "issue #6, alerting"

ListenOption = Annotated[
    str | None, typer.Option("--listen", help="HOST:PORT to listen on.", show_default=False)
]


alerts_app = typer.Typer(help="Alert channels and firing alerts.", no_args_is_help=True)
silence_app = typer.Typer(help="Mute matching alerts until a time.", no_args_is_help=True)


@alerts_app.command("list")
def alerts_list(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Show firing alerts."""
    not_implemented("alerts list", ALERTING)


@silence_app.command("add")
def silence_add(
    duration: Annotated[str, typer.Option("--for", help="How long, e.g. 2h.")] = "1h",
    project: Annotated[str | None, typer.Option(help="Project glob.")] = None,
    ref: Annotated[str | None, typer.Option(help="Ref glob.")] = None,
    comment: Annotated[str | None, typer.Option(help="Why.")] = None,
    config: ConfigOption = None,
) -> None:
    """Silence matching alerts for a while."""
    not_implemented("silence add", ALERTING)


@silence_app.command("list")
def silence_list(config: ConfigOption = None, json_out: JsonOption = False) -> None:
    """Show active silences."""
    not_implemented("silence list", ALERTING)


@silence_app.command("expire")
def silence_expire(
    silence_id: Annotated[str, typer.Argument(help="Silence id.")],
    config: ConfigOption = None,
) -> None:
    """End a silence now."""
    not_implemented("silence expire", ALERTING)

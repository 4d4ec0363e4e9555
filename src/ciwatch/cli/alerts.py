"""`ciwatch alerts test CHANNEL` (send a test message through one channel), `ciwatch alerts
list` and `ciwatch silence add|list|expire` (on the store, like `ciwatch status`)."""

from __future__ import annotations

import asyncio
import getpass
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ciwatch.alerting.rules import FIRING
from ciwatch.alerting.silences import (
    SilenceInputError,
    create_silence,
    given_matchers,
    silence_end,
)
from ciwatch.alerting.views import (
    FAILED,
    PENDING,
    SENT,
    alert_list,
    expire_silence,
    get_silence,
    silence_to_dict,
)
from ciwatch.channels import build_channel
from ciwatch.channels.base import Delivery, make_test_message
from ciwatch.channels.registry import spec as channel_spec
from ciwatch.cli.common import (
    EXIT_RUNTIME,
    EXIT_USAGE,
    ConfigOption,
    DatabaseOption,
    JsonOption,
    err,
    human_ago,
    load_config,
    opened_store,
    out,
    print_json,
    run_async,
)
from ciwatch.clock import SystemClock
from ciwatch.errors import ChannelError
from ciwatch.store.alerting import SilenceRow
from ciwatch.timeutil import human_duration, iso_z, parse_time


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
    described = channel_spec(found.type)  # its URL, masked the channel's way
    target = described.mask(str(getattr(found, described.url_field)))
    out.print(f"{channel} ({found.type}, {target}) answered: {delivery.answer}", markup=False)


# --- alerts list, silence add|list|expire: straight on the store, like `ciwatch status` ------

alerts_app = typer.Typer(help="Alert channels and firing alerts.", no_args_is_help=True)
silence_app = typer.Typer(help="Mute matching alerts until a time.", no_args_is_help=True)

OUTCOME_STYLE = {SENT: ("✔", "green"), FAILED: ("✘", "bold red"), PENDING: ("…", "yellow")}
AllOption = Annotated[bool, typer.Option("--all", help="Also resolved (or expired) ones.")]


def _label(entry: dict[str, Any]) -> str:
    where = f"{entry['source']}/{entry['project']}"
    return f"{where}:{entry['ref']}" if entry["ref"] else where


def _channel_cell(outcome: dict[str, Any]) -> str:
    icon, style = OUTCOME_STYLE[outcome["outcome"]]
    text = f"[{style}]{icon} {escape(outcome['channel'])} {outcome['outcome']}[/]"
    if outcome["error"]:
        text += f": {escape(outcome['error'])}"
    return text


def _since(value: str | None, now: datetime) -> str:
    return human_ago(parse_time(value), now)


@alerts_app.command("list")
def alerts_list(
    config: ConfigOption = None,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
    everything: AllOption = False,
    limit: Annotated[int, typer.Option(min=1, max=500, help="At most this many.")] = 50,
) -> None:
    """Show firing alerts (with --all, then recently resolved ones) and the outcome of their
    newest notice on each channel; a failing channel is shown with its error."""
    settings = load_config(config, database)

    async def go() -> list[dict[str, Any]]:
        async with opened_store(settings) as store:
            state = None if everything else FIRING
            return await alert_list(store, state=state, limit=limit)

    found = run_async(go)
    if json_out:
        print_json(found)
        return
    if not found:
        out.print("No alerts." if everything else "No firing alerts.")
        return
    now = SystemClock().now()
    table = Table(title="Alerts", title_justify="left")
    for column in ("state", "event", "project/ref", "since", "last notified", "channels"):
        table.add_column(column, no_wrap=column in ("state", "since", "last notified"))
    for entry in found:
        firing = entry["state"] == FIRING
        table.add_row(
            "[bold red]● firing[/]" if firing else "[green]○ resolved[/]",
            escape(entry["event"] or entry["rule"]),
            escape(_label(entry)),
            _since(entry["first_seen"], now),
            _since(entry["last_notified"], now),
            "\n".join(_channel_cell(c) for c in entry["channels"]) or "—",
        )
    out.print(table)


def _print_silences(silences: list[dict[str, Any]], now: datetime) -> None:
    table = Table(title="Silences", title_justify="left")
    for column in ("id", "matchers", "until", "by", "comment"):
        table.add_column(column)
    for silence in silences:
        ends = parse_time(silence["ends_at"])
        assert ends is not None
        until = silence["ends_at"]
        if silence["active"]:
            until += f" (in {human_duration((ends - now).total_seconds())})"
        elif ends <= now:
            until += " (expired)"
        matchers = " ".join(f"{k}={v}" for k, v in silence["matchers"].items())
        table.add_row(
            str(silence["id"]),
            escape(matchers),
            until,
            escape(silence["created_by"] or ""),
            escape(silence["comment"] or ""),
        )
    out.print(table)


@silence_app.command("add")
def silence_add(
    duration: Annotated[str, typer.Option("--for", help="How long from now, e.g. 2h.")] = "1h",
    source: Annotated[str | None, typer.Option(help="Source glob.")] = None,
    project: Annotated[str | None, typer.Option(help="Project glob.")] = None,
    ref: Annotated[str | None, typer.Option(help="Ref glob.")] = None,
    event: Annotated[str | None, typer.Option(help="Event glob (broken, stuck, ...).")] = None,
    comment: Annotated[str | None, typer.Option(help="Why.")] = None,
    created_by: Annotated[
        str | None, typer.Option("--by", help="Who [default: the login name].", show_default=False)
    ] = None,
    config: ConfigOption = None,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
) -> None:
    """Silence alerts matching every given glob (at least one) for a while."""
    try:
        matchers = given_matchers(
            {"source": source, "project": project, "ref": ref, "event": event}
        )
    except SilenceInputError:
        err.print("give at least one of --source, --project, --ref, --event", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    now = SystemClock().now()
    try:
        ends_at = silence_end(now, duration=duration, ends_at=None)
    except SilenceInputError as exc:
        err.print(f"--for: {exc.message}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    settings = load_config(config, database)
    who = created_by if created_by is not None else _login()

    async def go() -> dict[str, Any]:
        async with opened_store(settings) as store:
            silence_id = await create_silence(
                store, matchers, now, ends_at, created_by=who, comment=comment
            )
            silence = await get_silence(store, silence_id)
            assert silence is not None
            return silence_to_dict(silence, now)

    try:
        added = run_async(go)
    except ValueError as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    if json_out:
        print_json(added)
        return
    out.print(f"Silence {added['id']} added until {added['ends_at']}.", markup=False)


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


@silence_app.command("list")
def silence_list(
    config: ConfigOption = None,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
    everything: AllOption = False,
) -> None:
    """Show the silences in force now (with --all, every stored one)."""
    settings = load_config(config, database)
    now = SystemClock().now()

    async def go() -> list[dict[str, Any]]:
        async with opened_store(settings) as store:
            found = await store.list_silences(active_at=None if everything else now)
            return [silence_to_dict(silence, now) for silence in found]

    silences = run_async(go)
    if json_out:
        print_json(silences)
        return
    if not silences:
        out.print("No silences." if everything else "No active silences.")
        return
    _print_silences(silences, now)


@silence_app.command("expire")
def silence_expire(
    silence_id: Annotated[int, typer.Argument(help="Silence id (see `silence list`).")],
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """End a silence now. Exit 2 when there is no silence with that id."""
    settings = load_config(config, database)
    now = SystemClock().now()

    async def go() -> SilenceRow | None:
        async with opened_store(settings) as store:
            return await expire_silence(store, silence_id, now)

    silence = run_async(go)
    if silence is None:
        err.print(f"no silence with id {silence_id}", markup=False)
        raise typer.Exit(EXIT_USAGE)
    out.print(f"Silence {silence_id} ended at {iso_z(silence.ends_at)}.", markup=False)

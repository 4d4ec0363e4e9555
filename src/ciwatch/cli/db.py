"""`ciwatch db upgrade|prune`: migrations and retention."""

from __future__ import annotations

from typing import Annotated

import typer

from ciwatch.cli.common import (
    EXIT_USAGE,
    ConfigOption,
    DatabaseOption,
    err,
    load_config,
    opened_store,
    run_async,
)
from ciwatch.clock import SystemClock
from ciwatch.config import mask_url, parse_duration
from ciwatch.store.alerting import Pruned
from ciwatch.timeutil import iso_z

app = typer.Typer(help="Database migrations and retention.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(config: ConfigOption = None, database: DatabaseOption = None) -> None:
    """Apply the database migrations (ciwatch also applies them on every start)."""
    settings = load_config(config, database)

    async def go() -> None:
        async with opened_store(settings):
            pass

    run_async(go)
    err.print(f"{mask_url(settings.database)}: schema is up to date", markup=False)


@app.command("prune")
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Delete runs created before this age, e.g. 90d.")
    ],
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Delete runs (and their jobs) older than the given age. The newest run and the run that
    sets the colour of each project/ref are kept, so no ref loses its state. Notifications sent
    or failed, alerts resolved and silences ended before then go too."""
    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        err.print(f"--older-than: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    settings = load_config(config, database)
    cutoff = SystemClock().now() - age

    async def go() -> tuple[int, Pruned]:
        async with opened_store(settings) as store:
            return await store.prune(cutoff), await store.prune_alerting(cutoff)

    deleted, done = run_async(go)
    err.print(f"pruned {deleted} runs created before {iso_z(cutoff)}", markup=False)
    err.print(
        f"pruned {done.outbox} delivered or failed notifications, {done.alerts} resolved "
        f"alerts and {done.silences} ended silences from before {iso_z(cutoff)}",
        markup=False,
    )

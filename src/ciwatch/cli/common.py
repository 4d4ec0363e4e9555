"""What every command shares: options, loading the configuration, opening the store, output,
and the one place that maps errors to exit codes (0 ok, 1 --fail-on matched, 2 usage or config
error, 3 runtime error)."""

from __future__ import annotations

import asyncio
import difflib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from ciwatch.config import Settings, default_settings, load_settings
from ciwatch.domain import Status
from ciwatch.errors import CiwatchError, ConfigError
from ciwatch.store import Store, open_store
from ciwatch.timeutil import human_duration

EXIT_OK, EXIT_FAIL_ON, EXIT_USAGE, EXIT_RUNTIME = 0, 1, 2, 3
DEFAULT_CONFIG = Path("ciwatch.yaml")

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        envvar="CIWATCH_CONFIG",
        metavar="FILE",
        help="Configuration file [default: ciwatch.yaml].",
        show_default=False,
    ),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="CIWATCH_DATABASE",
        metavar="URL",
        help="Database URL, overriding the configuration (sqlite:///f.db, postgresql://...).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

T = TypeVar("T")

STATUS_STYLE: dict[Status, tuple[str, str]] = {
    Status.SUCCESS: ("✔", "green"),
    Status.FAILED: ("✘", "bold red"),
    Status.RUNNING: ("●", "blue"),
    Status.QUEUED: ("…", "yellow"),
    Status.MANUAL: ("✋", "magenta"),
    Status.CANCELED: ("⊘", "dim"),
    Status.SKIPPED: ("↷", "dim"),
}


def status_cell(status: Status) -> str:
    """Status as icon and word (never colour alone), with rich markup for the colour."""
    icon, style = STATUS_STYLE[status]
    return f"[{style}]{icon} {status.value}[/]"


def load_config(path: Path | None, database: str | None = None) -> Settings:
    """The validated settings, or exit 2 naming every problem.

    A missing default file means the built-in defaults; a file named explicitly (option or
    $CIWATCH_CONFIG) must exist.
    """
    try:
        if path is None:
            exists = DEFAULT_CONFIG.exists()
            settings = load_settings(DEFAULT_CONFIG) if exists else default_settings()
        else:
            settings = load_settings(path)
    except ConfigError as exc:
        fail(exc)
    if database:
        settings = settings.model_copy(update={"database": database})
    return settings


@asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[Store]:
    """The store with migrations applied (docs/architecture.md#storage: applied on start), closed
    afterwards."""
    store = open_store(settings.database)
    try:
        await store.upgrade()
        yield store
    finally:
        await store.close()


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine for a command, mapping ciwatch errors to exit codes."""

    async def wrapper() -> T:
        return await factory()

    try:
        return asyncio.run(wrapper())
    except CiwatchError as exc:
        fail(exc)


def require_known(option: str, value: str | None, known: Iterable[str], what: str) -> None:
    """Exit 2 when `value` (given with `option`) is none of `known`, naming the closest ones:
    a mistyped filter must not print an empty, successful answer."""
    if value is None:
        return
    names = sorted(set(known))
    if value in names:
        return
    close = difflib.get_close_matches(value, names, n=3)
    hint = f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""
    listed = (
        f" (known: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''})" if names else ""
    )
    err.print(f"{option}: no {what} named {value!r}{hint}{listed}", markup=False)
    raise typer.Exit(EXIT_USAGE)


def fail(exc: CiwatchError) -> NoReturn:
    """Print the error (one line per problem) and exit with its code."""
    if isinstance(exc, ConfigError):
        for problem in exc.problems:
            err.print(problem, markup=False)
        raise typer.Exit(EXIT_USAGE)
    err.print(f"error: {exc}", markup=False)
    raise typer.Exit(EXIT_RUNTIME)


def print_json(data: Any) -> None:
    """`data` as indented JSON. A list is written item by item, byte for byte what one
    `json.dumps` would write: the whole text of 10,000 ref states at once (the pure-Python
    encoder `indent` selects keeps every piece until it joins them) took 65 MB, a third of
    `poll --once --json`'s peak memory."""
    write = sys.stdout.write
    if not isinstance(data, list) or not data:
        write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        return
    separator = "[\n  "
    for item in data:
        # A JSON text has no raw newline inside a string: each one starts a line to indent.
        write(separator + json.dumps(item, indent=2, ensure_ascii=False).replace("\n", "\n  "))
        separator = ",\n  "
    write("\n]\n")


def human_ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "—"
    delta = now - when
    if delta < timedelta(0):
        return "just now"
    return human_duration(delta.total_seconds()) + " ago"

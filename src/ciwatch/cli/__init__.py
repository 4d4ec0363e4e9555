"""The `ciwatch` command line (Typer + rich). Only this package chooses exit codes.

Each command's module is imported only when the command line needs it: `main()` builds the
app with the one command it was asked for (`ciwatch poll --once` from cron does not import the
web server, the alert channels or the simulator), and `app` (the whole command line, for
`ciwatch --help`, an unknown command and the tests) is built on first use."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from ciwatch import __version__

# name -> (module in ciwatch.cli, attribute), in the order `ciwatch --help` lists them.
_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serve", "serve"),
    "demo": ("serve", "demo"),
    "poll": ("poll", "poll"),
    "status": ("data", "status"),
    "history": ("data", "history"),
    "report": ("report", "report"),
    "simulate": ("simulate", "simulate"),
}
_GROUPS: dict[str, tuple[str, str]] = {
    "alerts": ("alerts", "alerts_app"),
    "silence": ("alerts", "silence_app"),
    "db": ("db", "app"),
    "config": ("config_cmd", "app"),
}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ciwatch {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Watch every CI pipeline across GitLab CI, GitHub Actions and Jenkins."""


def _attribute(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"ciwatch.cli.{module}"), name)


def build_app(only: str | None = None) -> typer.Typer:
    """The command line with every command, or with only the command (or group) `only`."""
    app = typer.Typer(
        name="ciwatch",
        help="Watch every CI pipeline across GitLab CI, GitHub Actions and Jenkins.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(_root)
    for name, (module, attribute) in _COMMANDS.items():
        if only is None or only == name:
            app.command(name)(_attribute(module, attribute))
    for name, (module, attribute) in _GROUPS.items():
        if only is None or only == name:
            group: typer.Typer = _attribute(module, attribute)
            if name == "alerts":
                test = _attribute("alerts", "alerts_test")
                if all(c.callback is not test for c in group.registered_commands):
                    group.command("test")(test)
            app.add_typer(group, name=name)
    return app


def invoked(argv: Sequence[str]) -> str | None:
    """The command `argv` (without the program name) runs, when it is a known one named before
    any option; else None (the whole command line: root help, version, an unknown command)."""
    for arg in argv:
        if arg.startswith("-"):
            return None
        return arg if arg in _COMMANDS or arg in _GROUPS else None
    return None


_app: typer.Typer | None = None


def __getattr__(name: str) -> Any:
    global _app
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if _app is None:
        _app = build_app()
    return _app


def main() -> None:
    """Console-script entry point."""
    build_app(invoked(sys.argv[1:]))()

"""The `ciwatch` command line (Typer + rich). Only this package chooses exit codes."""

from __future__ import annotations

from typing import Annotated

import typer

from ciwatch import __version__
from ciwatch.cli import alerts, config_cmd, data, db, poll, report, serve, simulate

app = typer.Typer(
    name="ciwatch",
    help="Watch every CI pipeline across GitLab CI, GitHub Actions and Jenkins.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ciwatch {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Watch every CI pipeline across GitLab CI, GitHub Actions and Jenkins."""


app.command("serve")(serve.serve)
app.command("demo")(serve.demo)
app.command("poll")(poll.poll)
app.command("status")(data.status)
app.command("history")(data.history)
app.command("report")(report.report)
app.command("simulate")(simulate.simulate)
alerts.alerts_app.command("test")(alerts.alerts_test)
app.add_typer(alerts.alerts_app, name="alerts")
app.add_typer(alerts.silence_app, name="silence")
app.add_typer(db.app, name="db")
app.add_typer(config_cmd.app, name="config")


def main() -> None:
    """Console-script entry point."""
    app()

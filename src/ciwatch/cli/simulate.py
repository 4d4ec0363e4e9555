"""`ciwatch simulate`: the built-in GitLab / GitHub / Jenkins API simulator, alone."""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from ciwatch.cli.common import EXIT_USAGE, err
from ciwatch.config import split_listen
from ciwatch.simulator import RunningSimulator
from ciwatch.simulator.azure import DEFAULT_AZURE_TOKEN
from ciwatch.simulator.serve import simulate as serve_simulator

DEFAULT_LISTEN = "127.0.0.1:8900"


def simulate(
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to listen on.")
    ] = DEFAULT_LISTEN,
    scenario: Annotated[
        Path | None, typer.Option(help="Scenario file (projects, timelines, faults).")
    ] = None,
    targets: Annotated[
        int | None, typer.Option(help="Generate N projects over the three providers.")
    ] = None,
) -> None:
    """Run the built-in GitLab / GitHub / Jenkins / Azure Pipelines API simulator until Ctrl-C
    or SIGTERM.

    Without --scenario or --targets it serves the lively demo scenario. See docs/simulator.md."""
    try:
        host, port = split_listen(listen)
    except ValueError as exc:
        err.print(f"--listen: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None

    def ready(running: RunningSimulator) -> None:
        sys.stdout.write(
            f"simulator listening on {running.url}\n"
            f"  GitLab  {running.gitlab_url}   (token glpat-simulator unless the scenario says)\n"
            f"  GitHub  {running.github_url}   (token ghp_simulator)\n"
            f"  Jenkins {running.jenkins_url}  (user admin, token simulator-api-token)\n"
            f"  Azure   {running.azure_url}    (organization fabrikam, PAT {DEFAULT_AZURE_TOKEN})\n"
        )
        sys.stdout.flush()

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        serve_simulator(host, port, scenario, targets, on_ready=ready)
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    except OSError as exc:
        err.print(f"error: cannot listen on {listen}: {exc.strerror or exc}", markup=False)
        raise typer.Exit(3) from None

"""`ciwatch poll --once`: one collection cycle, for cron jobs, Jenkins and Kubernetes CronJobs."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ciwatch.cli.common import (
    EXIT_FAIL_ON,
    EXIT_RUNTIME,
    EXIT_USAGE,
    ConfigOption,
    DatabaseOption,
    JsonOption,
    err,
    load_config,
    print_json,
    run_async,
)
from ciwatch.cli.tables import ref_states_table
from ciwatch.domain import RefState, Status
from ciwatch.runtime import Runtime
from ciwatch.scheduler.loop import CycleReport
from ciwatch.serialize import ref_state_to_dict


def poll(
    config: ConfigOption = None,
    database: DatabaseOption = None,
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Run one collection cycle and exit: what poll always does (`ciwatch serve` "
            "polls continuously); accepted so that cron lines may say so.",
            show_default=False,
        ),
    ] = True,
    json_out: JsonOption = False,
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            metavar="STATUS",
            help="Exit 1 when any watched ref has this status (e.g. failed). Repeatable.",
        ),
    ] = None,
) -> None:
    """Collect run and job state from every configured source once, store it, and print the
    state of every watched project/ref.

    Exit codes: 1 when --fail-on matched; else 3 when a target or source could not be polled;
    else 0."""
    wanted: set[Status] = set()
    for word in fail_on or []:
        try:
            wanted.add(Status(word))
        except ValueError:
            choices = ", ".join(s.value for s in Status)
            err.print(f"--fail-on: '{word}' is not one of {choices}", markup=False)
            raise typer.Exit(EXIT_USAGE) from None
    settings = load_config(config, database)
    if not settings.sources:
        err.print("no sources configured: add one under `sources:` (see docs/configuration.md)")
        raise typer.Exit(EXIT_USAGE)

    async def go() -> tuple[CycleReport, list[RefState]]:
        runtime = await Runtime.open(settings)
        try:
            assert runtime.scheduler is not None
            report = await _cycle_with_progress(runtime)
            targets = {(o.target.source, o.target.project) for o in report.outcomes}
            states = [
                s for s in await runtime.store.ref_states() if (s.source, s.project) in targets
            ]
            return report, states
        finally:
            await runtime.close()

    report, states = run_async(go)
    states.sort(key=lambda s: (s.status is not Status.FAILED, s.source, s.project, s.ref))
    if json_out:
        print_json([ref_state_to_dict(state) for state in states])
    else:
        ref_states_table(states)
    for source, reason in sorted(report.discovery_errors.items()):
        err.print(f"source {source}: discovery failed: {reason}", markup=False)
    for outcome in report.failed:
        err.print(
            f"{outcome.target.source}/{outcome.target.project}: {outcome.error}", markup=False
        )
    err.print(
        f"{len(report.outcomes)} targets polled, {len(report.failed)} failed, "
        f"{sum(o.changed for o in report.outcomes)} runs changed, {report.requests} API requests",
        markup=False,
    )
    if wanted and any(state.status in wanted for state in states):
        raise typer.Exit(EXIT_FAIL_ON)
    if report.failed or report.discovery_errors:
        raise typer.Exit(EXIT_RUNTIME)


async def _cycle_with_progress(runtime: Runtime) -> CycleReport:
    assert runtime.scheduler is not None
    if not sys.stderr.isatty():
        return await runtime.scheduler.run_once()
    with Progress(
        TextColumn("[bold]polling"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("", total=None)

        def done(outcome: object, finished: int, total: int) -> None:
            name = getattr(getattr(outcome, "target", None), "project", "")
            progress.update(task, completed=finished, total=total, description=escape(name))

        return await runtime.scheduler.run_once(done)

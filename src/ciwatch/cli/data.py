"""`ciwatch status` and `ciwatch history`: what the store knows, as tables or JSON."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ciwatch.cli.common import (
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
    require_known,
    run_async,
    status_cell,
)
from ciwatch.cli.tables import ref_states_table
from ciwatch.clock import SystemClock
from ciwatch.config import Settings
from ciwatch.domain import RefState, Run, Status, TargetState
from ciwatch.serialize import ref_state_to_dict, run_to_dict
from ciwatch.state import order_time
from ciwatch.timeutil import human_duration


def _failing_first(state: RefState) -> tuple[int, str, str, str]:
    order = {Status.FAILED: 0, Status.RUNNING: 1, Status.QUEUED: 1, Status.MANUAL: 1}
    return (order.get(state.status, 2), state.source, state.project, state.ref)


def _sources(
    settings: Settings, states: Iterable[RefState], targets: Iterable[TargetState]
) -> set[str]:
    """The sources the configuration names or the store has something of."""
    names = {source.name for source in settings.sources}
    names.update(state.source for state in states)
    names.update(target.source for target in targets)
    return names


def _configured_projects(settings: Settings, source: str | None) -> set[str]:
    """The projects, repositories and jobs the configuration names explicitly."""
    found: set[str] = set()
    for configured in settings.sources:
        if source in (None, configured.name):
            for field in ("projects", "repos", "jobs"):
                found.update(str(name) for name in getattr(configured, field, ()))
    return found


async def _ref_states(settings: Settings) -> list[RefState]:
    async with opened_store(settings) as store:
        return await store.ref_states()


def status(
    config: ConfigOption = None,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
) -> None:
    """The state of every watched project/ref (failing first) and the health of every target."""
    settings = load_config(config, database)

    async def go() -> tuple[list[RefState], list[TargetState]]:
        async with opened_store(settings) as store:
            return await store.ref_states(), await store.target_states()

    states, targets = run_async(go)
    require_known("--source", source, _sources(settings, states, targets), "source")
    states.sort(key=_failing_first)
    if source:
        states = [s for s in states if s.source == source]
        targets = [t for t in targets if t.source == source]
    if json_out:
        print_json([ref_state_to_dict(state) for state in states])
        return
    now = SystemClock().now()
    ref_states_table(states, now)
    if targets:
        health = Table(title="Targets", title_justify="left")
        for column in ("health", "source", "target", "last success", "last error", "reason"):
            health.add_column(column)
        for target in sorted(targets, key=lambda t: (t.healthy, t.source, t.project)):
            health.add_row(
                "[green]✔ ok[/]" if target.healthy else "[bold red]✘ unhealthy[/]",
                escape(target.source),
                escape(target.label),
                human_ago(target.last_success_at, now),
                human_ago(target.last_error_at, now),
                escape(target.reason or ""),
            )
        out.print(health)


def history(
    project: Annotated[str, typer.Argument(help="Project path, e.g. group/app or owner/repo.")],
    config: ConfigOption = None,
    database: DatabaseOption = None,
    json_out: JsonOption = False,
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    ref: Annotated[str | None, typer.Option(help="Only this branch or tag.")] = None,
    status_filter: Annotated[
        str | None, typer.Option("--status", help="Only runs with this status.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many runs.")] = 20,
) -> None:
    """The newest runs of one project, newest first."""
    wanted: Status | None = None
    if status_filter is not None:
        try:
            wanted = Status(status_filter)
        except ValueError:
            choices = ", ".join(s.value for s in Status)
            err.print(f"--status: '{status_filter}' is not one of {choices}", markup=False)
            raise typer.Exit(EXIT_USAGE) from None
    settings = load_config(config, database)

    async def go() -> list[Run]:
        runs: list[Run] = []
        cursor: str | None = None
        async with opened_store(settings) as store:
            while len(runs) < limit:
                page = await store.history(
                    source=source,
                    project=project,
                    ref=ref,
                    status=wanted,
                    limit=min(limit - len(runs), 500),
                    cursor=cursor,
                )
                runs.extend(page.runs)
                if page.next is None:
                    break
                cursor = page.next
        return runs

    runs = run_async(go)
    if not runs:
        states = run_async(lambda: _ref_states(settings))
        known = _sources(settings, states, [])
        require_known("--source", source, known, "source")
        projects = {s.project for s in states if source in (None, s.source)}
        projects.update(_configured_projects(settings, source))
        require_known("project", project, projects, "project")
    if json_out:
        print_json([run_to_dict(run) for run in runs])
        return
    if not runs:
        out.print(f"No runs of {project} yet.", markup=False)
        return
    now = SystemClock().now()
    table = Table(title=f"History of {escape(project)}", title_justify="left")
    for column in ("status", "run", "ref", "sha", "author", "created", "duration", "url"):
        table.add_column(column, no_wrap=column != "url")
    for run in runs:
        table.add_row(
            status_cell(run.status),
            escape(f"#{run.number}" if run.number is not None else run.run_id),
            escape(run.ref or "—"),
            escape((run.sha or "")[:8] or "—"),
            escape(run.author or "—"),
            human_ago(order_time(run), now),
            human_duration(run.duration_seconds),
            escape(run.url or ""),
        )
    out.print(table)

"""Tables shared by several commands."""

from __future__ import annotations

from datetime import datetime

from rich.markup import escape
from rich.table import Table

from ciwatch.cli.common import human_ago, human_duration, out, status_cell
from ciwatch.clock import SystemClock
from ciwatch.domain import RefState


def ref_states_table(states: list[RefState], now: datetime | None = None) -> None:
    """Print project/ref states (already in display order), or how to get some."""
    now = now or SystemClock().now()
    if not states:
        out.print("No runs yet — run [bold]ciwatch poll --once[/] or check the sources below.")
        return
    table = Table(title="Projects", title_justify="left", expand=False)
    for column in ("status", "source", "project", "ref", "since", "last run", "duration"):
        table.add_column(column, no_wrap=column in ("status", "since", "duration"))
    for state in states:
        run = state.last_run
        label = f"#{run.number}" if run.number is not None else run.run_id
        if run.status is not state.status:
            label += f" ({run.status.value})"
        table.add_row(
            status_cell(state.status),
            escape(state.source),
            escape(state.project),
            escape(state.ref or "—"),
            human_ago(state.since, now),
            escape(label),
            human_duration(run.duration_seconds),
        )
    out.print(table)

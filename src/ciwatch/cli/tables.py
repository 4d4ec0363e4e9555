"""Tables shared by several commands."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.cells import cell_len
from rich.control import strip_control_codes
from rich.markup import escape
from rich.table import Table
from rich.text import Span, Text

from ciwatch.cli.common import STATUS_STYLE, human_ago, out, status_cell
from ciwatch.clock import SystemClock
from ciwatch.domain import RefState
from ciwatch.timeutil import human_duration

# Above this many rows a table is drawn by `plain_table`: rich's Table measures and lays out
# every cell through its generic renderables, seconds for 5,000 refs.
FAST_ROWS = 200
COLUMNS = ("status", "source", "project", "ref", "since", "last run", "duration")


def ref_states_table(states: list[RefState], now: datetime | None = None) -> None:
    """Print project/ref states (already in display order), or how to get some."""
    now = now or SystemClock().now()
    if not states:
        out.print("No runs yet — run [bold]ciwatch poll --once[/] or check the sources below.")
        return
    if len(states) > FAST_ROWS:
        out.print(plain_table("Projects", COLUMNS, [_plain_row(state, now) for state in states]))
        return
    table = Table(title="Projects", title_justify="left", expand=False)
    for column in COLUMNS:
        table.add_column(column, no_wrap=column in ("status", "since", "duration"))
    for state in states:
        cells = _plain_row(state, now)
        table.add_row(status_cell(state.status), *(escape(str(cell)) for cell in cells[1:]))
    out.print(table)


def _plain_row(state: RefState, now: datetime) -> list[str | Text]:
    run = state.last_run
    label = f"#{run.number}" if run.number is not None else run.run_id
    if run.status is not state.status:
        label += f" ({run.status.value})"
    icon, style = STATUS_STYLE[state.status]
    return [
        Text(f"{icon} {state.status.value}", style=style),
        state.source,
        state.project,
        state.ref or "—",
        human_ago(state.since, now),
        label,
        human_duration(run.duration_seconds),
    ]


def plain_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str | Text]]) -> Text:
    """The look of rich's default table (heavy head, one space of padding, title on the left)
    as one Text built from one string and a span per styled cell: each cell is measured once,
    in linear time. Cells are not wrapped; a line wider than the terminal is soft-wrapped by
    it. Control characters in cells are dropped, as rich does."""
    widths = [cell_len(name) for name in columns]
    plain_rows = [[_clean(cell) for cell in row] for row in rows]
    for row in plain_rows:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], cell_len(value))
    parts: list[str] = []
    spans: list[Span] = []
    at = 0

    def put(piece: str, style: str | None = None) -> None:
        nonlocal at
        if style:
            spans.append(Span(at, at + len(piece), style))
        parts.append(piece)
        at += len(piece)

    put(title, "table.title")
    put("\n┏" + "┳".join("━" * (w + 2) for w in widths) + "┓\n┃")
    for name, width in zip(columns, widths, strict=True):
        put(" ")
        put(name, "table.header")
        put(" " * (width - cell_len(name)) + " ┃")
    put("\n┡" + "╇".join("━" * (w + 2) for w in widths) + "┩\n")
    for cells, cleaned in zip(rows, plain_rows, strict=True):
        put("│")
        for cell, shown, width in zip(cells, cleaned, widths, strict=True):
            put(" ")
            put(shown, str(cell.style) if isinstance(cell, Text) and cell.style else None)
            put(" " * (width - cell_len(shown)) + " │")
        put("\n")
    put("└" + "┴".join("─" * (w + 2) for w in widths) + "┘")
    return Text("".join(parts), spans=spans)


def _clean(cell: str | Text) -> str:
    return strip_control_codes(cell.plain if isinstance(cell, Text) else cell)

"""Server-rendered SVG charts (docs/architecture.md#http-and-dashboard: no JS build step): data in,
an SVG string out.

Pure: no I/O, no clock. Every text (titles, labels, tooltips) is escaped here, so the result can
be inserted into a page as markup. Shapes carry CSS classes (`bar-good`, `line`, `grid`, ...) that
the dashboard's stylesheet colours for light and dark themes; presentation attributes give the
same colours when an SVG is shown on its own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 560
HEIGHT = 200
# Room for the y-axis labels on the left and the x-axis labels below the plot.
LEFT, RIGHT, TOP, BOTTOM = 46, 10, 12, 26
TONES = ("good", "warn", "bad", "neutral")
_FILL = {"good": "#1a7f37", "warn": "#bf8700", "bad": "#cf222e", "neutral": "#57606a"}
# Steps for duration axes, in seconds: round numbers of seconds, minutes, hours and days.
_DURATION_STEPS = (
    1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200,
    86400, 172800, 604800,
)  # fmt: skip


@dataclass(frozen=True)
class Bar:
    """One bar: `value` None means no data for that slot (drawn as a faint stub)."""

    label: str
    value: float | None
    tooltip: str
    tone: str = "neutral"


@dataclass(frozen=True)
class Point:
    """One point of a line: `value` None leaves a gap in the line."""

    label: str
    value: float | None
    tooltip: str


@dataclass(frozen=True)
class Tick:
    """A horizontal grid line at `value`, labelled on the y axis."""

    value: float
    label: str


def _attr(value: str) -> str:
    return escape(value, quote=True)


def _num(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _open(title: str, kind: str, width: int, height: int) -> list[str]:
    label = _attr(title)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{kind}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{label}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{label}</title>",
    ]


def _plot(width: int, height: int) -> tuple[float, float, float, float]:
    """Left, top, width and height of the plot area."""
    return LEFT, TOP, width - LEFT - RIGHT, height - TOP - BOTTOM


def _grid(ticks: Sequence[Tick], top_value: float, width: int, height: int) -> list[str]:
    left, top, plot_w, plot_h = _plot(width, height)
    parts = ['<g class="grid">']
    for tick in ticks:
        if top_value <= 0 or not 0 <= tick.value <= top_value:
            continue
        y = top + plot_h - tick.value / top_value * plot_h
        parts.append(
            f'<line x1="{_num(left)}" y1="{_num(y)}" x2="{_num(left + plot_w)}" y2="{_num(y)}" '
            'stroke="#d0d7de" stroke-width="1"/>'
        )
        parts.append(
            f'<text class="axis" x="{_num(left - 6)}" y="{_num(y + 4)}" text-anchor="end" '
            f'font-size="11" fill="#57606a">{escape(tick.label)}</text>'
        )
    parts.append("</g>")
    return parts


def _x_labels(labels: Sequence[str], width: int, height: int) -> list[str]:
    left, top, plot_w, plot_h = _plot(width, height)
    slot = plot_w / len(labels)
    # Label every other slot when they are many, always keeping the newest (rightmost) one.
    step = 2 if len(labels) > 10 else 1
    parts = ['<g class="x-labels">']
    last = len(labels) - 1
    for index, label in enumerate(labels):
        if (last - index) % step:
            continue
        x = left + slot * (index + 0.5)
        parts.append(
            f'<text class="axis" x="{_num(x)}" y="{_num(top + plot_h + 17)}" '
            f'text-anchor="middle" font-size="11" fill="#57606a">{escape(label)}</text>'
        )
    parts.append("</g>")
    return parts


def _empty(message: str, width: int, height: int) -> str:
    left, top, plot_w, plot_h = _plot(width, height)
    return (
        f'<text class="chart-empty" x="{_num(left + plot_w / 2)}" y="{_num(top + plot_h / 2)}" '
        f'text-anchor="middle" font-size="13" fill="#57606a">{escape(message)}</text>'
    )


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    max_value: float,
    ticks: Sequence[Tick] = (),
    empty: str = "No data yet",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """Vertical bars scaled to `max_value`, one slot per item, a tooltip on each.

    A zero value still shows a thin bar (a 0 % day is data, unlike a day without any); a None
    value shows a faint stub of class `bar-none`."""
    parts = _open(title, "bars", width, height)
    if not bars or all(bar.value is None for bar in bars):
        parts += _grid(ticks, max_value, width, height)
        if bars:
            parts += _x_labels([bar.label for bar in bars], width, height)
        parts += [_empty(empty, width, height), "</svg>"]
        return "".join(parts)
    left, top, plot_w, plot_h = _plot(width, height)
    parts += _grid(ticks, max_value, width, height)
    slot = plot_w / len(bars)
    bar_w = max(slot * 0.68, 1.0)
    baseline = top + plot_h
    parts.append('<g class="bars">')
    for index, bar in enumerate(bars):
        x = left + slot * index + (slot - bar_w) / 2
        tone = bar.tone if bar.tone in TONES else "neutral"
        tip = f"<title>{escape(bar.tooltip)}</title>"
        if bar.value is None:
            parts.append(
                f'<g class="bar bar-none">{tip}<rect class="bar-hit" x="{_num(x)}" '
                f'y="{_num(top)}" width="{_num(bar_w)}" height="{_num(plot_h)}" '
                'fill="transparent"/>'
                f'<rect x="{_num(x)}" y="{_num(baseline - 2)}" width="{_num(bar_w)}" '
                'height="2" fill="#d0d7de"/></g>'
            )
            continue
        ratio = min(max(bar.value / max_value, 0.0), 1.0) if max_value > 0 else 0.0
        bar_h = max(ratio * plot_h, 2.0)
        parts.append(
            f'<g class="bar bar-{tone}">{tip}<rect class="bar-hit" x="{_num(x)}" '
            f'y="{_num(top)}" width="{_num(bar_w)}" height="{_num(plot_h)}" fill="transparent"/>'
            f'<rect class="bar-value" x="{_num(x)}" y="{_num(baseline - bar_h)}" '
            f'width="{_num(bar_w)}" height="{_num(bar_h)}" rx="2" fill="{_FILL[tone]}"/></g>'
        )
    parts.append("</g>")
    parts += _x_labels([bar.label for bar in bars], width, height)
    parts.append("</svg>")
    return "".join(parts)


def line_chart(
    points: Sequence[Point],
    *,
    title: str,
    ticks: Sequence[Tick] | None = None,
    max_value: float | None = None,
    empty: str = "No data yet",
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """A line through the points with a value (gaps where None), a dot with a tooltip on each.

    Without `ticks`/`max_value` the axis is one of durations (`duration_ticks`)."""
    values = [point.value for point in points if point.value is not None]
    if ticks is None or max_value is None:
        ticks, max_value = duration_ticks(max(values) if values else 0.0)
    parts = _open(title, "line", width, height)
    parts += _grid(ticks, max_value, width, height)
    if points:
        parts += _x_labels([point.label for point in points], width, height)
    if not values:
        parts += [_empty(empty, width, height), "</svg>"]
        return "".join(parts)
    left, top, plot_w, plot_h = _plot(width, height)
    slot = plot_w / len(points)
    baseline = top + plot_h

    def position(index: int, value: float) -> tuple[float, float]:
        ratio = min(max(value / max_value, 0.0), 1.0) if max_value else 0.0
        return left + slot * (index + 0.5), baseline - ratio * plot_h

    segments: list[list[tuple[float, float]]] = [[]]
    for index, point in enumerate(points):
        if point.value is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(position(index, point.value))
    for segment in (s for s in segments if s):
        coords = " ".join(f"{_num(x)},{_num(y)}" for x, y in segment)
        first_x, last_x = segment[0][0], segment[-1][0]
        area = f"{_num(first_x)},{_num(baseline)} {coords} {_num(last_x)},{_num(baseline)}"
        parts.append(f'<polygon class="area" points="{area}" fill="#0969da" fill-opacity="0.12"/>')
        parts.append(
            f'<polyline class="line" points="{coords}" fill="none" stroke="#0969da" '
            'stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>'
        )
    parts.append('<g class="points">')
    for index, point in enumerate(points):
        if point.value is None:
            continue
        x, y = position(index, point.value)
        parts.append(
            f'<g class="point"><title>{escape(point.tooltip)}</title>'
            f'<circle cx="{_num(x)}" cy="{_num(y)}" r="3.5" fill="#0969da"/></g>'
        )
    parts.append("</g></svg>")
    return "".join(parts)


def percent_ticks() -> tuple[list[Tick], float]:
    """Grid lines at 0, 50 and 100 % for a 0..1 scale, and that scale's top."""
    return [Tick(0.0, "0%"), Tick(0.5, "50%"), Tick(1.0, "100%")], 1.0


def duration_ticks(largest: float) -> tuple[list[Tick], float]:
    """Grid lines at a round duration step for values up to `largest` seconds (at most five
    lines above zero), and the axis top: a whole number of steps at or above `largest`."""
    if largest <= 0 or not math.isfinite(largest):
        return [Tick(0.0, "0s"), Tick(60.0, "1m")], 60.0
    step = next((s for s in _DURATION_STEPS if largest / s <= 4), _DURATION_STEPS[-1])
    count = max(math.ceil(largest / step), 1)
    if count * step == largest:
        # Leave a little room above the highest point.
        count += 1
    count = min(count, 5)
    top = count * step
    return [Tick(float(n * step), short_duration(n * step)) for n in range(count + 1)], float(top)


def short_duration(seconds: float) -> str:
    """A compact duration for axis labels: `45s`, `5m`, `1h30m`, `2d`."""
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        minutes, secs = divmod(total, 60)
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    if total < 86400:
        hours, rest = divmod(total, 3600)
        minutes = rest // 60
        return f"{hours}h{minutes:02d}m" if minutes else f"{hours}h"
    days, rest = divmod(total, 86400)
    hours = rest // 3600
    return f"{days}d{hours}h" if hours else f"{days}d"


def rate_tone(rate: float | None) -> str:
    """The colour class of a success rate: good from 90 %, warn from 70 %, bad below."""
    if rate is None:
        return "neutral"
    if rate >= 0.9:
        return "good"
    if rate >= 0.7:
        return "warn"
    return "bad"

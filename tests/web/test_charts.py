"""SVG charts: well-formed XML, one shape per data item, gaps and empty data, escaped text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ciwatch.web.charts import (
    Bar,
    Point,
    Tick,
    bar_chart,
    duration_ticks,
    line_chart,
    percent_ticks,
    rate_tone,
    short_duration,
)

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # noqa: S314 (our own output)
    assert root.tag == f"{SVG}svg"
    return root


def with_class(root: ET.Element, tag: str, css: str) -> list[ET.Element]:
    return [el for el in root.iter(f"{SVG}{tag}") if css in (el.get("class") or "").split()]


def texts(root: ET.Element) -> list[str]:
    return [el.text or "" for el in root.iter() if el.tag in (f"{SVG}text", f"{SVG}title")]


def bars(values: list[float | None]) -> list[Bar]:
    return [
        Bar(label=f"{n + 1} Jan", value=v, tooltip=f"day {n}: {v}", tone=rate_tone(v))
        for n, v in enumerate(values)
    ]


def test_bar_chart_draws_one_bar_per_value_and_a_stub_per_gap() -> None:
    ticks, top = percent_ticks()
    values: list[float | None] = [1.0, 0.95, None, 0.5, 0.0, None, 0.8]
    root = parse(bar_chart(bars(values), title="Success rate", max_value=top, ticks=ticks))
    drawn = with_class(root, "rect", "bar-value")
    assert len(drawn) == 5
    assert len(with_class(root, "g", "bar-none")) == 2
    # Every slot carries a tooltip, gaps included.
    groups = with_class(root, "g", "bar")
    assert [g.find(f"{SVG}title").text for g in groups] == [  # type: ignore[union-attr]
        f"day {n}: {v}" for n, v in enumerate(values)
    ]
    heights = [float(rect.get("height", "0")) for rect in drawn]
    assert heights[0] > heights[1] > heights[2] > heights[3] > 0  # a 0 % day is still visible
    tones = [g.get("class") for g in groups if "bar-none" not in (g.get("class") or "")]
    assert tones == ["bar bar-good", "bar bar-good", "bar bar-bad", "bar bar-bad", "bar bar-warn"]


def test_bar_heights_are_proportional_and_fit_the_plot() -> None:
    root = parse(bar_chart(bars([1.0, 0.5, 0.25]), title="t", max_value=1.0, height=200))
    full, half, quarter = (
        float(r.get("height", "0")) for r in with_class(root, "rect", "bar-value")
    )
    assert half == pytest.approx(full / 2, abs=0.1)
    assert quarter == pytest.approx(full / 4, abs=0.1)
    for rect in with_class(root, "rect", "bar-value"):
        assert float(rect.get("y", "0")) >= 0
        assert float(rect.get("y", "0")) + float(rect.get("height", "0")) <= 200


def test_grid_lines_and_labels_follow_the_ticks() -> None:
    ticks, top = percent_ticks()
    root = parse(bar_chart(bars([0.5]), title="t", max_value=top, ticks=ticks))
    assert len(list(root.iter(f"{SVG}line"))) == 3
    assert {"0%", "50%", "100%"} <= set(texts(root))


@pytest.mark.parametrize("count", [1, 7, 14, 30])
def test_x_labels_thin_out_but_keep_the_newest(count: int) -> None:
    root = parse(bar_chart(bars([0.9] * count), title="t", max_value=1.0))
    labels = [el.text for el in with_class(root, "text", "axis")]
    assert f"{count} Jan" in labels
    assert len(labels) == (count if count <= 10 else (count + 1) // 2)


def test_empty_bar_chart_says_so() -> None:
    for data in ([], bars([None, None])):
        root = parse(bar_chart(data, title="t", max_value=1.0, empty="No runs in 14 days"))
        assert not with_class(root, "rect", "bar-value")
        assert [el.text for el in with_class(root, "text", "chart-empty")] == ["No runs in 14 days"]


def test_line_chart_has_a_point_per_value_and_breaks_at_gaps() -> None:
    values: list[float | None] = [300.0, 320.0, None, 280.0, 290.0, 310.0, None]
    points = [Point(f"d{n}", v, f"tip {n}") for n, v in enumerate(values)]
    root = parse(line_chart(points, title="Duration"))
    assert len(list(root.iter(f"{SVG}circle"))) == 5
    lines = with_class(root, "polyline", "line")
    assert [len(line.get("points", "").split()) for line in lines] == [2, 3]
    assert len(with_class(root, "polygon", "area")) == 2
    tips = [g.find(f"{SVG}title").text for g in with_class(root, "g", "point")]  # type: ignore[union-attr]
    assert tips == ["tip 0", "tip 1", "tip 3", "tip 4", "tip 5"]


def test_line_chart_scales_to_its_duration_axis() -> None:
    points = [Point("a", 60.0, ""), Point("b", 600.0, "")]
    root = parse(line_chart(points, title="t", height=200))
    low, high = (float(c.get("cy", "0")) for c in root.iter(f"{SVG}circle"))
    assert high < low  # larger values are drawn higher
    ticks, top = duration_ticks(600.0)
    assert top >= 600.0
    assert [t.label for t in ticks][-1] in texts(root)


def test_a_single_point_is_drawn() -> None:
    root = parse(line_chart([Point("a", 42.0, "only")], title="t"))
    assert len(list(root.iter(f"{SVG}circle"))) == 1


def test_empty_line_chart_says_so() -> None:
    for data in ([], [Point("a", None, ""), Point("b", None, "")]):
        root = parse(line_chart(data, title="t", empty="No successful runs"))
        assert not list(root.iter(f"{SVG}circle"))
        assert [el.text for el in with_class(root, "text", "chart-empty")] == ["No successful runs"]


def test_every_text_is_escaped() -> None:
    hostile = '<script>alert(1)</script> " onerror="x & more'
    svg = bar_chart(
        [Bar(hostile, 0.5, hostile, "bad")],
        title=hostile,
        max_value=1.0,
        ticks=[Tick(0.5, hostile)],
        empty=hostile,
    )
    svg += line_chart([Point(hostile, 10.0, hostile)], title=hostile)
    assert "<script>" not in svg
    assert '" onerror="' not in svg
    for chart in (svg.split("</svg>")[0] + "</svg>", svg.split("</svg>")[1] + "</svg>"):
        root = parse(chart)
        assert root.get("aria-label") == hostile
        assert hostile in texts(root)


def test_unknown_tone_falls_back_to_neutral() -> None:
    root = parse(bar_chart([Bar("a", 0.5, "", 'x" onload="y')], title="t", max_value=1.0))
    assert [g.get("class") for g in with_class(root, "g", "bar")] == ["bar bar-neutral"]


@pytest.mark.parametrize(
    ("largest", "labels"),
    [
        (0.0, ["0s", "1m"]),
        (45.0, ["0s", "15s", "30s", "45s", "1m"]),
        (290.0, ["0s", "2m", "4m", "6m"]),
        (3600.0, ["0s", "15m", "30m", "45m", "1h", "1h15m"]),
        (5 * 3600.0, ["0s", "2h", "4h", "6h"]),
    ],
)
def test_duration_ticks_use_round_steps(largest: float, labels: list[str]) -> None:
    ticks, top = duration_ticks(largest)
    assert [t.label for t in ticks] == labels
    assert top > largest
    assert ticks[-1].value == top


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (60, "1m"), (90, "1m30s"), (3600, "1h"), (5400, "1h30m"),
     (86400, "1d"), (90000, "1d1h")],
)  # fmt: skip
def test_short_duration(seconds: float, text: str) -> None:
    assert short_duration(seconds) == text


def test_rate_tone_thresholds() -> None:
    assert [rate_tone(r) for r in (None, 1.0, 0.9, 0.89, 0.7, 0.69, 0.0)] == [
        "neutral", "good", "good", "warn", "warn", "bad", "bad",
    ]  # fmt: skip

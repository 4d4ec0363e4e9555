"""deploy/: the Prometheus config and rules pass promtool (and its rule unit tests), and the
Grafana dashboard is valid JSON naming only metrics that /metrics declares."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ciwatch.metrics import METRIC_NAMES

from .harness import DEPLOY, require_tool

PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
RULES_YML = DEPLOY / "prometheus" / "rules.yml"
DASHBOARD = DEPLOY / "grafana" / "ciwatch.json"
RULE_TESTS = Path(__file__).parent / "prometheus_rules_test.yml"
# Metrics that Prometheus itself provides.
PROMETHEUS_OWN = {"up"}


def metric_names(expr: str) -> set[str]:
    """The ciwatch metric names a PromQL expression uses."""
    return set(re.findall(r"\b(?:ci|ciwatch)_[a-z0-9_]+\b", expr))


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = require_tool("promtool")
    return subprocess.run([tool, *args], capture_output=True, text=True, check=False, timeout=60)


def test_promtool_check_config() -> None:
    done = promtool("check", "config", str(PROMETHEUS_YML))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_check_rules() -> None:
    done = promtool("check", "rules", str(RULES_YML))
    assert done.returncode == 0, done.stdout + done.stderr


def test_rules_name_only_declared_metrics() -> None:
    rules = yaml.safe_load(RULES_YML.read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert exprs
    for expr in exprs:
        assert metric_names(expr) <= METRIC_NAMES, expr
        assert metric_names(expr) or set(re.findall(r"\w+", expr)) & PROMETHEUS_OWN, expr


def test_alert_rules_fire_as_documented() -> None:
    done = promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_has_a_prometheus_datasource_variable(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
    assert dashboard["uid"] == "ciwatch"
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids))


def test_dashboard_names_only_declared_metrics(dashboard: dict[str, Any]) -> None:
    exprs = [t["expr"] for panel in panels(dashboard) for t in panel.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if v.get("type") == "query"]
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= METRIC_NAMES, expr
        used |= names
    # The panels the dashboard promises: status, success rate, durations, queue times,
    # API budget, poll errors.
    assert {
        "ci_pipeline_status",
        "ci_ref_failing",
        "ci_ref_failing_since_timestamp_seconds",
        "ci_pipeline_runs_total",
        "ci_pipeline_last_duration_seconds",
        "ci_pipeline_last_queued_seconds",
        "ciwatch_rate_limit_remaining",
        "ciwatch_poll_errors_total",
    } <= used


def test_dashboard_panels_fit_the_grid(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    rules = yaml.safe_load(RULES_YML.read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    return exprs + [t["expr"] for panel in panels(dashboard) for t in panel.get("targets", [])]


def test_failing_is_the_refs_colour_not_the_newest_run(dashboard: dict[str, Any]) -> None:
    # ci_pipeline_status{status="failed"} drops to 0 when a red ref gets a new run: what is red
    # comes from ci_ref_failing (issue 10). Job statuses are about the newest run, and fine.
    for expr in _exprs(dashboard):
        assert not re.search(r'ci_pipeline_status\{[^}]*status=~?"[^"]*failed', expr), expr
    rules = yaml.safe_load(RULES_YML.read_text())
    (failing,) = [
        rule
        for group in rules["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "CIPipelineFailingOnDefaultBranch"
    ]
    assert metric_names(failing["expr"]) == {"ci_ref_failing_since_timestamp_seconds"}


def _panel_expr(dashboard: dict[str, Any], title: str) -> str:
    (panel,) = [panel for panel in panels(dashboard) if panel["title"] == title]
    (target,) = panel["targets"]
    expr: str = target["expr"]
    # The dashboard's filters, all selected.
    return expr.replace("$source", ".*").replace("$project", ".*").replace("$ref", ".*")


def test_the_failing_panels_count_red_refs(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool evaluates the panels' queries over series as ciwatch exposes them: a red ref
    with a new run running counts as failing, a ref seen by two replicas counts once, a ref
    that recovered does not count, and "red for" is measured from when the ref broke."""
    labels = 'source="gl",provider="gitlab",job="ciwatch"'
    series = [
        # g/app main: red since t=0, its newest run running since 2m; scraped from two replicas.
        (f'ci_ref_failing{{{labels},project="g/app",ref="main",instance="a"}}', "1x10"),
        (f'ci_ref_failing{{{labels},project="g/app",ref="main",instance="b"}}', "1x10"),
        (
            f'ci_ref_failing_since_timestamp_seconds{{{labels},project="g/app",ref="main",instance="a"}}',
            "0x10",
        ),
        (
            f'ci_ref_failing_since_timestamp_seconds{{{labels},project="g/app",ref="main",instance="b"}}',
            "0x10",
        ),
        (
            f'ci_pipeline_status{{{labels},project="g/app",ref="main",status="failed",instance="a"}}',
            "1 1 0x8",
        ),
        (
            f'ci_pipeline_status{{{labels},project="g/app",ref="main",status="running",instance="a"}}',
            "0 0 1x8",
        ),
        # g/lib main: red since 60 s in.
        (f'ci_ref_failing{{{labels},project="g/lib",ref="main",instance="a"}}', "1x10"),
        (
            f'ci_ref_failing_since_timestamp_seconds{{{labels},project="g/lib",ref="main",instance="a"}}',
            "60x10",
        ),
        # g/app dev: red until it recovered at 5m.
        (f'ci_ref_failing{{{labels},project="g/app",ref="dev",instance="a"}}', "1x4 0x5"),
        (
            f'ci_ref_failing_since_timestamp_seconds{{{labels},project="g/app",ref="dev",instance="a"}}',
            "0x4 stale",
        ),
    ]
    red_for = 'source="gl",provider="gitlab",project="{}",ref="main"'
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": name, "values": values} for name, values in series],
                "promql_expr_test": [
                    {
                        "expr": _panel_expr(dashboard, "Refs failing"),
                        "eval_time": "3m",
                        "exp_samples": [{"labels": "{}", "value": 3}],
                    },
                    {
                        "expr": _panel_expr(dashboard, "Refs failing"),
                        "eval_time": "8m",
                        "exp_samples": [{"labels": "{}", "value": 2}],
                    },
                    {
                        "expr": _panel_expr(dashboard, "Failing refs (red for)"),
                        "eval_time": "8m",
                        "exp_samples": [
                            {"labels": "{" + red_for.format("g/app") + "}", "value": 480},
                            {"labels": "{" + red_for.format("g/lib") + "}", "value": 420},
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "panels_test.yml"
    path.write_text(yaml.safe_dump(tests))
    done = promtool("test", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_success_rate_panels_show_no_nan(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """A project with no success or failed run in the window (only canceled ones) has no success
    rate: no sample, where `0 / 0` drew NaN (issue 12); the others get theirs."""
    labels = 'source="gl",provider="gitlab",ref="main",job="ciwatch",instance="a"'
    total = "ci_pipeline_runs_total"
    series = [
        (f'{total}{{{labels},project="g/app",status="success"}}', "0+3x20"),
        (f'{total}{{{labels},project="g/app",status="failed"}}', "0+1x20"),
        (f'{total}{{{labels},project="g/idle",status="canceled"}}', "0+1x20"),
        (f'{total}{{{labels},project="g/idle",status="success"}}', "5x20"),
        (f'{total}{{{labels},project="g/idle",status="failed"}}', "2x20"),
    ]
    tests = {
        "rule_files": [],
        "evaluation_interval": "5m",
        "tests": [
            {
                "interval": "5m",
                "input_series": [{"series": name, "values": values} for name, values in series],
                "promql_expr_test": [
                    {
                        "expr": _panel_expr(dashboard, "Success rate by project (1h window)"),
                        "eval_time": "90m",
                        "exp_samples": [{"labels": '{project="g/app",source="gl"}', "value": 0.75}],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "success_rate_test.yml"
    path.write_text(yaml.safe_dump(tests))
    done = promtool("test", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_panel_puts_fractions_and_counts_on_one_axis(dashboard: dict[str, Any]) -> None:
    """Issue 12: the API budget panel drew a 0-1 fraction and raw request counts on one
    percent axis. A 0-1 panel draws only ratios, and no panel hides a query of another unit."""
    for panel in panels(dashboard):
        targets = panel.get("targets", [])
        assert not any(t.get("hide") for t in targets), panel["title"]
        if panel.get("fieldConfig", {}).get("defaults", {}).get("unit") == "percentunit":
            for target in targets:
                assert " / " in target["expr"], (panel["title"], target["expr"])
    titles = {panel["title"]: panel for panel in panels(dashboard)}
    fraction = titles["API budget left (fraction)"]
    counts = titles["API requests left (rate-limit window)"]
    assert [metric_names(t["expr"]) for t in fraction["targets"]] == [
        {"ciwatch_rate_limit_remaining", "ciwatch_rate_limit_limit"}
    ]
    assert counts["fieldConfig"]["defaults"]["unit"] == "short"
    assert {n for t in counts["targets"] for n in metric_names(t["expr"])} == {
        "ciwatch_rate_limit_remaining",
        "ciwatch_rate_limit_limit",
    }

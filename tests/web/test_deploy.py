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

"""docs/http.md names every route of the app, docs/metrics.md every metric with its type and
labels, and each deploy file they mention exists."""

from __future__ import annotations

import re

import pytest

from ciwatch.metrics import METRICS, MetricSpec
from ciwatch.store import open_store
from ciwatch.web.app import create_app

from .harness import ROOT, get_routes, make_runtime

HTTP_MD = (ROOT / "docs" / "http.md").read_text()
METRICS_MD = (ROOT / "docs" / "metrics.md").read_text()


def _templates() -> list[tuple[str, str]]:
    app = create_app(make_runtime(open_store("sqlite:///unused.db")))
    return sorted({(method, template) for method, template, _ in get_routes(app)})


@pytest.mark.parametrize(("method", "template"), _templates())
def test_every_route_is_documented(method: str, template: str) -> None:
    path = re.sub(r"\{(\w+):path\}", r"{\1}", template)
    if template == "/static":
        path = "/static/..."
    assert f"{method} {path}`" in HTTP_MD, f"{method} {path} is missing from docs/http.md"


@pytest.mark.parametrize("spec", METRICS, ids=[spec.name for spec in METRICS])
def test_every_metric_is_documented(spec: MetricSpec) -> None:
    name, kind, labels = spec.name, spec.type, spec.labels
    rows = [line for line in METRICS_MD.splitlines() if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"{name}: one table row expected in docs/metrics.md"
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert cells[1] == kind
    assert cells[2].strip("`").split() == list(labels)


def test_documented_deploy_files_exist() -> None:
    for relative in set(re.findall(r"`(deploy/[\w/.]+)`", METRICS_MD + HTTP_MD)):
        assert (ROOT / relative).exists(), relative

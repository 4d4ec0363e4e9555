"""Write prometheusrule.yaml beside this file from deploy/prometheus/rules.yml, so that the
Prometheus Operator gets the same alert rules as a plain Prometheus and no second list is kept
by hand. Run from anywhere: python deploy/kubernetes/components/prometheus-operator/generate.py
(tests/test_deploy_kustomize.py checks that the committed file is what this writes)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parents[2] / "prometheus" / "rules.yml"
OUTPUT = HERE / "prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/rules.yml by generate.py beside this file: do not edit, run
#   python deploy/kubernetes/components/prometheus-operator/generate.py
# Your Prometheus resource selects PrometheusRules by label (ruleSelector): add its label (e.g.
# `release: kube-prometheus-stack` for that Helm chart) in your own kustomization, not here.
"""


def render(rules_text: str) -> str:
    """The PrometheusRule manifest holding the groups of `rules_text` (a rules.yml)."""
    groups = yaml.safe_load(rules_text)["groups"]
    resource = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "ciwatch",
            # The namespace of deploy/kubernetes, also when the including kustomization sets none.
            "namespace": "ciwatch",
            "labels": {"app.kubernetes.io/name": "ciwatch"},
        },
        "spec": {"groups": groups},
    }
    body = yaml.safe_dump(resource, sort_keys=False, allow_unicode=True, width=100)
    return HEADER + body


def main() -> int:
    OUTPUT.write_text(render(RULES.read_text()))
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

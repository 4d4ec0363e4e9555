"""deploy/kubernetes's layouts as kustomize builds them: the default, overlays/ha, overlays/cron,
and components/prometheus-operator added to a layout, validated statically (no cluster runs
here; docs/deployment.md says what is and is not checked).

Every layout is built with `kubectl kustomize`, and every document it outputs is validated with
kubernetes-validate in strict mode. The Prometheus Operator's ServiceMonitor and PrometheusRule
are custom resources, which kubernetes-validate has no schema for: their structure is checked
against the fields of the operator's CRDs (monitoring.coreos.com/v1), and the PrometheusRule's
groups against deploy/prometheus/rules.yml, from which it is generated.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ciwatch.config import load_settings, parse_duration
from test_deploy import (
    ENV_REFERENCE,
    K8S,
    OLDEST_KUBERNETES,
    PYPROJECT,
    _kubernetes_validate,
    container,
    load_yaml_documents,
    parse_cli,
    pod_spec,
    require_tool,
)

HA = K8S / "overlays" / "ha"
CRON = K8S / "overlays" / "cron"
COMPONENT = K8S / "components" / "prometheus-operator"
RULES_YML = K8S.parents[0] / "prometheus" / "rules.yml"
LAYOUTS = {"default": K8S, "ha": HA, "cron": CRON}
SERVER_LABELS = {"app.kubernetes.io/name": "ciwatch", "app.kubernetes.io/component": "server"}

# The fields of the Prometheus Operator's CRDs (monitoring.coreos.com/v1) that these manifests
# may use: anything else is a misspelling, which the API server would reject (or drop). Each is
# a field of the CRDs' openAPIV3Schema (checked by hand against the operator's v1 CRDs, 2026).
SERVICE_MONITOR_SPEC = {"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels"}
ENDPOINT_FIELDS = {
    "port",
    "targetPort",
    "path",
    "scheme",
    "interval",
    "scrapeTimeout",
    "basicAuth",
    "authorization",
    "bearerTokenSecret",
    "tlsConfig",
    "honorLabels",
    "honorTimestamps",
    "relabelings",
    "metricRelabelings",
    "params",
    "followRedirects",
}
RULE_GROUP_FIELDS = {"name", "interval", "rules", "limit", "partial_response_strategy"}
RULE_FIELDS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}


def kustomize(path: Path) -> list[dict[str, Any]]:
    kubectl = require_tool("kubectl", "the Kubernetes client, which ships kustomize")
    done = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def with_component(layout: Path, tmp_path: Path) -> Path:
    """A kustomization of a user's: `layout` plus the prometheus-operator component, by the
    relative paths kustomize requires."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(layout, tmp_path)],
                "components": [os.path.relpath(COMPONENT, tmp_path)],
            }
        )
    )
    return tmp_path


def by_kind(built: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for doc in built:
        assert doc["kind"] not in found, f"two {doc['kind']}s"
        found[doc["kind"]] = doc
    return found


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict[str, Any]]]:
    return {name: kustomize(path) for name, path in LAYOUTS.items()}


@pytest.fixture
def monitored(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """overlays/ha with the prometheus-operator component, built."""
    return by_kind(kustomize(with_component(HA, tmp_path)))


def is_custom_resource(doc: dict[str, Any]) -> bool:
    return str(doc["apiVersion"]).startswith("monitoring.coreos.com/")


# --- every layout -------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_document_matches_the_kubernetes_schema(
    layout: str, built: dict[str, list[dict[str, Any]]]
) -> None:
    validator = _kubernetes_validate()
    for doc in built[layout]:
        assert not is_custom_resource(doc), f"{layout} needs no CRD"
        for version in (OLDEST_KUBERNETES, validator.latest_version()):
            validator.validate(doc, version, strict=True)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_is_in_the_namespace_and_runs_this_version(
    layout: str, built: dict[str, list[dict[str, Any]]]
) -> None:
    for doc in built[layout]:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "ciwatch", (layout, doc["kind"])
        if doc["kind"] in ("Deployment", "CronJob"):
            assert container(doc)["image"] == f"ciwatch:{PYPROJECT['version']}"


def test_the_component_adds_only_custom_resources_that_validate(tmp_path: Path) -> None:
    validator = _kubernetes_validate()
    for layout in (K8S, HA):
        folder = tmp_path / layout.name
        folder.mkdir()
        docs = kustomize(with_component(layout, folder))
        custom = sorted(doc["kind"] for doc in docs if is_custom_resource(doc))
        assert custom == ["PrometheusRule", "ServiceMonitor"]
        for doc in docs:
            if not is_custom_resource(doc):
                validator.validate(doc, validator.latest_version(), strict=True)


def test_the_default_layout_has_no_cronjob(built: dict[str, list[dict[str, Any]]]) -> None:
    kinds = sorted(doc["kind"] for doc in built["default"])
    assert kinds == ["ConfigMap", "Deployment", "Namespace", "Secret", "Service"]


# --- overlays/ha --------------------------------------------------------------------------------


def secret_env(resources: dict[str, dict[str, Any]]) -> dict[str, str]:
    data: dict[str, str] = resources["Secret"]["stringData"]
    return data


def test_ha_runs_three_replicas_spread_over_nodes_and_zones(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    resources = by_kind(built["ha"])
    deployment = resources["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    constraints = {c["topologyKey"]: c for c in pod_spec(deployment)["topologySpreadConstraints"]}
    assert set(constraints) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
    assert constraints["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert constraints["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
    for constraint in constraints.values():
        assert constraint["maxSkew"] == 1
        assert constraint["labelSelector"]["matchLabels"].items() <= pod_labels.items()
        assert constraint["matchLabelKeys"] == ["pod-template-hash"]
    # A rolling update never takes a replica away before its successor is ready.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_ha_has_a_disruption_budget_for_its_pods(built: dict[str, list[dict[str, Any]]]) -> None:
    resources = by_kind(built["ha"])
    deployment, budget = resources["Deployment"], resources["PodDisruptionBudget"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    replicas = deployment["spec"]["replicas"]
    if "maxUnavailable" in budget["spec"]:
        assert 0 < budget["spec"]["maxUnavailable"] < replicas
    else:
        assert 0 < budget["spec"]["minAvailable"] < replicas


def test_ha_is_ready_only_while_readyz_answers(built: dict[str, list[dict[str, Any]]]) -> None:
    main = container(by_kind(built["ha"])["Deployment"])
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_ha_takes_postgresql_from_the_secret_and_partitions(
    built: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    resources = by_kind(built["ha"])
    main = container(resources["Deployment"])
    secret = resources["Secret"]
    assert [e["secretRef"]["name"] for e in main["envFrom"]] == [secret["metadata"]["name"]]
    text = resources["ConfigMap"]["data"]["ciwatch.yaml"]
    raw = yaml.safe_load(text)
    reference = ENV_REFERENCE.fullmatch(raw["database"])
    assert reference is not None, "database is one ${VAR}"
    name, default = reference.groups()
    assert default is None, "no fallback to a SQLite file inside one pod"
    assert name in secret_env(resources)
    path = tmp_path / "ciwatch.yaml"
    path.write_text(text)
    settings = load_settings(path, env=secret_env(resources))
    assert urlsplit(settings.database).scheme.startswith("postgres")
    # Three replicas divide the targets rather than each polling all of them.
    assert settings.collection.partition is True


# --- overlays/cron ------------------------------------------------------------------------------


def test_cron_polls_on_a_schedule_with_nothing_polling_on_top(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    resources = by_kind(built["cron"])
    assert sorted(resources) == ["ConfigMap", "CronJob", "Namespace", "Secret"]
    cronjob = resources["CronJob"]
    invocation = parse_cli(container(cronjob)["args"])
    assert invocation.path == ("poll",)
    assert invocation.params["once"] is True
    # A Job that fails while any ref is red fails every 15 minutes: noise, not a signal.
    assert not invocation.params["fail_on"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    main = container(cronjob)
    assert [e["secretRef"]["name"] for e in main["envFrom"]] == [
        resources["Secret"]["metadata"]["name"]
    ]
    (volume,) = [v for v in pod_spec(cronjob)["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == resources["ConfigMap"]["metadata"]["name"]


def test_the_cronjob_is_in_no_other_layout(built: dict[str, list[dict[str, Any]]]) -> None:
    for layout in ("default", "ha"):
        assert "CronJob" not in {doc["kind"] for doc in built[layout]}


# --- components/prometheus-operator -------------------------------------------------------------


def test_the_component_is_a_kustomize_component() -> None:
    (kustomization,) = load_yaml_documents(COMPONENT / "kustomization.yaml")
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1alpha1"
    assert kustomization["kind"] == "Component"
    assert sorted(kustomization["resources"]) == ["prometheusrule.yaml", "servicemonitor.yaml"]


def test_the_service_monitor_scrapes_the_service(monitored: dict[str, dict[str, Any]]) -> None:
    monitor, service = monitored["ServiceMonitor"], monitored["Service"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    spec = monitor["spec"]
    assert set(spec) <= SERVICE_MONITOR_SPEC, set(spec) - SERVICE_MONITOR_SPEC
    # The operator selects Services by their own labels, not by the Service's pod selector.
    assert spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert spec["selector"]["matchLabels"] == SERVER_LABELS
    port_names = {port["name"] for port in service["spec"]["ports"]}
    annotations = monitored["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    (endpoint,) = spec["endpoints"]
    assert set(endpoint) <= ENDPOINT_FIELDS, set(endpoint) - ENDPOINT_FIELDS
    assert endpoint["port"] in port_names
    assert endpoint["path"] == annotations["prometheus.io/path"] == "/metrics"
    interval = parse_duration(endpoint["interval"])
    assert parse_duration(endpoint["scrapeTimeout"]) < interval
    # As deploy/prometheus/prometheus.yml.
    prometheus = yaml.safe_load((K8S.parents[0] / "prometheus" / "prometheus.yml").read_text())
    (job,) = prometheus["scrape_configs"]
    assert interval == parse_duration(job["scrape_interval"])


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate", COMPONENT / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prometheus_rule_holds_exactly_the_groups_of_rules_yml(
    monitored: dict[str, dict[str, Any]],
) -> None:
    rule = monitored["PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["namespace"] == monitored["Service"]["metadata"]["namespace"]
    assert set(rule["spec"]) == {"groups"}
    groups = yaml.safe_load(RULES_YML.read_text())["groups"]
    assert rule["spec"]["groups"] == groups
    for group in rule["spec"]["groups"]:
        assert set(group) <= RULE_GROUP_FIELDS, set(group) - RULE_GROUP_FIELDS
        for each in group["rules"]:
            assert set(each) <= RULE_FIELDS, set(each) - RULE_FIELDS
            assert "alert" in each and isinstance(each["expr"], str)


def test_the_prometheus_rule_file_is_what_the_generator_writes() -> None:
    generator = load_generator()
    assert generator.RULES == RULES_YML
    expected = generator.render(RULES_YML.read_text())
    actual = (COMPONENT / "prometheusrule.yaml").read_text()
    assert actual == expected, (
        "prometheusrule.yaml is out of date: run "
        "python deploy/kubernetes/components/prometheus-operator/generate.py"
    )


def test_the_generator_follows_a_change_of_rules_yml() -> None:
    changed = yaml.safe_load(RULES_YML.read_text())
    changed["groups"][0]["rules"][0]["for"] = "1h"
    rendered = yaml.safe_load(load_generator().render(yaml.safe_dump(changed)))
    assert rendered["spec"]["groups"] == changed["groups"]


# --- the documentation --------------------------------------------------------------------------


def test_the_deployment_guide_applies_every_layout() -> None:
    text = (K8S.parents[1] / "docs" / "deployment.md").read_text()
    for command in (
        "kubectl apply -k deploy/kubernetes/overlays/ha",
        "kubectl apply -k deploy/kubernetes/overlays/cron",
        "python deploy/kubernetes/components/prometheus-operator/generate.py",
    ):
        assert command in text, command
    assert "deploy/kubernetes/components/prometheus-operator" in text


def test_the_documented_kustomization_with_the_component_builds(tmp_path: Path) -> None:
    text = (K8S.parents[1] / "docs" / "deployment.md").read_text()
    (example,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "components:" in b]
    # The guide's layout: the repository checked out as ../ciwatch beside your kustomization.
    checkout = os.path.relpath(K8S.parents[1], tmp_path)
    (tmp_path / "kustomization.yaml").write_text(example.replace("../ciwatch/", f"{checkout}/"))
    resources = by_kind(kustomize(tmp_path))
    assert {"ServiceMonitor", "PrometheusRule", "PodDisruptionBudget"} <= set(resources)
    (pairs,) = yaml.safe_load(example)["labels"]
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert pairs["pairs"].items() <= resources[kind]["metadata"]["labels"].items()
    # The label reaches no selector: the Deployment still selects its own pods.
    assert resources["Deployment"]["spec"]["selector"]["matchLabels"] == SERVER_LABELS

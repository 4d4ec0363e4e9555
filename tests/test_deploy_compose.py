"""deploy/compose.yaml, the whole stack on one Docker host, validated statically (no container
engine runs here; docs/deployment.md says what is and is not checked).

The file is validated against the Compose Specification's JSON schema (a copy in
tests/fixtures/compose-spec/), its `${VAR}` interpolation resolved as compose does, and then
cross-checked against what it wires together: the files it bind-mounts, the configuration that
ciwatch loads (through the real loader and `ciwatch config check`), the ports of that
configuration, of the image and of Prometheus' scrape target, the database URL against the
postgres service, and the Grafana provisioning against the Prometheus service and the dashboard.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from ciwatch.cli import app as cli_app
from ciwatch.clock import SystemClock
from ciwatch.config import Settings, load_settings, split_listen
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import open_store
from ciwatch.web.app import create_app
from test_deploy import ENV_REFERENCE, dockerfile_instructions, parse_cli, stages
from web.harness import free_port, serve

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
SCHEMA = Path(__file__).parent / "fixtures" / "compose-spec" / "compose-spec.json"
DEPLOYMENT_MD = ROOT / "docs" / "deployment.md"
PROMETHEUS_PORT = 9090  # Prometheus' default --web.listen-address
GRAFANA_PORT = 3000  # Grafana's default http_port
POSTGRES_PORT = 5432

# What a user puts in the shell or deploy/.env: every variable compose requires, given a value.
SHELL_ENV = {
    "POSTGRES_PASSWORD": "pg-s3cret",
    "CIWATCH_PASSWORD": "dashboard-s3cret",
    "CIWATCH_REPORT_TOKEN": "report-s3cret",
    "GRAFANA_ADMIN_PASSWORD": "grafana-s3cret",
}


# --- compose's interpolation ---------------------------------------------------------------------

# $$, ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}, $NAME
_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(Exception):
    """A `${NAME:?message}` whose NAME is not set: compose refuses to start."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """`value` (a loaded compose document or part of one) with every string interpolated the
    way the Compose Specification says ("Interpolation"); nested defaults are not supported."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        unset = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":-", "-"):
            return arg if unset else str(current)
        if op in (":?", "?"):
            if unset:
                raise MissingVariable(f"{name}: {arg}")
            return str(current)
        return current or ""

    return _INTERPOLATION.sub(substitute, value)


def test_interpolation_follows_the_spec() -> None:
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("a${SET}b$SET$$SET", env) == "avbv$SET"
    assert interpolate("${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${UNSET-d}", env) == "d d  d"
    assert interpolate("${SET:?no}", env) == "v"
    with pytest.raises(MissingVariable, match="EMPTY: no"):
        interpolate("${EMPTY:?no}", env)
    assert interpolate(["${UNSET}", {"k": 1}], env) == ["", {"k": 1}]


# --- the file and its schema ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """The compose file as compose sees it, with SHELL_ENV in the environment."""
    resolved: dict[str, Any] = interpolate(raw, SHELL_ENV)
    return resolved


def schema_validator() -> Any:
    schema = json.loads(SCHEMA.read_text())
    # It names its draft as ".../draft/2019-09/schema#", which jsonschema does not look up.
    assert schema["$schema"].startswith("http://json-schema.org/draft/2019-09/")
    cls = jsonschema.Draft201909Validator
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def test_the_compose_file_matches_the_compose_spec_schema(
    raw: dict[str, Any], compose: dict[str, Any]
) -> None:
    validator = schema_validator()
    for document in (raw, compose):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_the_schema_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    broken = json.loads(json.dumps(compose))
    broken["services"]["ciwatch"]["depend_on"] = broken["services"]["ciwatch"].pop("depends_on")
    assert list(schema_validator().iter_errors(broken))


def test_the_stack(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"ciwatch", "postgres", "prometheus", "grafana"}
    assert "version" not in compose, "obsolete: compose ignores it and warns"
    for name, service in compose["services"].items():
        assert service.get("restart") == "unless-stopped", name
    # Every named volume that a service uses is declared.
    declared = set(compose.get("volumes") or {})
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, source


def test_compose_refuses_to_start_without_the_secrets(raw: dict[str, Any]) -> None:
    for name in SHELL_ENV:
        env = {key: value for key, value in SHELL_ENV.items() if key != name}
        with pytest.raises(MissingVariable, match=name):
            interpolate(raw, env)


def test_no_secret_is_written_in_the_compose_file(raw: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    for value in SHELL_ENV.values():
        assert value not in text
    for name, service in raw["services"].items():
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASSWORD|TOKEN|SECRET|_URL$", key) and key != "CIWATCH_BASE_URL":
                assert "${" in str(value), f"{name}: {key} is written in the file"


# --- bind mounts and the build ------------------------------------------------------------------


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """container path -> host path (resolved from the compose file's directory) of a service's
    bind mounts, short syntax (`./src:/dst:ro`) and long (`type: bind`)."""
    found: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *_ = volume.split(":")
            if source.startswith((".", "/", "~")):
                found[target] = (COMPOSE.parent / source).resolve()
        elif volume.get("type") == "bind":
            found[volume["target"]] = (COMPOSE.parent / volume["source"]).resolve()
    return found


def test_every_bind_mount_is_a_file_of_the_repository(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for target, source in bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert source.is_relative_to(DEPLOY), f"{name}: {source} is outside deploy/"
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and volume.split(":")[0].startswith((".", "/")):
                assert volume.endswith(":ro"), f"{name}: {volume} is mounted read-write"


def test_ciwatch_is_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    build = compose["services"]["ciwatch"]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == ROOT, "the build context is the repository root, as docs/deployment.md says"
    assert (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


# --- ciwatch and its configuration --------------------------------------------------------------


def ciwatch_argv(compose: dict[str, Any]) -> list[str]:
    command = compose["services"]["ciwatch"]["command"]
    assert isinstance(command, list), "the exec form: no shell in between"
    return [str(arg) for arg in command]


def image_port() -> int:
    final = stages(dockerfile_instructions((DEPLOY / "Dockerfile").read_text()))[-1]
    (expose,) = [i for i in final if i.keyword == "EXPOSE"]
    return int(expose.args.split()[0].removesuffix("/tcp"))


def ciwatch_environment(compose: dict[str, Any]) -> dict[str, str]:
    environment = compose["services"]["ciwatch"]["environment"]
    assert isinstance(environment, dict)
    return {key: str(value) for key, value in environment.items()}


@pytest.fixture(scope="module")
def config_path(compose: dict[str, Any]) -> Path:
    """The host file mounted where ciwatch's --config points."""
    config = str(parse_cli(ciwatch_argv(compose)).params["config"])
    mounts = bind_mounts(compose["services"]["ciwatch"])
    assert config in mounts, f"--config {config} is not a bind mount"
    return mounts[config]


@pytest.fixture(scope="module")
def settings(compose: dict[str, Any], config_path: Path) -> Settings:
    return load_settings(config_path, env=ciwatch_environment(compose))


def test_ciwatch_runs_serve_with_the_mounted_configuration(compose: dict[str, Any]) -> None:
    invocation = parse_cli(ciwatch_argv(compose))
    assert invocation.path == ("serve",)
    host, port = split_listen(invocation.params["listen"])
    assert host == "0.0.0.0"  # noqa: S104 - published, and scraped by Prometheus
    assert port == image_port()


def test_the_environment_holds_every_variable_the_configuration_needs(
    compose: dict[str, Any], config_path: Path
) -> None:
    # Comments excepted: they show a source, with its ${GITHUB_TOKEN}, to add.
    text = "\n".join(
        line for line in config_path.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    required = {name for name, default in ENV_REFERENCE.findall(text) if not default}
    assert "CIWATCH_DATABASE_URL" in required
    environment = ciwatch_environment(compose)
    assert required <= set(environment), required - set(environment)
    # None of them is an option's variable, which would silently change the command.
    assert not {"CIWATCH_CONFIG", "CIWATCH_DATABASE"} & set(environment)


def test_config_check_accepts_the_configuration(
    compose: dict[str, Any], config_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in ciwatch_environment(compose).items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli_app, ["config", "check", "--config", str(config_path)])
    assert result.exit_code == 0, result.output


def test_config_check_names_a_missing_variable(config_path: Path) -> None:
    result = CliRunner().invoke(cli_app, ["config", "check", "--config", str(config_path)])
    assert result.exit_code == 2
    assert "CIWATCH_DATABASE_URL is not set" in result.output


def test_the_ports_agree(compose: dict[str, Any], settings: Settings) -> None:
    service = compose["services"]["ciwatch"]
    _, listen = split_listen(str(parse_cli(ciwatch_argv(compose)).params["listen"]))
    assert settings.server.port == listen == image_port()
    published = [str(p).rsplit(":", 1)[-1] for p in service["ports"]]
    assert published == [str(listen)]


def test_the_database_is_the_postgres_service(compose: dict[str, Any], settings: Settings) -> None:
    url = urlsplit(settings.database)
    assert url.scheme in ("postgresql", "postgres", "postgresql+asyncpg")
    postgres = compose["services"]["postgres"]
    env = postgres["environment"]
    assert url.hostname == "postgres"
    assert url.hostname in compose["services"]
    assert (url.port or POSTGRES_PORT) == POSTGRES_PORT
    assert url.username == env["POSTGRES_USER"]
    assert unquote(url.password or "") == env["POSTGRES_PASSWORD"] == SHELL_ENV["POSTGRES_PASSWORD"]
    assert url.path.removeprefix("/") == env["POSTGRES_DB"]
    assert compose["services"]["ciwatch"]["depends_on"]["postgres"]["condition"] == (
        "service_healthy"
    )
    assert "ports" not in postgres, "only ciwatch needs the database"


def test_postgres_has_a_healthcheck_for_the_same_database(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]
    test = postgres["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1] == "pg_isready"
    args = dict(zip(test[2::2], test[3::2], strict=True))
    assert args["--username"] == postgres["environment"]["POSTGRES_USER"]
    assert args["--dbname"] == postgres["environment"]["POSTGRES_DB"]
    # Over TCP: the image's first-start initialisation runs a server on the socket only, so the
    # check passes only once the real server listens.
    assert args["--host"] == "127.0.0.1"
    assert any(v.endswith("/var/lib/postgresql/data") for v in postgres["volumes"])


def healthcheck_code(compose: dict[str, Any]) -> str:
    test = compose["services"]["ciwatch"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"], "python:slim has no curl or wget"
    code: str = test[3]
    return code


def test_the_ciwatch_healthcheck_asks_a_probe_path(
    compose: dict[str, Any], settings: Settings
) -> None:
    (url,) = re.findall(r"http://[^'\"]+", healthcheck_code(compose))
    assert urlsplit(url).path in ("/healthz", "/readyz")
    assert urlsplit(url).hostname == "127.0.0.1"
    assert urlsplit(url).port == settings.server.port
    healthcheck = compose["services"]["ciwatch"]["healthcheck"]
    assert {"interval", "timeout", "start_period", "retries"} <= set(healthcheck)
    grace = compose["services"]["ciwatch"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) > Settings().collection.timeout.total_seconds()


async def test_the_ciwatch_healthcheck_passes_and_fails(
    compose: dict[str, Any], settings: Settings, tmp_path: Path
) -> None:
    """The healthcheck command against the real app under the compose configuration (on SQLite
    instead of the stack's PostgreSQL), then against a port where nothing listens."""
    url = f"sqlite:///{tmp_path / 'ciwatch.db'}"
    store = open_store(url)
    await store.upgrade()
    app = create_app(
        Runtime(
            settings.model_copy(update={"database": url}), store, SystemClock(), CollectionMetrics()
        )
    )
    code = healthcheck_code(compose)
    address = f"127.0.0.1:{settings.server.port}"
    assert address in code

    async def run(where: str) -> int:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code.replace(address, where), stderr=asyncio.subprocess.PIPE
        )
        await process.communicate()
        assert process.returncode is not None
        return process.returncode

    try:
        async with serve(app) as base_url:
            assert await run(urlsplit(base_url).netloc) == 0
        assert await run(f"127.0.0.1:{free_port()}") != 0
    finally:
        await app.state.metrics_cache.aclose()
        await store.close()


# --- Prometheus ---------------------------------------------------------------------------------


def prometheus_flags(compose: dict[str, Any]) -> dict[str, str]:
    flags = (str(arg).partition("=") for arg in compose["services"]["prometheus"]["command"])
    return {key: value for key, _, value in flags}


def test_prometheus_loads_the_shipped_configuration_and_rules(compose: dict[str, Any]) -> None:
    mounts = bind_mounts(compose["services"]["prometheus"])
    config = prometheus_flags(compose)["--config.file"]
    assert mounts[config] == DEPLOY / "prometheus" / "prometheus.yml"
    loaded = yaml.safe_load(mounts[config].read_text())
    # rule_files are relative to the configuration file: each must be mounted beside it.
    for rule_file in loaded["rule_files"]:
        target = str(PurePosixPath(config).parent / rule_file)
        assert mounts[target] == DEPLOY / "prometheus" / rule_file


def test_prometheus_scrapes_the_ciwatch_service(
    compose: dict[str, Any], settings: Settings
) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "ciwatch"]
    (static,) = job["static_configs"]
    (target,) = static["targets"]
    host, port = split_listen(target)
    assert host in compose["services"] and host == "ciwatch"
    assert port == settings.server.port
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # Prometheus scrapes without credentials.
    assert settings.server.protect_metrics is False
    assert compose["services"]["prometheus"]["ports"] == [
        f"127.0.0.1:{PROMETHEUS_PORT}:{PROMETHEUS_PORT}"
    ]


# --- Grafana ------------------------------------------------------------------------------------


def grafana_provisioning(compose: dict[str, Any]) -> Path:
    mounts = bind_mounts(compose["services"]["grafana"])
    return mounts["/etc/grafana/provisioning"]


def provisioning_files(compose: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    folder = grafana_provisioning(compose) / kind
    found = [yaml.safe_load(path.read_text()) for path in sorted(folder.glob("*.yaml"))]
    assert found, f"no {kind} provisioning file"
    return found


def test_grafana_provisions_the_prometheus_data_source(compose: dict[str, Any]) -> None:
    (datasources,) = provisioning_files(compose, "datasources")
    assert datasources["apiVersion"] == 1
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True
    url = urlsplit(source["url"])
    assert url.hostname in compose["services"] and url.hostname == "prometheus"
    assert url.port == PROMETHEUS_PORT
    # The dashboard's datasource variable lists data sources of that type.
    dashboard = json.loads((DEPLOY / "grafana" / "ciwatch.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == source["type"]


def test_grafana_provisions_the_shipped_dashboard(compose: dict[str, Any]) -> None:
    (dashboards,) = provisioning_files(compose, "dashboards")
    assert dashboards["apiVersion"] == 1
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file"
    folder = PurePosixPath(provider["options"]["path"])
    mounted = {
        target: source
        for target, source in bind_mounts(compose["services"]["grafana"]).items()
        if PurePosixPath(target).parent == folder
    }
    assert list(mounted.values()) == [DEPLOY / "grafana" / "ciwatch.json"]
    assert all(target.endswith(".json") for target in mounted)
    grafana = compose["services"]["grafana"]
    assert grafana["ports"] == [f"127.0.0.1:{GRAFANA_PORT}:{GRAFANA_PORT}"]
    assert (
        grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
        == (SHELL_ENV["GRAFANA_ADMIN_PASSWORD"])
    )


# --- the documentation --------------------------------------------------------------------------


def test_the_deployment_guide_starts_the_stack() -> None:
    text = DEPLOYMENT_MD.read_text()
    assert "docker compose -f deploy/compose.yaml up" in text
    assert "docker compose -f deploy/compose.yaml up" in COMPOSE.read_text()
    for name in SHELL_ENV:
        assert name in text, f"docs/deployment.md does not say to set {name}"

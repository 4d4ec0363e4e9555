"""Every module imports on its own, and the pure core stays pure when imported alone.

The boundary test (test_boundaries.py) reads each pure module's own import statements; these
tests import for real in fresh interpreters, so an eager package `__init__` or an import cycle
(`import ciwatch.store.alerting` used to fail unless `ciwatch.alerting` came first) shows up.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import ciwatch

PACKAGE = Path(ciwatch.__file__).parent
SRC = PACKAGE.parent

# The pure core, as modules: what each may not pull in when imported alone.
PURE = ["ciwatch.domain", "ciwatch.state", "ciwatch.timeutil", "ciwatch.serialize"]
PURE += ["ciwatch.alerting.rules", "ciwatch.alerting.kinds"]
# The provider extension interfaces: a provider module names them without loading a framework.
PURE += ["ciwatch.providers.spec", "ciwatch.providers.hooks"]
PURE += ["ciwatch.retries"]
IO_AND_FRAMEWORKS = [
    "aiohttp",
    "aiosmtplib",
    "aiosqlite",
    "apprise",
    "asyncpg",
    "fastapi",
    "jinja2",
    "msgspec",
    "psycopg",
    "pydantic",
    "sqlalchemy",
    "starlette",
    "typer",
    "yaml",
    # asyncio, not socket: importlib.metadata (for __version__) loads socket through email.
    "asyncio",
]

# Imported once in the parent before forking, so each child only pays for ciwatch's own
# modules; third-party packages take no part in ciwatch's import cycles.
_PRELOAD = ["aiohttp", "sqlalchemy", "pydantic", "fastapi", "jinja2", "yaml", "typer"]

_FORK_EACH = """
import importlib, json, os, sys, traceback
for name in {preload!r}:
    try:
        importlib.import_module(name)
    except ImportError:
        pass
failures = {{}}
for module in {modules!r}:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(module)
            message = b""
        except BaseException:
            message = traceback.format_exc().encode()
        os.write(write, message[-4000:])
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        error = pipe.read().decode()
    os.waitpid(pid, 0)
    if error:
        failures[module] = error
print(json.dumps(failures))
"""


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if "migrations" in parts or parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_every_module_imports_alone() -> None:
    modules = _modules()
    assert len(modules) > 100
    failures = json.loads(_run(_FORK_EACH.format(preload=_PRELOAD, modules=modules)))
    assert not failures, "\n".join(f"{m}:\n{e}" for m, e in failures.items())


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_alone_loads_no_io_or_framework(module: str) -> None:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = set(json.loads(_run(code)))
    assert module in loaded
    offending = sorted(name for name in IO_AND_FRAMEWORKS if name in loaded)
    assert not offending, f"importing {module} alone loads {offending}"


def test_the_fork_check_reports_a_broken_module() -> None:
    failures = json.loads(_run(_FORK_EACH.format(preload=[], modules=["json", "no_such_mod"])))
    assert list(failures) == ["no_such_mod"]
    assert "ModuleNotFoundError" in failures["no_such_mod"]


# What the cron path does not need: the web server and dashboard, the alert channels and their
# libraries, the simulator, and Alembic (unless the database is behind: store/migrate.py).
NOT_FOR_POLL = ["ciwatch.web", "ciwatch.channels", "ciwatch.simulator", "ciwatch.alerting.delivery"]
NOT_FOR_POLL += ["fastapi", "starlette", "uvicorn", "jinja2", "aiosmtplib", "apprise", "alembic"]

_COMMAND_LINE = """
import json, sys
sys.argv = ["ciwatch", *{argv!r}]
from ciwatch.cli import main
try:
    main()
except SystemExit:
    pass
print()
print(json.dumps(sorted(sys.modules)))
"""


def test_ciwatch_poll_loads_only_what_polling_needs() -> None:
    """`ciwatch poll` (cron's `poll --once`) imports its own command's module, not every
    subcommand's: start-up is paid on every run."""
    loaded = set(json.loads(_run(_COMMAND_LINE.format(argv=["poll", "--help"])).splitlines()[-1]))
    assert {"ciwatch.cli.poll", "ciwatch.runtime", "ciwatch.scheduler.loop"} <= loaded
    offending = sorted(
        name
        for name in loaded
        if any(name.split(".")[: len(n.split("."))] == n.split(".") for n in NOT_FOR_POLL)
    )
    assert not offending, f"`ciwatch poll` loads {offending}"
    assert not {"ciwatch.cli.alerts", "ciwatch.cli.serve", "ciwatch.cli.simulate"} & loaded


def test_the_whole_command_line_still_lists_every_command() -> None:
    out = _run(_COMMAND_LINE.format(argv=["--help"]))
    for name in ["serve", "demo", "poll", "status", "history", "report", "simulate"]:
        assert f" {name} " in out, name
    for name in ["alerts", "silence", "db", "config"]:
        assert f" {name} " in out, name
    # A group's own commands, `alerts test` registered beside the module's own.
    out = _run(_COMMAND_LINE.format(argv=["alerts", "--help"]))
    assert " test " in out and " list " in out

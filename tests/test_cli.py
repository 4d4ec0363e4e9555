"""The command line: exit codes, --help everywhere, config check, and the store commands."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from ciwatch import __version__
from ciwatch.cli import app
from ciwatch.cli.common import print_json
from ciwatch.cli.tables import FAST_ROWS
from ciwatch.domain import Run, Status
from ciwatch.store import open_store

runner = CliRunner()
NOW = datetime.now(UTC).replace(microsecond=0)

COMMANDS = [
    [],
    ["serve"],
    ["demo"],
    ["poll"],
    ["status"],
    ["history"],
    ["report"],
    ["simulate"],
    ["alerts"],
    ["alerts", "test"],
    ["alerts", "list"],
    ["silence"],
    ["silence", "add"],
    ["silence", "list"],
    ["silence", "expire"],
    ["db"],
    ["db", "upgrade"],
    ["db", "prune"],
    ["config"],
    ["config", "check"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "ciwatch")
def test_every_command_has_help(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"ciwatch {__version__}"


def test_console_script_runs_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("sources: [\n")
    proc = subprocess.run(
        [sys.executable, "-m", "ciwatch", "config", "check", "--config", str(bad)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{bad}:" in proc.stderr
    assert "not valid YAML" in proc.stderr


BROKEN = """\
database: sqlite:///x.db
server: {lstn: "127.0.0.1:8080"}
sources:
  - {name: gl, type: gitlub, url: "https://gitlab.example.com", projects: [a/b]}
  - name: gh
    type: github
    interval: 5 minutes
    repos: [o/r]
"""


def test_config_check_names_every_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "ciwatch.yaml"
    path.write_text(BROKEN)
    result = runner.invoke(app, ["config", "check", "--config", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"{path}:2 server.lstn: unknown key; did you mean 'listen'?",
        f"{path}:4 sources[0].type: 'gitlub' is not one of gitlab, github, jenkins, azure; "
        "did you mean 'gitlab'?",
        f"{path}:7 sources[1].interval: '5 minutes' is not a duration (use e.g. 30s, 5m, 4h, 1d)",
    ]
    assert result.stdout == ""


def test_config_check_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "check", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "file not found" in result.stderr


def test_config_check_prints_masked_normalised_config(tmp_path: Path) -> None:
    path = tmp_path / "ciwatch.yaml"
    path.write_text(
        "database: postgresql://bot:pg-s3cret@db.example.com/ci\n"
        "sources:\n"
        "  - {name: gl, type: gitlab, token: '${GL_TOKEN}', projects: [g/app]}\n"
    )
    result = runner.invoke(
        app, ["config", "check", "--config", str(path), "--json"], env={"GL_TOKEN": "glpat-XYZ"}
    )
    assert result.exit_code == 0, result.output
    dump = json.loads(result.stdout)
    assert "glpat-XYZ" not in result.stdout
    assert "pg-s3cret" not in result.stdout
    assert dump["sources"][0]["token"] == "***"
    assert dump["sources"][0]["interval"] == "1m"
    assert "OK (1 sources, 0 channels)" in result.stderr


def _run(number: int, status: Status, minutes_ago: int, **extra: object) -> Run:
    created = NOW - timedelta(minutes=minutes_ago)
    fields: dict[str, object] = {
        "number": number,
        "ref": "main",
        "created_at": created,
        "finished_at": created + timedelta(minutes=2) if status.terminal else None,
        "duration_seconds": 120.0 if status.terminal else None,
        "author": "alice",
    }
    fields.update(extra)
    return Run(
        source="gl",
        provider="gitlab",
        project=str(fields.pop("project", "group/app")),
        run_id=str(number),
        status=status,
        updated_at=created + timedelta(minutes=2),
        **fields,  # type: ignore[arg-type]
    )


@pytest.fixture
def database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runs = [
        _run(1, Status.SUCCESS, 60),
        _run(2, Status.FAILED, 50),
        _run(3, Status.FAILED, 40),
        _run(4, Status.SUCCESS, 30, project="group/lib"),
        _run(5, Status.RUNNING, 5, project="group/lib", ref="feature/[red]x[/red]"),
        _run(6, Status.SUCCESS, 200 * 24 * 60),  # old: pruned
    ]

    async def fill() -> None:
        store = open_store(url)
        try:
            await store.upgrade()
            for run in runs:
                await store.upsert_run(run)
        finally:
            await store.close()

    asyncio.run(fill())
    return url


def test_status_json_is_shaped_like_api_projects(database: str) -> None:
    result = runner.invoke(app, ["status", "--json", "--database", database])
    assert result.exit_code == 0, result.output
    states = json.loads(result.stdout)
    assert [(s["project"], s["ref"], s["status"]) for s in states] == [
        ("group/app", "main", "failed"),
        ("group/lib", "feature/[red]x[/red]", "running"),
        ("group/lib", "main", "success"),
    ]
    first = states[0]
    assert set(first) == {
        "source",
        "provider",
        "project",
        "ref",
        "status",
        "failing",
        "since",
        "last_run",
    }
    assert [s["failing"] for s in states] == [True, False, False]
    assert first["last_run"]["run_id"] == "3"
    assert first["since"].endswith("Z")


def test_status_table_failing_first_and_markup_escaped(database: str) -> None:
    result = runner.invoke(app, ["status", "--database", database], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.index("group/app") < out.index("group/lib")
    assert "✘ failed" in out
    assert "feature/[red]x[/red]" in out


def test_status_draws_many_refs_as_one_table_with_every_ref_once(tmp_path: Path) -> None:
    """Over FAST_ROWS refs the table is drawn in linear time (`plain_table`): the same columns,
    every ref on exactly one line, failing first, values printed literally (no markup)."""
    url = f"sqlite:///{tmp_path / 'many.db'}"
    count = FAST_ROWS + 50
    runs = [
        _run(n + 1, Status.FAILED if n % 10 == 0 else Status.SUCCESS, 60, ref=f"b[bold]{n:04d}")
        for n in range(count)
    ]

    async def fill() -> None:
        store = open_store(url)
        try:
            await store.upgrade()
            await store.upsert_runs(runs)
        finally:
            await store.close()

    asyncio.run(fill())
    result = runner.invoke(app, ["status", "--database", url], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "status" in line and "project" in line)
    for column in ("status", "source", "project", "ref", "since", "last run", "duration"):
        assert column in header
    rows = [line for line in lines if "b[bold]" in line]
    assert sorted(line.split("b[bold]")[1][:4] for line in rows) == [
        f"{n:04d}" for n in range(count)
    ]
    failing = [n for n, line in enumerate(rows) if "✘ failed" in line]
    assert failing == list(range(count // 10))
    assert len({len(line) for line in rows}) == 1  # aligned columns


def test_status_on_an_empty_store_says_what_to_do(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = runner.invoke(app, ["status", "--database", url])
    assert result.exit_code == 0, result.output
    assert "No runs yet" in result.stdout


def test_history_json_newest_first_with_filters(database: str) -> None:
    result = runner.invoke(app, ["history", "group/app", "--json", "--database", database])
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)
    assert [r["run_id"] for r in runs] == ["3", "2", "1", "6"]
    assert runs[0]["created_at"].endswith("Z")
    limited = runner.invoke(
        app, ["history", "group/app", "--json", "--limit", "1", "--database", database]
    )
    assert [r["run_id"] for r in json.loads(limited.stdout)] == ["3"]
    only_ok = runner.invoke(
        app, ["history", "group/app", "--json", "--status", "success", "--database", database]
    )
    assert [r["run_id"] for r in json.loads(only_ok.stdout)] == ["1", "6"]


def test_unknown_source_or_project_exits_2_with_a_hint(database: str) -> None:
    """A mistyped filter must not print an empty, successful answer (issue 12)."""
    status = runner.invoke(app, ["status", "--source", "gI", "--database", database])
    assert status.exit_code == 2
    assert "--source: no source named 'gI' (known: gl)" in status.stderr
    history = runner.invoke(app, ["history", "group/ap", "--database", database])
    assert history.exit_code == 2
    assert "project: no project named 'group/ap'; did you mean 'group/app'" in history.stderr
    other = runner.invoke(
        app, ["history", "group/app", "--source", "nosuch", "--database", database]
    )
    assert other.exit_code == 2 and "no source named 'nosuch'" in other.stderr
    known = runner.invoke(app, ["status", "--source", "gl", "--database", database])
    assert known.exit_code == 0, known.output


def test_history_rejects_unknown_status(database: str) -> None:
    result = runner.invoke(app, ["history", "group/app", "--status", "red", "--database", database])
    assert result.exit_code == 2
    assert "'red' is not one of" in result.stderr


def test_db_upgrade_and_prune(database: str) -> None:
    upgraded = runner.invoke(app, ["db", "upgrade", "--database", database])
    assert upgraded.exit_code == 0, upgraded.output
    assert "schema is up to date" in upgraded.stderr
    pruned = runner.invoke(app, ["db", "prune", "--older-than", "90d", "--database", database])
    assert pruned.exit_code == 0, pruned.output
    assert "pruned 1 runs" in pruned.stderr
    assert "pruned 0 delivered or failed notifications, 0 resolved alerts" in pruned.stderr
    result = runner.invoke(app, ["history", "group/app", "--json", "--database", database])
    assert [r["run_id"] for r in json.loads(result.stdout)] == ["3", "2", "1"]


def test_prune_rejects_a_bad_age(database: str) -> None:
    result = runner.invoke(app, ["db", "prune", "--older-than", "soon", "--database", database])
    assert result.exit_code == 2
    assert "--older-than" in result.stderr


def test_unreachable_database_exits_3_naming_host_and_masking_password() -> None:
    url = "postgresql://bot:hunter2@127.0.0.1:1/ci"
    result = runner.invoke(app, ["status", "--database", url])
    assert result.exit_code == 3
    assert "127.0.0.1:1" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.output


def test_help_shows_defaults_and_readable_types() -> None:
    """Issue 12: help lost its defaults to markup ("Configuration file ."), flags showed as
    `<bool>`, and `--once` was marked "(required)"."""
    for command in (["poll"], ["status"], ["serve"], ["alerts", "list"], ["config", "check"]):
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, result.output
        assert "Configuration file [default: ciwatch.yaml]" in result.stdout
        assert "<bool>" not in result.stdout
    poll = runner.invoke(app, ["poll", "--help"], env={"COLUMNS": "120"}).stdout
    assert "(required)" not in poll and "--fail-on STATUS" in poll
    assert "--listen HOST:PORT" in runner.invoke(app, ["serve", "--help"]).stdout


def test_a_busy_port_exits_2_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "ciwatch", "serve", "--listen", f"127.0.0.1:{port}",
             "--database", f"sqlite:///{tmp_path / 's.db'}"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"server.listen: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]


@given(
    st.lists(
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=4,
    )
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
)
def test_print_json_writes_what_one_dumps_would(data: object) -> None:
    """`print_json` writes a list item by item (the whole text at once cost `poll --once
    --json` a third of its memory at 10,000 refs); the bytes are those of one `json.dumps`."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        print_json(data)
    assert buffer.getvalue() == json.dumps(data, indent=2, ensure_ascii=False) + "\n"

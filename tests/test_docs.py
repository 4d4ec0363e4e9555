"""Every command of the CLI is documented in docs/cli.md (the other contracts — configuration
keys, HTTP paths, metrics, channel kinds — have their own documentation tests)."""

from __future__ import annotations

from pathlib import Path

import typer.main

from ciwatch.cli import app

DOCS = Path(__file__).parents[1] / "docs"


def _commands() -> list[str]:
    group = typer.main.get_command(app)
    names: list[str] = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if subcommands:
            names.extend(f"{name} {sub}" for sub in subcommands)
        else:
            names.append(name)
    return names


def test_every_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    commands = _commands()
    assert len(commands) >= 14
    missing = [
        c for c in commands if f"ciwatch {c}" not in text and f"ciwatch {c.split()[0]} " not in text
    ]
    assert not missing, f"docs/cli.md does not mention: {missing}"


def test_readme_has_the_two_commands() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    assert "pip install . && ciwatch demo" in readme
    assert "pip install -e '.[dev]' && pytest" in readme
    run = (DOCS.parent / ".ci" / "run").read_text()
    assert "pip install -e '.[dev]' && pytest" in run

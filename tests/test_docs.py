"""Every command of the CLI is documented in docs/cli.md (the other contracts — configuration
keys, HTTP paths, metrics, channel kinds — have their own documentation tests)."""

from __future__ import annotations

import re
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


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_links_into_the_architecture_resolve() -> None:
    """Code and docs point into docs/architecture.md by anchor (they once cited sections of a
    design sketch outside the repository); every anchor names one of its headings."""
    text = (DOCS / "architecture.md").read_text()
    anchors = {_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    root = DOCS.parent
    used: dict[str, set[str]] = {}
    for path in [*root.glob("src/**/*.py"), *root.glob("tests/**/*.py"), *DOCS.glob("*.md")]:
        for anchor in re.findall(r"architecture\.md#([a-z0-9-]+)", path.read_text()):
            used.setdefault(anchor, set()).add(str(path.relative_to(root)))
    assert len(used) >= 10
    missing = {anchor: sorted(paths) for anchor, paths in used.items() if anchor not in anchors}
    assert not missing, f"no such heading in docs/architecture.md: {missing}"
    stale = [
        str(path.relative_to(root))
        for path in [*root.glob("src/**/*.py"), *DOCS.glob("*.md")]
        if "DESIGN §" in path.read_text()
    ]
    assert not stale, f"references to the founding sketch's sections: {stale}"

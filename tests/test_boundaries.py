"""The pure core imports no I/O library (docs/architecture.md#principles: pure core, I/O at the
edges)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ciwatch

PACKAGE = Path(ciwatch.__file__).parent
PURE = ["domain.py", "state.py", "timeutil.py", "serialize.py"]
PURE += ["retries.py"]
# Standard-library modules with no I/O that the pure modules may use.
ALLOWED_STDLIB = {
    "__future__",
    "collections",
    "dataclasses",
    "datetime",
    "enum",
    "functools",
    "hashlib",
    "itertools",
    "math",
    "re",
    "typing",
}
ALLOWED_OWN = {f"ciwatch.{name.removesuffix('.py')}" for name in PURE}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_no_io(module: str) -> None:
    offending = {
        name
        for name in _imports(PACKAGE / module)
        if name.split(".")[0] not in ALLOWED_STDLIB and name not in ALLOWED_OWN
    }
    assert not offending, f"{module} imports {sorted(offending)}"


def test_the_checker_catches_io(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import socket\nfrom sqlalchemy import select\nfrom datetime import UTC\n")
    assert _imports(sample) == {"socket", "sqlalchemy", "datetime"}

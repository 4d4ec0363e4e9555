"""Jenkins's `tree=` query parameter: parse it and prune an object with it, as Stapler does.

Syntax: `a,b[c,d[e]],f{0,20}` — names separated by commas, nested names in brackets, and a range
after a list property: `{m,n}` (items m to n-1), `{,n}` (the first n), `{m,}` (from m on), `{n}`
(item n alone). `*` selects every property. An object keeps its `_class`; a property named
without brackets keeps its value, but objects inside it keep only their `_class`.

Values may be `Lazy` (computed only when selected) or `LazyList` (items built only for the range
asked for), which keeps a request O(what it asks for).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(r"[,\[\]{}]|[^,\[\]{}]+")
_ALL = (0, None)


class Lazy:
    """A property value computed on first use."""

    def __init__(self, compute: Callable[[], Any]) -> None:
        self.compute = compute


class LazyList:
    """A list property whose items are built on demand: `fetch(start, stop)` builds that
    slice (`stop` None: to the end)."""

    def __init__(self, fetch: Callable[[int, int | None], list[Any]]) -> None:
        self.fetch = fetch


@dataclass
class Tree:
    """Selected properties; `everything` selects all of them, at every depth."""

    children: dict[str, Tree] = field(default_factory=dict)
    range: tuple[int, int | None] = _ALL
    everything: bool = False


FULL = Tree(everything=True)


def default_tree(**summaries: str) -> Tree:
    """Every property, except those named, which keep only the listed sub-properties (what
    Jenkins shows of nested objects when no `tree` is given)."""
    children = {name: parse_tree(spec) for name, spec in summaries.items()}
    return Tree({"*": FULL, **children})


def parse_tree(spec: str) -> Tree:
    """Parse a `tree=` value; ValueError (with the position) when it is malformed."""
    tokens = _TOKEN.findall(spec)
    if "".join(tokens) != spec:
        raise ValueError(f"bad tree {spec!r}")
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal pos
        token = peek()
        if token is None or (expected is not None and token != expected):
            raise ValueError(f"tree: expected {expected or 'a name'} at token {pos} of {spec!r}")
        pos += 1
        return token

    def number() -> int:
        token = take()
        if not token.strip().isdigit():
            raise ValueError(f"tree: expected a number at token {pos - 1} of {spec!r}")
        return int(token)

    def parse_list(tree: Tree) -> None:
        while True:
            name = take().strip()
            if name in ",[]{}" or not name:
                raise ValueError(f"tree: expected a name at token {pos - 1} of {spec!r}")
            child = tree.children.setdefault(name, Tree())
            if peek() == "[":
                take("[")
                parse_list(child)
                take("]")
            if peek() == "{":
                take("{")
                child.range = parse_range()
                take("}")
            if peek() != ",":
                return
            take(",")

    def parse_range() -> tuple[int, int | None]:
        if peek() == ",":
            take(",")
            return (0, number())
        low = number()
        if peek() == "}":
            return (low, low + 1)
        take(",")
        if peek() == "}":
            return (low, None)
        return (low, number())

    root = Tree()
    parse_list(root)
    if pos != len(tokens):
        raise ValueError(f"tree: unexpected {tokens[pos]!r} at token {pos} of {spec!r}")
    return root


def prune(value: Any, tree: Tree) -> Any:
    """`value` filtered by `tree`, lazy values resolved."""
    if isinstance(value, Lazy):
        value = value.compute()
    start, stop = tree.range
    if isinstance(value, LazyList):
        value = value.fetch(start, stop)
    elif isinstance(value, list) and tree.range != _ALL:
        value = value[start:stop]
    if isinstance(value, list):
        return [prune(item, tree) for item in value]
    if isinstance(value, dict):
        if tree.everything:
            return {key: prune(item, tree) for key, item in value.items()}
        kept: dict[str, Any] = {}
        for key, item in value.items():
            child = tree.children.get(key) or tree.children.get("*")
            if key == "_class":
                kept[key] = item
            elif child is not None:
                kept[key] = prune(item, child)
        return kept
    return value

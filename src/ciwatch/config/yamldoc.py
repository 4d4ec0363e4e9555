"""YAML text to plain data, remembering the line of every key and value, with `${VAR}` expanded.

PyYAML's `compose` gives nodes with marks; building the data from the nodes ourselves lets every
later error name its line, catches duplicate keys (which PyYAML silently overwrites), and expands
environment references where the value is, so an unset variable is reported at its own line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

Loc = tuple[str | int, ...]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAX_DEPTH = 64
# `$${` is a literal `${`; `${NAME}` and `${NAME:-default}` are references; any other `${` is
# malformed (the optional group then matches nothing and `name` is None).
_REFERENCE = re.compile(
    r"\$\$\{|\$\{(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\})?"
)


_MALFORMED = "malformed ${...}: write ${NAME} or ${NAME:-default} (and $${ for a literal ${)"


class YamlSyntaxError(Exception):
    """The text is not YAML; `line` (1-based) where the parser stopped, when known."""

    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(message)


@dataclass
class Document:
    """The plain data of a YAML document and where each part of it was written."""

    data: Any = None
    root_line: int = 1
    key_lines: dict[Loc, int] = field(default_factory=dict)
    value_lines: dict[Loc, int] = field(default_factory=dict)
    # (line or None for "the line of loc", loc, message)
    problems: list[tuple[int | None, Loc, str]] = field(default_factory=list)
    # Values that could not be built or expanded: their errors are already in `problems`.
    unresolved: set[Loc] = field(default_factory=set)

    def line(self, loc: Loc) -> int:
        """The line of `loc`'s key (or value, for list items); else of its nearest parent."""
        for end in range(len(loc), 0, -1):
            prefix = loc[:end]
            found = self.key_lines.get(prefix) or self.value_lines.get(prefix)
            if found:
                return found
        return self.root_line


def compose(text: str) -> Node | None:
    """The root node of the single YAML document in `text` (None when it holds nothing)."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        raise YamlSyntaxError(
            mark.line + 1 if mark else None, f"not valid YAML: {problem}"
        ) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(None, f"not valid YAML: {exc}") from None
    except RecursionError:
        raise YamlSyntaxError(None, "not valid YAML: nested too deeply") from None


def build(root: Node, env: Mapping[str, str]) -> Document:
    """Plain data (dict, list, scalars) of `root`, `${VAR}` expanded from `env` in strings."""
    builder = _Builder(env)
    builder.doc.root_line = _line(root)
    builder.doc.data = builder.node(root, ())
    return builder.doc


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


class _Builder:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.doc = Document()
        self.constructor = yaml.SafeLoader("")
        self.active: set[int] = set()

    def problem(self, loc: Loc, message: str, line: int | None = None) -> None:
        self.doc.problems.append((line, loc, message))
        self.doc.unresolved.add(loc)

    def node(self, node: Node, loc: Loc) -> Any:
        self.doc.value_lines[loc] = _line(node)
        if id(node) in self.active:
            self.problem(loc, "an alias refers to itself", _line(node))
            return None
        if len(loc) > _MAX_DEPTH:
            self.problem(loc, "nested too deeply", _line(node))
            return None
        self.active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self.mapping(node, loc)
            if isinstance(node, SequenceNode):
                return [self.node(item, (*loc, index)) for index, item in enumerate(node.value)]
            return self.scalar(node, loc)
        finally:
            self.active.discard(id(node))

    def scalar(self, node: Node, loc: Loc) -> Any:
        try:
            value = self.constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self.problem(loc, f"not valid YAML: {problem}", _line(node))
            return None
        except (ValueError, TypeError, OverflowError):  # e.g. `!!int abc`, `!!timestamp x`
            tag = str(node.tag).rsplit(":", 1)[-1]
            self.problem(loc, f"not valid YAML: the value is not a valid !!{tag}", _line(node))
            return None
        if isinstance(value, str) and "$" in value:
            return self.expand(value, loc)
        return value

    def mapping(self, node: MappingNode, loc: Loc) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                self.merge(value_node, loc, result)
        self.doc.value_lines[loc] = _line(node)
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key_line = _line(key_node)
            if not isinstance(key_node, ScalarNode):
                self.problem(loc, "a key must be plain text, not a list or mapping", key_line)
                continue
            key = str(key_node.value)
            key_loc = (*loc, key)
            if key in first:
                self.problem(key_loc, f"duplicate key (first at line {first[key]})", key_line)
                continue
            first[key] = key_line
            self.doc.key_lines[key_loc] = key_line
            value = self.node(value_node, key_loc)
            if value is None:
                # `key:` with nothing after it means "the default", like leaving the key out.
                result.pop(key, None)
            else:
                result[key] = value
        return result

    def merge(self, value_node: Node, loc: Loc, into: dict[str, Any]) -> None:
        """YAML merge keys (`<<: *defaults`): explicit keys win, then earlier merged maps."""
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        for source in sources:
            if not isinstance(source, MappingNode):
                self.problem(loc, "`<<` must merge a mapping (or a list of them)", _line(source))
                continue
            merged = self.node(source, loc)
            if isinstance(merged, dict):
                for key, value in merged.items():
                    into.setdefault(key, value)

    def expand(self, text: str, loc: Loc) -> str:
        failed = False

        def replace(match: re.Match[str]) -> str:
            nonlocal failed
            if match.group(0) == "$${":
                return "${"
            name, default = match.group("name"), match.group("default")
            if name is None:
                failed = True
                self.problem(loc, _MALFORMED)
                return ""
            value = self.env.get(name)
            if default is not None and not value:
                return default
            if value is None:
                failed = True
                self.problem(loc, f"environment variable {name} is not set")
                return ""
            return value

        expanded = _REFERENCE.sub(replace, text)
        return "" if failed else expanded

"""A recursive "shape" comparison between a vendor fixture and what the simulator serves.

Two JSON values have the same shape when objects have the same keys (recursively), values the
same JSON types and strings the same time format. `null` in the fixture says nothing about the
type, so anything matches it. In lists, each served item is compared with the fixture item it
resembles most (lists such as Jenkins `actions` mix kinds of objects); a served kind with no
resemblance, and a fixture kind never served, are reported once each.

Differences are strings with a path (`$.jobs[].status`) so a test can list the deliberate ones.
"""

from __future__ import annotations

import re
from typing import Any

TIME_FORMATS = (
    ("iso-ms-Z", re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")),
    ("iso-Z", re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")),
    ("iso-ms-offset", re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")),
)
EPOCH_MS = range(10**12, 10**14)  # 2001..5138 in milliseconds


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "epoch-ms" if value in EPOCH_MS else "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return next((name for name, rx in TIME_FORMATS if rx.fullmatch(value)), "string")
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    raise TypeError(f"not JSON: {value!r}")


def kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("_class") or sorted(value))
    return json_type(value)


def shape_diff(fixture: Any, served: Any, path: str = "$") -> set[str]:
    if fixture is None:
        return set()
    expected, actual = json_type(fixture), json_type(served)
    if expected != actual:
        return {f"{path}: {actual}, fixture has {expected}"}
    if isinstance(fixture, dict):
        diffs: set[str] = set()
        for key, value in fixture.items():
            if key not in served:
                diffs.add(f"{path}.{key}: missing")
            else:
                diffs |= shape_diff(value, served[key], f"{path}.{key}")
        diffs |= {f"{path}.{key}: extra" for key in served if key not in fixture}
        return diffs
    if isinstance(fixture, list) and fixture and served:
        return _list_diff(fixture, served, f"{path}[]")
    return set()


def _list_diff(fixture: list[Any], served: list[Any], path: str) -> set[str]:
    diffs: set[str] = set()
    matched: set[int] = set()
    for item in served:
        ranked = [
            (-_overlap(f, item), len(shape_diff(f, item, path)), i) for i, f in enumerate(fixture)
        ]
        overlap, _, best = min(ranked)
        if isinstance(item, dict) and isinstance(fixture[best], dict) and not overlap:
            diffs.add(f"{path}: served {kind(item)} is not in the fixture")
            continue
        matched.add(best)
        diffs |= shape_diff(fixture[best], item, path)
    for i, item in enumerate(fixture):
        if i not in matched and not any(_same_kind(item, s) for s in served):
            diffs.add(f"{path}: fixture {kind(item)} is not served")
    return diffs


def _overlap(fixture: Any, served: Any) -> int:
    """Keys two objects share (`_class` aside): how much they are the same kind of thing."""
    if isinstance(fixture, dict) and isinstance(served, dict):
        return len((set(fixture) & set(served)) - {"_class"})
    return 0


def _same_kind(fixture: Any, served: Any) -> bool:
    if isinstance(fixture, dict) and isinstance(served, dict):
        return _overlap(fixture, served) > 0
    return json_type(fixture) == json_type(served)

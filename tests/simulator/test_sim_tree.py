"""Jenkins `tree=` parsing and pruning, as Stapler does it."""

from __future__ import annotations

from typing import Any

import pytest

from ciwatch.simulator.tree import FULL, Lazy, LazyList, default_tree, parse_tree, prune

JOB: dict[str, Any] = {
    "_class": "Job",
    "name": "app",
    "color": "blue",
    "lastBuild": {"_class": "Run", "number": 3, "url": "u3"},
    "builds": [
        {"_class": "Run", "number": n, "url": f"u{n}", "result": "SUCCESS"} for n in (3, 2, 1)
    ],
    "labels": ["a", "b"],
}


def test_names_and_nested_brackets() -> None:
    tree = parse_tree("name,builds[number,url],lastBuild[number]")
    assert prune(JOB, tree) == {
        "_class": "Job",
        "name": "app",
        "lastBuild": {"_class": "Run", "number": 3},
        "builds": [{"_class": "Run", "number": n, "url": f"u{n}"} for n in (3, 2, 1)],
    }


@pytest.mark.parametrize(
    ("spec", "numbers"),
    [("{0,2}", [3, 2]), ("{1,2}", [2]), ("{,2}", [3, 2]), ("{1}", [2]), ("{1,}", [2, 1]),
     ("{5,9}", []), ("", [3, 2, 1])],
)  # fmt: skip
def test_ranges(spec: str, numbers: list[int]) -> None:
    pruned = prune(JOB, parse_tree(f"builds[number]{spec}"))
    assert [b["number"] for b in pruned["builds"]] == numbers


def test_a_leaf_object_keeps_only_its_class_and_a_leaf_list_its_values() -> None:
    assert prune(JOB, parse_tree("lastBuild,labels")) == {
        "_class": "Job",
        "lastBuild": {"_class": "Run"},
        "labels": ["a", "b"],
    }


def test_wildcard_selects_every_property() -> None:
    pruned = prune(JOB, parse_tree("*"))
    assert set(pruned) == set(JOB)
    assert pruned["builds"][0] == {"_class": "Run"}
    assert prune(JOB, parse_tree("builds[*]{0,1}"))["builds"] == [JOB["builds"][0]]


def test_unknown_names_are_ignored() -> None:
    assert prune(JOB, parse_tree("nothing,name")) == {"_class": "Job", "name": "app"}


def test_lazy_values_are_computed_only_when_selected() -> None:
    asked: list[tuple[int, int | None]] = []

    def fetch(start: int, stop: int | None) -> list[Any]:
        asked.append((start, stop))
        return [{"number": n} for n in range(start, stop or 100)]

    def explode() -> Any:
        raise AssertionError("computed although not selected")

    data = {"builds": LazyList(fetch), "costly": Lazy(explode), "name": "x"}
    assert prune(data, parse_tree("builds[number]{2,4}")) == {
        "builds": [{"number": 2}, {"number": 3}]
    }
    assert asked == [(2, 4)]
    assert prune(data, parse_tree("name")) == {"name": "x"}


def test_default_tree_summarises_named_properties() -> None:
    tree = default_tree(builds="number")
    pruned = prune(JOB, tree)
    assert pruned["lastBuild"] == JOB["lastBuild"]
    assert pruned["builds"][0] == {"_class": "Run", "number": 3}
    assert prune(JOB, FULL) == JOB


@pytest.mark.parametrize(
    "spec", ["", "a[", "a]", "a,,b", "a{1", "a{x}", "a[b]]", "{1}", "a{1,2,3}"]
)
def test_malformed_specs_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError, match="tree"):
        parse_tree(spec)

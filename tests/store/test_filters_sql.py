"""Glob filters in SQL (`ciwatch.filters.clause`) select exactly what fnmatchcase does, on
SQLite (GLOB) and PostgreSQL (`~`), for patterns full of bracket-syntax corner cases."""

from __future__ import annotations

import random
from fnmatch import fnmatchcase

import pytest
from sqlalchemy import String, Subquery, literal, select, union_all

from ciwatch.filters import Match, clause, parse_filter, split_patterns, tokens
from ciwatch.store import SqlStore
from ciwatch.validation import Invalid

ALPHABET = "ab]-^![*?,\\/.$é\n(|Z"
SAMPLES = [
    "platform/*",
    "release/*",
    "[!a]*",
    "[]a]",
    "[!]a]",
    "[a-]",
    "[-a]",
    "[z-a]",
    "[!z-a]",
    "[^a]",
    "[!^]",
    "[*?[]",
    "[a-c-e]",
    "[\\]",
    "a[",
    "[",
    "*.$",
    "(a|b)",
    "[]-a]",
    "[!-]",
    "[]^-]",
    "[!]^-]",
    "[^-]",
    "é?",
]


def _table(strings: list[str]) -> Subquery:
    rows = [select(literal(s, String()).label("v")) for s in strings]
    return union_all(*rows).subquery("t")


def _strings(rng: random.Random) -> list[str]:
    found = {"", "a", "b", "]", "^", "-", "!", "[", "*", "?", "\\", "ab", "a\nb", "é", "Z", "aZ"}
    while len(found) < 200:
        found.add("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 5))))
    return sorted(found)


def _patterns(rng: random.Random) -> list[str]:
    found = list(SAMPLES)
    while len(found) < 250:
        found.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 7))))
    return found


async def test_globs_select_what_fnmatchcase_matches(store: SqlStore) -> None:
    rng = random.Random(12)
    strings = _strings(rng)
    table = _table(strings)
    wrong = []
    for pattern in _patterns(rng):
        match = Match(globs=(pattern,))
        query = select(table.c.v).where(clause(table.c.v, match))

        async def run(conn, query=query):  # type: ignore[no-untyped-def]
            return set((await conn.execute(query)).scalars())

        got = await store.read("glob", run)
        expected = {s for s in strings if fnmatchcase(s, pattern)}
        assert {s for s in strings if match.matches(s)} == expected
        if got != expected:
            wrong.append((pattern, sorted(got ^ expected)))
    assert wrong == []


async def test_exact_values_and_globs_together(store: SqlStore) -> None:
    table = _table(["a/x", "b/y", "c", "a*"])
    match = parse_filter("project", ["a/*,c", "a*"])
    assert match == Match(values=("c",), globs=("a/*", "a*"))
    query = select(table.c.v).where(clause(table.c.v, match)).order_by(table.c.v)

    async def run(conn):  # type: ignore[no-untyped-def]
        return list((await conn.execute(query)).scalars())

    assert await store.read("glob", run) == ["a*", "a/x", "c"]


def test_commas_split_outside_brackets_only() -> None:
    assert split_patterns("a/*,b/*") == ["a/*", "b/*"]
    assert split_patterns("x[,]y,z") == ["x[,]y", "z"]
    assert split_patterns("a[,b") == ["a[", "b"]
    assert split_patterns("") == [""]


def test_parse_filter_limits() -> None:
    assert parse_filter("ref", []) is None
    assert parse_filter("ref", [" ", ","]) is None
    assert parse_filter("ref", [""], keep_empty=True) == Match.exact("")
    assert parse_filter("ref", ["main"]) == Match.exact("main")
    with pytest.raises(Invalid, match="control character"):
        parse_filter("ref", ["ma\nin"])
    with pytest.raises(Invalid, match="at most 20 patterns"):
        parse_filter("ref", [",".join(f"r{n}" for n in range(21))])
    with pytest.raises(Invalid, match="longer than 1000"):
        parse_filter("ref", ["x" * 1001])


def test_literal_brackets_are_exact_values() -> None:
    # An unclosed bracket is a literal: no wildcard, so an equality in SQL.
    assert Match.of(["a["]) == Match(values=("a[",))
    # Written back as one parameter value, it parses to the same filter.
    for patterns in (["a[", "x]"], ["a/*", "b", "c[,]d"], ["[!a]*", "z["]):
        match = Match.of(patterns)
        assert parse_filter("ref", [match.text]) == match
    assert len(tokens("a**b")) == 3

"""Glob filters on source, project and ref: one place for the rule every page, API route and
feed applies (docs/http.md, "Filters").

A filter is one or more patterns matched by `fnmatch.fnmatchcase` (`*`, `?`, `[...]`, `[!...]`;
case-sensitive, the same rule as alert routes and silences). Several values are given by
repeating the query parameter (`project=a/*&project=b/*`) and/or separating them by commas
(`project=a/*,b/*`); a comma inside `[...]` belongs to the pattern, so `[,]` matches a literal
comma. A value matches when any pattern does. At most `MAX_PATTERNS` patterns per parameter,
each at most `MAX_PATTERN_LENGTH` characters, none holding a control character.

In SQL a pattern without wildcards is an equality (an `IN` list), so the indexes leading with
source and project serve it as before; a glob becomes `GLOB` on SQLite (case-sensitive, like
fnmatchcase) and an anchored regular expression (`~`) on PostgreSQL, translated here from the
same tokens as the Python rule so that both engines and `Match.matches` agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from sqlalchemy import ColumnElement, false, literal, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.types import Boolean

from ciwatch.domain import RefState, Status
from ciwatch.validation import CONTROL, UNSTORABLE, Invalid, Problem

MAX_PATTERNS = 20
MAX_PATTERN_LENGTH = 1000
FILTER_FIELDS = ("source", "project", "ref")


# -- tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Star:
    pass


@dataclass(frozen=True)
class _Any:
    pass


@dataclass(frozen=True)
class _Char:
    char: str


@dataclass(frozen=True)
class _Class:
    """One character in (or, negated, not in) the inclusive code point ranges."""

    ranges: tuple[tuple[str, str], ...]
    negate: bool


_Token = _Star | _Any | _Char | _Class
_NEVER = _Class((), negate=False)


def _class_end(pattern: str, start: int) -> int:
    """The index of the `]` closing the bracket expression opened just before `start`, or -1
    when there is none (the `[` is then a literal), as fnmatch scans it."""
    j = start
    if j < len(pattern) and pattern[j] == "!":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    return pattern.find("]", j)


def _parse_class(body: str) -> _Class:
    """A bracket expression's body (between `[` and `]`) as fnmatch reads it: a leading `!`
    negates; `-` between two characters is a range (empty ranges drop out, a `-` first or last
    is literal)."""
    negate = body.startswith("!")
    items = body[1:] if negate else body
    if "-" not in items:
        return _Class(tuple((c, c) for c in items), negate)
    # fnmatch.translate's chunking: a range's `-` is searched from the 2nd character on, and
    # the next one at least two characters after it.
    chunks: list[str] = []
    i, k = 0, 1
    while True:
        k = items.find("-", k)
        if k < 0:
            break
        chunks.append(items[i:k])
        i = k + 1
        k += 3
    rest = items[i:]
    if rest:
        chunks.append(rest)
    else:
        chunks[-1] += "-"
    for k in range(len(chunks) - 1, 0, -1):
        if chunks[k - 1][-1] > chunks[k][0]:
            chunks[k - 1] = chunks[k - 1][:-1] + chunks[k][1:]
            del chunks[k]
    ranges: list[tuple[str, str]] = []
    for index, chunk in enumerate(chunks):
        inner = chunk
        if index > 0:
            ranges.append((chunks[index - 1][-1], chunk[0]))
            inner = inner[1:]
        if index < len(chunks) - 1:
            inner = inner[:-1]
        ranges.extend((c, c) for c in inner)
    return _Class(tuple(ranges), negate)


def tokens(pattern: str) -> list[_Token]:
    """The pattern as fnmatch reads it (consecutive `*` folded into one)."""
    found: list[_Token] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        i += 1
        if c == "*":
            if not found or not isinstance(found[-1], _Star):
                found.append(_Star())
        elif c == "?":
            found.append(_Any())
        elif c == "[" and (end := _class_end(pattern, i)) >= 0:
            parsed = _parse_class(pattern[i:end])
            i = end + 1
            found.append(_Any() if parsed.negate and not parsed.ranges else parsed)
        else:
            found.append(_Char(c))
    return found


def split_patterns(value: str) -> list[str]:
    """`value` cut at each comma outside a bracket expression."""
    parts: list[str] = []
    start = i = 0
    while i < len(value):
        c = value[i]
        i += 1
        if c == "[" and (end := _class_end(value, i)) >= 0:
            i = end + 1
        elif c == ",":
            parts.append(value[start : i - 1])
            start = i
    parts.append(value[start:])
    return parts


# -- matching ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    """What one field may be: any of `values` exactly, or any of the fnmatchcase `globs`."""

    values: tuple[str, ...] = ()
    globs: tuple[str, ...] = ()

    @classmethod
    def exact(cls, value: str) -> Match:
        return cls(values=(value,))

    @classmethod
    def of(cls, patterns: Iterable[str]) -> Match:
        """The patterns sorted into exact values (no wildcard; `[*]` is a literal `*`) and
        globs."""
        values: list[str] = []
        globs: list[str] = []
        for pattern in dict.fromkeys(patterns):
            chars = [_literal(token) for token in tokens(pattern)]
            if all(char is not None for char in chars):
                values.append("".join(char for char in chars if char is not None))
            else:
                globs.append(pattern)
        return cls(tuple(dict.fromkeys(values)), tuple(globs))

    @property
    def is_exact(self) -> bool:
        """Exact values only (what an index leading with the column serves)."""
        return not self.globs

    @property
    def single(self) -> str | None:
        """The one exact value, when that is all this matches."""
        return self.values[0] if len(self.values) == 1 and not self.globs else None

    def matches(self, value: str) -> bool:
        return value in self.values or any(fnmatchcase(value, glob) for glob in self.globs)

    def __str__(self) -> str:
        return ", ".join((*self.values, *self.globs))

    @property
    def text(self) -> str:
        """The filter as one query parameter value that parses back to it: the patterns
        joined by commas, a value's `[`, `*`, `?` and `,` written as one-character sets."""
        written = ("".join(f"[{c}]" if c in "[*?," else c for c in v) for v in self.values)
        return ",".join((*written, *self.globs))


def _literal(token: _Token) -> str | None:
    """The one character a token matches, None when it matches more (or nothing)."""
    if isinstance(token, _Char):
        return token.char
    if isinstance(token, _Class) and not token.negate and len(set(token.ranges)) == 1:
        low, high = token.ranges[0]
        return low if low == high else None
    return None


def as_match(value: str | Match) -> Match:
    """A `Match` for a filter argument: a plain string is one exact value (internal callers
    name a project or ref, whatever characters it holds)."""
    return value if isinstance(value, Match) else Match.exact(value)


def matches(value: str, wanted: str | Match | None) -> bool:
    """Whether `value` passes the filter `wanted` (None: any value)."""
    return wanted is None or as_match(wanted).matches(value)


# -- parsing request parameters ---------------------------------------------------------------


def parse_filter(name: str, raw: Sequence[str], *, keep_empty: bool = False) -> Match | None:
    """The filter of query parameter `name` from its values (each possibly comma-separated);
    None when none is given. Blank patterns are dropped (a form's empty field) unless
    `keep_empty` (the API's `ref=` selects runs without a ref). Raises `Invalid` for too many
    values or patterns, a value too long, or a control character."""
    problem = _problem(raw)
    if problem is None:
        patterns = [part for value in raw for part in split_patterns(value)]
        if not keep_empty:
            patterns = [part.strip() for part in patterns if part.strip()]
        if len(patterns) > MAX_PATTERNS:
            problem = f"at most {MAX_PATTERNS} patterns, got {len(patterns)}"
    if problem is not None:
        raise Invalid([Problem(name, problem)])
    return Match.of(patterns) if patterns else None


def _problem(raw: Sequence[str]) -> str | None:
    if len(raw) > MAX_PATTERNS:
        return f"at most {MAX_PATTERNS} values, got {len(raw)}"
    for value in raw:
        if len(value) > MAX_PATTERN_LENGTH:
            return f"a value is longer than {MAX_PATTERN_LENGTH} characters ({len(value)})"
        if CONTROL.search(value) or UNSTORABLE.search(value):
            return "holds a control character (CR, LF, tab, ...)"
    return None


@dataclass(frozen=True)
class QueryFilters:
    """The `source`, `project`, `ref` and `status` filters of one request (None: any), and
    the status words that name no status."""

    source: Match | None = None
    project: Match | None = None
    ref: Match | None = None
    status: tuple[Status, ...] | None = None
    unknown_status: tuple[str, ...] = ()

    def text(self, name: str) -> str | None:
        """The filter as one parameter value (patterns joined by commas), for links and forms."""
        if name == "status":
            return None if self.status is None else ",".join(s.value for s in self.status)
        match: Match | None = getattr(self, name)
        return None if match is None else match.text

    def keep(self, state: RefState) -> bool:
        """Whether a ref state passes every filter (`status`: the ref's colour)."""
        return (
            matches(state.source, self.source)
            and matches(state.project, self.project)
            and matches(state.ref, self.ref)
            and (self.status is None or state.status in self.status)
        )


def query_filters(
    values: Callable[[str], Sequence[str]], *, keep_empty_ref: bool = False
) -> QueryFilters:
    """The filters of a request whose query parameter `name` has the values `values(name)`
    (Starlette's `request.query_params.getlist`); `Invalid` names the bad parameter. A status
    is one of `Status` by name, case-insensitive; unknown words are returned, not raised."""
    found = {
        name: parse_filter(name, values(name), keep_empty=keep_empty_ref and name == "ref")
        for name in FILTER_FIELDS
    }
    words = parse_filter("status", values("status"))
    statuses: list[Status] = []
    unknown: list[str] = []
    for word in () if words is None else (*words.values, *words.globs):
        try:
            statuses.append(Status(word.lower()))
        except ValueError:
            unknown.append(word)
    return QueryFilters(
        source=found["source"],
        project=found["project"],
        ref=found["ref"],
        status=tuple(dict.fromkeys(statuses)) or None,
        unknown_status=tuple(unknown),
    )


# -- SQL --------------------------------------------------------------------------------------


def clause(column: Any, wanted: str | Match) -> ColumnElement[bool]:
    """`column` passes the filter: equality (IN) for exact values, GLOB/`~` for globs."""
    match = as_match(wanted)
    parts: list[ColumnElement[bool]] = []
    if len(match.values) == 1:
        parts.append(column == match.values[0])
    elif match.values:
        parts.append(column.in_(match.values))
    for glob in match.globs:
        found = tokens(glob)
        if _NEVER not in found:
            parts.append(GlobMatch(column, found))
    if not parts:
        return false()
    return parts[0] if len(parts) == 1 else or_(*parts)


class GlobMatch(ColumnElement[bool]):
    """`column` matches a tokenised glob, rendered per dialect."""

    type = Boolean()
    # The rendered pattern depends on the dialect: no statement cache across them.
    inherit_cache = False

    def __init__(self, column: Any, found: list[_Token]) -> None:
        self.column = column
        self.found = found


@compiles(GlobMatch, "sqlite")
def _glob_sqlite(element: GlobMatch, compiler: Any, **kw: Any) -> str:
    pattern = literal(sqlite_glob(element.found))
    return f"({compiler.process(element.column, **kw)} GLOB {compiler.process(pattern, **kw)})"


@compiles(GlobMatch, "postgresql")
def _glob_postgresql(element: GlobMatch, compiler: Any, **kw: Any) -> str:
    pattern = literal(postgres_regex(element.found))
    column = compiler.process(element.column, **kw)
    return f"({column} ~ {compiler.process(pattern, **kw)})"


@compiles(GlobMatch)
def _glob_other(element: GlobMatch, compiler: Any, **kw: Any) -> str:
    raise NotImplementedError(f"glob filters on {compiler.dialect.name}")


_SPECIAL = {"]", "^", "-"}


def _split_specials(ranges: Iterable[tuple[str, str]]) -> tuple[list[tuple[str, str]], set[str]]:
    """The ranges without `]`, `^` and `-` (which bracket syntax places specially), and which
    of those three they held."""
    plain: list[tuple[str, str]] = []
    held: set[str] = set()
    for low, high in ranges:
        start = ord(low)
        for special in sorted(_SPECIAL, key=ord):
            code = ord(special)
            if start <= code <= ord(high):
                held.add(special)
                if start < code:
                    plain.append((chr(start), chr(code - 1)))
                start = code + 1
        if start <= ord(high):
            plain.append((chr(start), high))
    return plain, held


def sqlite_glob(found: Sequence[_Token]) -> str:
    """SQLite's GLOB pattern for the tokens (GLOB has no escape: a literal `*`, `?` or `[`
    is a one-character class)."""
    out: list[str] = []
    for token in found:
        if isinstance(token, _Star):
            out.append("*")
        elif isinstance(token, _Any):
            out.append("?")
        elif isinstance(token, _Char):
            out.append(f"[{token.char}]" if token.char in "*?[" else token.char)
        else:
            out.append(_sqlite_class(token))
    return "".join(out)


def _sqlite_class(token: _Class) -> str:
    # After `[` (and `^`, which negates), a `]` first is a literal, a `-` first or last is
    # one, and `^` anywhere later is one.
    plain, held = _split_specials(token.ranges)
    body = "]" if "]" in held else ""
    body += "".join(low if low == high else f"{low}-{high}" for low, high in plain)
    if "^" in held:
        if not body and not token.negate:
            return "[-^]" if "-" in held else "^"
        body += "^"
    if "-" in held:
        body += "-"
    return f"[{'^' if token.negate else ''}{body}]"


def _pg_char(char: str) -> str:
    # In an ARE a backslash before a non-alphanumeric character makes it literal, inside
    # brackets too; non-ASCII characters are never special.
    return char if char.isalnum() or not char.isascii() else "\\" + char


def postgres_regex(found: Sequence[_Token]) -> str:
    """An anchored PostgreSQL ARE for the tokens (`.` matches newlines too, as fnmatch's)."""
    out = ["^"]
    for token in found:
        if isinstance(token, _Star):
            out.append(".*")
        elif isinstance(token, _Any):
            out.append(".")
        elif isinstance(token, _Char):
            out.append(_pg_char(token.char))
        else:
            items = "".join(
                _pg_char(low) if low == high else f"{_pg_char(low)}-{_pg_char(high)}"
                for low, high in token.ranges
            )
            out.append(f"[{'^' if token.negate else ''}{items}]")
    out.append("$")
    return "".join(out)

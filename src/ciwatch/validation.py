"""Validation at the edge: the limits every value from outside (webhooks, `POST /api/v1/report`,
the silence API, query filters) must respect before it reaches the store, in one place.

The receivers parse a delivery into domain objects, then `check_delivery` holds each field to
the limits below; the report API states the same limits in its pydantic model (so the OpenAPI
document shows them) and runs the same checks after. Limits (docs/webhooks.md, docs/http.md):

- JSON nesting: at most `MAX_DEPTH` levels, checked on the raw bytes before any parser runs;
- timestamps: from 1970-01-01 UTC to a day past the server's clock (`timeutil.window_problem`):
  a later `updated_at` would pin a run's status for ever;
- durations: finite, from 0 to `MAX_SECONDS`;
- integers: within int64 (`number`); `attempt` from 1 to `MAX_ATTEMPT`;
- text: no NUL and no lone surrogate anywhere (PostgreSQL cannot store either); identifiers
  (source, project, run id, job id and name, stage, ref, sha, workflow, event, url) carry no
  control character at all (C0, DEL, C1, U+2028/U+2029); each field has a length limit
  (`LIMITS`).

Pure: no I/O; the clock's `now` is passed in. `loggable` makes a request-derived value safe to
put in a log line.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from ciwatch.domain import Job, Run
from ciwatch.timeutil import window_problem

T = TypeVar("T")

MAX_DEPTH = 64
MAX_SECONDS = 1e9  # about 31 years
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# `state.version_key` writes the attempt in six digits: a seventh would sort before them.
MAX_ATTEMPT = 999_999
# Silence ids are the table's integer key.
MAX_ID = 2**31 - 1

# Longest value of each text field, in characters.
LIMITS: dict[str, int] = {
    "source": 100,
    "project": 500,
    "run_id": 200,
    "job_id": 200,
    "name": 500,
    "stage": 500,
    "ref": 500,
    "sha": 200,
    "workflow": 500,
    "event": 200,
    "url": 2048,
    "provider_status": 200,
    "author": 200,
    "runner": 500,
}
IDENTIFIERS = frozenset(
    {"source", "project", "run_id", "job_id", "name", "stage", "ref", "sha", "workflow", "event"}
    | {"url"}
)
RUN_TIMES = ("updated_at", "created_at", "started_at", "finished_at")
DURATIONS = ("duration_seconds", "queued_seconds")

# Control characters: C0, DEL, C1, and the Unicode line and paragraph separators.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# What no stored text may hold: NUL and lone surrogates (not encodable as UTF-8).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
# The same rule as a JSON-schema pattern (ECMA regex), for the OpenAPI document.
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"
NO_NUL_PATTERN = r"^[^\x00]*$"


@dataclass(frozen=True)
class Problem:
    field: str
    problem: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "problem": self.problem}


class Invalid(ValueError):
    """A value outside the limits; `problems` names each bad field."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in self.problems))

    @property
    def fields(self) -> str:
        return ", ".join(dict.fromkeys(p.field for p in self.problems))

    def detail(self) -> list[dict[str, str]]:
        return [p.as_dict() for p in self.problems]


class TooDeep(ValueError):
    """JSON nested deeper than the limit (found before parsing)."""


# -- Before parsing ---------------------------------------------------------------------------


def json_depth_over(body: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text nests arrays/objects deeper than `limit`: one pass over the bytes
    counting `[`/`{` outside strings (escapes skipped), without parsing. Invalid JSON is the
    parser's business; this only keeps a deep document away from it."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    in_string = False
    escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def check_depth(body: bytes | str, limit: int = MAX_DEPTH) -> None:
    """Raise TooDeep when `json_depth_over`."""
    if json_depth_over(body, limit):
        raise TooDeep(f"the JSON nests deeper than {limit} levels")


def parsed(parse: Callable[..., T], *args: Any) -> T:
    """`parse(*args)` for a vendor payload parser: the body (any text or bytes argument) is
    refused if too deep before it runs, and a ValueError or OverflowError the domain raises on
    a value (a negative attempt, a time out of range) becomes `Invalid` rather than a 500."""
    for arg in args:
        if isinstance(arg, bytes | str):
            check_depth(arg)
    try:
        return parse(*args)
    except Invalid:
        raise
    except (ValueError, OverflowError) as exc:
        raise Invalid([Problem("payload", _shorten(str(exc)))]) from exc


# -- Values -----------------------------------------------------------------------------------


def text_problem(name: str, value: str | None, *, identifier: bool | None = None) -> str | None:
    """What is wrong with a text field's value, or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        return f"must be text, got {type(value).__name__}"
    limit = LIMITS.get(name, 4096)
    if len(value) > limit:
        return f"longer than {limit} characters ({len(value)})"
    if UNSTORABLE.search(value):
        return "holds a NUL or an unpaired surrogate"
    if (name in IDENTIFIERS if identifier is None else identifier) and CONTROL.search(value):
        return "holds a control character (CR, LF, tab, ...)"
    return None


def seconds_problem(value: float | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    if not math.isfinite(value):
        return "must be a finite number"
    if value < 0 or value > MAX_SECONDS:
        return f"must be from 0 to {MAX_SECONDS:.0f} seconds"
    return None


def int_problem(value: int | None, low: int = INT64_MIN, high: int = INT64_MAX) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        return "must be an integer"
    if not low <= value <= high:
        return f"must be from {low} to {high}"
    return None


def _problems(obj: Run | Job, texts: Iterable[str], now: datetime, prefix: str) -> list[Problem]:
    found: list[Problem] = []

    def add(name: str, problem: str | None) -> None:
        if problem is not None:
            found.append(Problem(prefix + name, problem))

    for name in texts:
        add(name, text_problem(name, getattr(obj, name)))
    for name in RUN_TIMES:
        add(name, window_problem(getattr(obj, name), now))
    for name in DURATIONS:
        add(name, seconds_problem(getattr(obj, name)))
    add("attempt", int_problem(obj.attempt, 1, MAX_ATTEMPT))
    return found


_RUN_TEXT = (
    "source",
    "project",
    "run_id",
    "ref",
    "sha",
    "workflow",
    "event",
    "url",
    "provider_status",
    "author",
)
_JOB_TEXT = ("source", "project", "run_id", "job_id", "name", "stage", "url")
_JOB_FREE = ("provider_status", "runner")


def run_problems(run: Run, now: datetime, prefix: str = "") -> list[Problem]:
    found = _problems(run, _RUN_TEXT, now, prefix)
    number = int_problem(run.number)
    if number is not None:
        found.append(Problem(prefix + "number", number))
    return found


def job_problems(job: Job, now: datetime, prefix: str = "") -> list[Problem]:
    return _problems(job, _JOB_TEXT + _JOB_FREE, now, prefix)


def check_run(run: Run, now: datetime, prefix: str = "") -> None:
    """Raise Invalid naming every field of `run` outside the limits."""
    found = run_problems(run, now, prefix)
    if found:
        raise Invalid(found)


def check_delivery(run: Run | None, jobs: Iterable[Job], now: datetime) -> None:
    """Raise Invalid naming every bad field of a delivery's run (`run.FIELD`) and jobs
    (`jobs[ID].FIELD`); nothing of a delivery with one is stored."""
    found = [] if run is None else run_problems(run, now, "run.")
    for job in jobs:
        label = job.job_id if text_problem("job_id", job.job_id) is None else "?"
        found.extend(job_problems(job, now, f"jobs[{label}]."))
    if found:
        raise Invalid(found)


def storable(value: str) -> str:
    """A lookup value (a filter, a path parameter) with what no stored text can hold (NUL,
    lone surrogates) replaced by U+FFFD: it then matches nothing stored, instead of making
    PostgreSQL refuse the query (which would be a 503 for no outage)."""
    return UNSTORABLE.sub("\ufffd", value)


# -- Logging ----------------------------------------------------------------------------------

_LOG_LIMIT = 300


def loggable(value: object, limit: int = _LOG_LIMIT) -> str:
    """A request-derived value as it may go into a log line: control characters (CR and LF
    above all, which would forge lines) escaped the way `repr` does, cut at `limit`."""
    text = value if isinstance(value, str) else str(value)
    if CONTROL.search(text) or UNSTORABLE.search(text):
        text = repr(text)[1:-1]
    return _shorten(text, limit)


def _shorten(text: str, limit: int = _LOG_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def basic_userinfo(authorization: str | None) -> str | None:
    """The decoded `user:password` of an `Authorization: Basic ...` header (UTF-8), or None when
    the header is absent, of another scheme or malformed."""
    scheme, _, param = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        return base64.b64decode(param.strip(), validate=True).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def parse_basic(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None when the header is
    absent or malformed (no colon included)."""
    user, separator, password = (basic_userinfo(authorization) or "").partition(":")
    return (user, password) if separator else None

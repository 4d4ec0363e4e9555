"""Hypothesis strategies for hostile values, and the requests that carry them to each receiver
(GitLab, GitHub, Jenkins, `POST /api/v1/report`) and to the silence API.

Value classes (`VALUE_CLASSES`): JSON nested past the depth limit; timestamps before 1970,
past the end of what a datetime holds (`9999-12-31T23:59:59-01:00`), far in the future, and
absurd epochs (`1e20`); integers past int64 and negative ones; `1e999`, NaN and Infinity
literals and negative or huge durations; text with NUL, lone surrogates, CR/LF and other
control characters, and text far past the length limits; values of the wrong JSON type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hypothesis import strategies as st

from .payloads import SECRETS, fixture, github_headers, gitlab_headers, jenkins_headers

INT64 = 2**63


@dataclass(frozen=True)
class Raw:
    """JSON text put verbatim in place of a value (what `json.dumps` cannot write)."""

    text: str


def encode(data: Any) -> bytes:
    """`data` as JSON, with every `Raw` written verbatim."""
    raws: list[str] = []

    def mark(value: Any) -> Any:
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"\x00raw{len(raws) - 1}\x00"
        if isinstance(value, dict):
            return {key: mark(item) for key, item in value.items()}
        if isinstance(value, list):
            return [mark(item) for item in value]
        return value

    text = json.dumps(mark(data))
    for index, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00raw{index}\x00"), raw)
    return text.encode("utf-8", "surrogatepass")


# -- Value classes ----------------------------------------------------------------------------


def _deep() -> st.SearchStrategy[Raw]:
    depth = st.sampled_from([65, 100, 1000, 100_000])
    return st.one_of(
        depth.map(lambda n: Raw("[" * n + "]" * n)),
        depth.map(lambda n: Raw('{"a":' * n + "1" + "}" * n)),
    )


def _iso(value: datetime, suffix: str) -> str:
    return f"{value.year:04d}-{value:%m-%dT%H:%M:%S}{suffix}"


EARLY_TIMES = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1969, 12, 31)).map(
    lambda d: _iso(d, "Z")
)
FUTURE_TIMES = st.datetimes(min_value=datetime(2026, 2, 3), max_value=datetime(9999, 12, 31)).map(
    lambda d: _iso(d, "Z")
)
OVERFLOW_TIMES = st.sampled_from(
    [
        "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:59:59.999999-23:59",
        "0001-01-01T00:00:00+01:00",
        "0001-01-01 00:00:00 +0100",
        "10000-01-01T00:00:00Z",
    ]
)
EPOCHS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([1e20, -1e20, 10**30, -(10**30), -1, 253_402_300_800_000]).map(
        lambda v: Raw(repr(v)) if isinstance(v, float) else v
    ),
    st.sampled_from([Raw("1e999"), Raw("-1e999"), "1e20", "-5"]),
)
BAD_TIMES: st.SearchStrategy[Any] = st.one_of(
    EARLY_TIMES, FUTURE_TIMES, OVERFLOW_TIMES, EPOCHS, st.just("soon")
)

HUGE_INTS = st.one_of(
    st.integers(min_value=INT64, max_value=2**200),
    st.integers(min_value=-(2**200), max_value=-INT64 - 1),
)
BAD_INTS: st.SearchStrategy[Any] = st.one_of(
    HUGE_INTS, st.integers(-(10**6), 0), st.sampled_from([Raw("1e999"), Raw("1e20"), 1.5])
)

BAD_FLOATS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from(
        [Raw("1e999"), Raw("-1e999"), Raw("NaN"), Raw("Infinity"), Raw("-Infinity"), 1e300]
    ),
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
    HUGE_INTS,
)

CONTROL = st.sampled_from(["\r\n", "\n", "\r", "\x1b[31m", "\u2028", "\u2029", "\x85", "\x7f"])
BAD_TEXT: st.SearchStrategy[Any] = st.one_of(
    st.builds(lambda a, c, b: a + c + b, st.text(max_size=5), CONTROL, st.text(max_size=5)),
    st.builds(lambda a, b: a + "\x00" + b, st.text(max_size=5), st.text(max_size=5)),
    st.sampled_from([Raw('"\\ud800"'), Raw('"x\\udfff"'), Raw('"\\u0000"')]),
    st.integers(10_000, 300_000).map(lambda n: "x" * n),
    HUGE_INTS,
    st.sampled_from([[], {}, True]),
)

VALUE_CLASSES: dict[str, st.SearchStrategy[Any]] = {
    "text": BAD_TEXT,
    "time": BAD_TIMES,
    "int": BAD_INTS,
    "float": BAD_FLOATS,
}


def hostile(kind: str) -> st.SearchStrategy[Any]:
    """A hostile value for a field of `kind` (text, time, int, float), or nesting too deep."""
    return st.one_of(VALUE_CLASSES[kind], _deep())


# -- Fields of each receiver's payload --------------------------------------------------------

# (path in the payload, kind); a number in the path indexes a list.
FIELDS: dict[str, list[tuple[str, str]]] = {
    "report": [
        *((name, "text") for name in ("project", "run_id", "ref", "sha", "workflow", "event")),
        *((name, "text") for name in ("url", "author", "provider_status", "source")),
        ("number", "int"),
        ("attempt", "int"),
        *((name, "time") for name in ("created_at", "started_at", "finished_at", "updated_at")),
        ("duration_seconds", "float"),
        ("queued_seconds", "float"),
    ],
    "gitlab": [
        *(
            (f"object_attributes.{name}", "text")
            for name in ("ref", "sha", "name", "source", "url", "status")
        ),
        ("object_attributes.created_at", "time"),
        ("object_attributes.finished_at", "time"),
        ("object_attributes.duration", "float"),
        ("object_attributes.queued_duration", "float"),
        ("object_attributes.id", "int"),
        ("object_attributes.iid", "int"),
        ("project.path_with_namespace", "text"),
        ("user.username", "text"),
        ("builds.0.name", "text"),
        ("builds.0.stage", "text"),
        ("builds.0.created_at", "time"),
        ("builds.0.started_at", "time"),
        ("builds.0.finished_at", "time"),
        ("builds.0.duration", "float"),
        ("builds.0.id", "int"),
    ],
    "github": [
        *(
            (f"workflow_run.{name}", "text")
            for name in ("head_branch", "head_sha", "name", "event", "html_url", "status")
        ),
        ("workflow_run.created_at", "time"),
        ("workflow_run.updated_at", "time"),
        ("workflow_run.run_started_at", "time"),
        ("workflow_run.id", "int"),
        ("workflow_run.run_number", "int"),
        ("workflow_run.run_attempt", "int"),
        ("repository.full_name", "text"),
    ],
    "jenkins": [
        ("name", "text"),
        ("build.full_url", "text"),
        ("build.phase", "text"),
        ("build.status", "text"),
        ("build.scm.branch", "text"),
        ("build.scm.commit", "text"),
        ("build.number", "int"),
        ("build.timestamp", "time"),
        ("build.duration", "float"),
    ],
}


def _base(receiver: str, n: int) -> dict[str, Any]:
    if receiver == "report":
        return {"project": "team/app", "run_id": str(n), "status": "success", "ref": "main"}
    if receiver == "gitlab":
        data = json.loads(fixture("gitlab/webhooks/pipeline-hook.json"))
        data["object_attributes"]["id"] = 10_000 + n
        return dict(data)
    if receiver == "github":
        data = json.loads(fixture("github/webhooks/workflow_run.completed.json"))
        data["workflow_run"]["id"] = 20_000 + n
        return dict(data)
    data = json.loads(fixture("jenkins/webhooks/notification-plugin.completed.json"))
    data["build"]["number"] = n
    data["build"].setdefault("scm", {})
    return dict(data)


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    node: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str]
    field: str


def request(receiver: str, n: int, field: str, value: Any, report_token: str) -> Request:
    """Delivery `n` of `receiver` with `value` at `field` ("" for the whole body), signed."""
    data: Any = _base(receiver, n)
    if field:
        _put(data, field, value)
    else:
        data = value
    body = encode(data)
    key = f"hostile-{n}"
    if receiver == "report":
        headers = {"Authorization": f"Bearer {report_token}", "Content-Type": "application/json"}
        return Request("/api/v1/report", body, headers, field)
    if receiver == "gitlab":
        return Request("/hooks/gitlab/gl", body, gitlab_headers("Pipeline Hook", key=key), field)
    if receiver == "github":
        headers = github_headers(body, "workflow_run", delivery=key, secret=SECRETS["gh"])
        return Request("/hooks/github/gh", body, headers, field)
    return Request("/hooks/jenkins/jk", body, jenkins_headers(key), field)


def hostile_field(receiver: str) -> st.SearchStrategy[tuple[str, Any]]:
    """(field, hostile value) for `receiver`; field "" replaces the whole body."""
    fields = FIELDS[receiver]
    one = st.sampled_from(fields).flatmap(
        lambda chosen: st.tuples(st.just(chosen[0]), hostile(chosen[1]))
    )
    return st.one_of(one, st.tuples(st.just(""), st.one_of(_deep(), BAD_TEXT)))


# -- The silence API --------------------------------------------------------------------------

BAD_DURATIONS = st.sampled_from(
    ["99999999d", "999999999d", "1e999s", "-1h", "NaNs", "0s", "10000000000000000000000d", ""]
)


def silence_body() -> st.SearchStrategy[Any]:
    """A `POST /api/v1/silences` body with at least one hostile value."""
    matcher_value: st.SearchStrategy[Any] = st.one_of(BAD_TEXT, st.just("app-*"))
    matchers = st.fixed_dictionaries(
        {}, optional=dict.fromkeys(("source", "project", "ref", "event"), matcher_value)
    )
    return st.one_of(
        st.fixed_dictionaries(
            {"matchers": matchers},
            optional={
                "duration": st.one_of(BAD_DURATIONS, st.just("2h")),
                "comment": BAD_TEXT,
                "created_by": BAD_TEXT,
            },
        ),
        st.fixed_dictionaries(
            {
                "matchers": st.just({"project": "app"}),
                "ends_at": st.one_of(BAD_TIMES, FUTURE_TIMES),
            },
            optional={"comment": BAD_TEXT},
        ),
        _deep(),
    )


SILENCE_IDS: st.SearchStrategy[int] = st.one_of(
    st.integers(min_value=2**31, max_value=2**200),
    st.integers(max_value=0, min_value=-(2**200)),
    st.just(2**31 - 1),
)

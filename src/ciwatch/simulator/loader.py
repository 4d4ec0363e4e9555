"""Scenario files (YAML; docs/simulator.md): parse, validate, and name the key on any error.

Errors read `FILE: projects[1].runs[0].result: 'green' is not one of success, failed, …`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import yaml

from ciwatch.simulator.faults import FAULT_KINDS, Fault, FaultKind
from ciwatch.simulator.scenario import (
    EVENTS,
    JENKINS_KINDS,
    PROVIDERS,
    RESULTS,
    GeneratedRerun,
    GeneratorSpec,
    JobSpec,
    ProjectSpec,
    Provider,
    RateLimitSpec,
    RerunSpec,
    RunSpec,
    Scenario,
    Tokens,
    default_rate_limits,
    parse_seconds,
)

T = TypeVar("T")
_MISSING: Any = object()


class _Map:
    """One mapping of the file, with the path to it for error messages."""

    def __init__(self, value: object, where: str, keys: tuple[str, ...]) -> None:
        if not isinstance(value, dict):
            raise ValueError(f"{where or 'scenario'}: expected a mapping, got {value!r}")
        for key in value:
            if key not in keys:
                raise ValueError(f"{self._at(where, key)}: unknown key (known: {', '.join(keys)})")
        self.data: dict[str, Any] = value
        self.where = where

    @staticmethod
    def _at(where: str, key: str) -> str:
        return f"{where}.{key}" if where else key

    def at(self, key: str) -> str:
        return self._at(self.where, key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def get(self, key: str, convert: Callable[[Any], T], default: T = _MISSING) -> T:
        if key not in self.data or self.data[key] is None:
            if default is _MISSING:
                raise ValueError(f"{self.at(key)}: required")
            return default
        try:
            return convert(self.data[key])
        except (TypeError, ValueError) as problem:
            raise ValueError(f"{self.at(key)}: {problem}") from None

    def items(self, key: str) -> list[tuple[Any, str]]:
        value = self.data.get(key) or []
        if not isinstance(value, list):
            raise ValueError(f"{self.at(key)}: expected a list, got {value!r}")
        return [(item, f"{self.at(key)}[{i}]") for i, item in enumerate(value)]


def _text(value: Any) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
        raise ValueError(f"expected text, got {value!r}")
    return str(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    return value


def _positive_int(value: Any) -> int:
    number = _int(value)
    if number < 1:
        raise ValueError(f"{number} must be 1 or more")
    return number


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ValueError(f"expected a number from 0 to 1, got {value!r}")
    return float(value)


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return cast(str, value)

    return convert


def _seconds(value: Any) -> float:
    return parse_seconds(value)


def _offset(value: Any) -> float:
    return parse_seconds(value, signed=True)


def _span(value: Any) -> float:
    return parse_seconds(value, forever=True)


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"expected a non-empty list, got {value!r}")
    return tuple(_text(item) for item in value)


def _range(value: Any) -> tuple[float, float]:
    low, high = value if isinstance(value, list) and len(value) == 2 else (value, value)
    pair = (parse_seconds(low), parse_seconds(high))
    if pair[0] > pair[1]:
        raise ValueError(f"{value!r}: the first value is larger than the second")
    return pair


def _weights(value: Any) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, dict) or not value:
        raise ValueError(f"expected a mapping of result to weight, got {value!r}")
    pairs = tuple((_one_of(RESULTS)(word), float(weight)) for word, weight in value.items())
    if any(weight < 0 for _, weight in pairs) or sum(w for _, w in pairs) <= 0:
        raise ValueError("weights must be 0 or more, and not all 0")
    return pairs


def load_scenario(path: Path) -> Scenario:
    """Read a scenario file; ValueError naming the file and the key when it is not valid."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as problem:
        raise ValueError(f"{path}: not valid YAML: {problem}") from None
    try:
        return scenario_from_dict(data, name=Path(path).stem)
    except ValueError as problem:
        raise ValueError(f"{path}: {problem}") from None


def scenario_from_dict(data: Any, *, name: str = "scenario") -> Scenario:
    top = _Map(
        data, "", ("name", "seed", "retention", "tokens", "rate_limits", "projects", "faults")
    )
    projects = [_project(item, where) for item, where in top.items("projects")]
    if not projects:
        raise ValueError("projects: at least one project is needed")
    seen: set[tuple[str, str]] = set()
    for project, (_, where) in zip(projects, top.items("projects"), strict=True):
        key = (project.provider, project.path.lower())
        if key in seen:
            raise ValueError(f"{where}.path: {project.path!r} appears twice for {project.provider}")
        seen.add(key)
    return Scenario(
        projects=projects,
        faults=[_fault(item, where) for item, where in top.items("faults")],
        tokens=_tokens(top.data.get("tokens"), top.at("tokens")) if top.has("tokens") else Tokens(),
        rate_limits=_rate_limits(top.data.get("rate_limits"), top.at("rate_limits")),
        seed=top.get("seed", _int, 1),
        retention=top.get("retention", _positive_int, 100),
        name=top.get("name", _text, name),
    )


def _tokens(value: Any, where: str) -> Tokens:
    node = _Map(value, where, PROVIDERS)
    defaults = Tokens()

    def texts(raw: Any) -> tuple[str, ...]:
        if not isinstance(raw, list):
            raise ValueError(f"expected a list of tokens, got {raw!r}")
        return tuple(_text(item) for item in raw)

    def users(raw: Any) -> tuple[tuple[str, str], ...]:
        if not isinstance(raw, dict):
            raise ValueError(f"expected a mapping of user to API token, got {raw!r}")
        return tuple((_text(user), _text(token)) for user, token in raw.items())

    return Tokens(
        gitlab=node.get("gitlab", texts, defaults.gitlab),
        github=node.get("github", texts, defaults.github),
        jenkins=node.get("jenkins", users, defaults.jenkins),
    )


def _rate_limits(value: Any, where: str) -> dict[str, RateLimitSpec]:
    limits = default_rate_limits()
    if value is None:
        return limits
    node = _Map(value, where, ("gitlab", "github"))
    for provider in ("gitlab", "github"):
        if node.has(provider):
            entry = _Map(node.data[provider], node.at(provider), ("limit", "window"))
            limits[provider] = RateLimitSpec(
                entry.get("limit", _positive_int), entry.get("window", _seconds)
            )
    return limits


def _job(value: Any, where: str) -> JobSpec:
    node = _Map(value, where, ("name", "stage", "result", "duration"))
    return JobSpec(
        name=node.get("name", _text),
        stage=node.get("stage", _text, "test"),
        result=node.get("result", _one_of(RESULTS), None),
        duration=node.get("duration", _seconds, None),
    )


def _rerun(value: Any, where: str) -> RerunSpec:
    node = _Map(value, where, ("after", "result", "queue", "duration"))
    return RerunSpec(
        after=node.get("after", _seconds, 60.0),
        result=node.get("result", _one_of(RESULTS), "success"),
        queue=node.get("queue", _seconds, 0.0),
        duration=node.get("duration", _seconds, None),
    )


def _run(value: Any, where: str, refs: tuple[str, ...]) -> RunSpec:
    keys = (
        "at",
        "ref",
        "queue",
        "duration",
        "result",
        "jobs",
        "rerun",
        "event",
        "author",
        "message",
    )
    node = _Map(value, where, keys)
    return RunSpec(
        at=node.get("at", _offset),
        ref=node.get("ref", _one_of(refs), None),
        queue=node.get("queue", _seconds, 5.0),
        duration=node.get("duration", _span, None),
        result=node.get("result", _one_of(RESULTS), None),
        jobs=tuple(_job(item, at) for item, at in node.items("jobs")),
        rerun=_rerun(node.data["rerun"], node.at("rerun")) if node.has("rerun") else None,
        event=node.get("event", _one_of(EVENTS), "push"),
        author=node.get("author", _text, None),
        message=node.get("message", _text, None),
    )


def _generator(value: Any, where: str) -> GeneratorSpec:
    keys = ("every", "since", "results", "queue", "duration", "refs", "rerun")
    node = _Map(value, where, keys)
    rerun = None
    if node.has("rerun"):
        entry = _Map(node.data["rerun"], node.at("rerun"), ("probability", "after", "result"))
        rerun = GeneratedRerun(
            probability=entry.get("probability", _fraction),
            after=entry.get("after", _seconds, 120.0),
            result=entry.get("result", _one_of(RESULTS), "success"),
        )
    every = node.get("every", _seconds)
    if every <= 0:
        raise ValueError(f"{node.at('every')}: must be more than 0")
    return GeneratorSpec(
        every=every,
        since=node.get("since", _offset, None),
        results=node.get("results", _weights, (("success", 1.0),)),
        queue=node.get("queue", _range, (2.0, 20.0)),
        duration=node.get("duration", _range, (60.0, 240.0)),
        refs=node.get("refs", _texts, ()),
        rerun=rerun,
    )


def _project(value: Any, where: str) -> ProjectSpec:
    keys = (
        "provider",
        "path",
        "id",
        "refs",
        "kind",
        "workflow",
        "jobs",
        "runs",
        "generate",
        "retention",
    )
    node = _Map(value, where, keys)
    provider: Provider = node.get("provider", _one_of(PROVIDERS))
    path = node.get("path", _text).strip("/")
    parts = path.split("/")
    if (
        (provider == "github" and len(parts) != 2)
        or (provider == "gitlab" and len(parts) < 2)
        or not all(parts)
    ):
        shape = {"github": "owner/repo", "gitlab": "group/project"}.get(provider, "folder/job")
        raise ValueError(f"{node.at('path')}: {path!r} is not of the form {shape}")
    if node.has("kind") and provider != "jenkins":
        raise ValueError(f"{node.at('kind')}: only Jenkins jobs have a kind")
    refs: tuple[str, ...] = node.get("refs", _texts, ("main",))
    return ProjectSpec(
        provider=provider,
        path=path,
        id=node.get("id", _positive_int, None),
        refs=refs,
        kind=node.get("kind", _one_of(JENKINS_KINDS), "pipeline"),
        workflow=node.get("workflow", _text, "CI"),
        jobs=tuple(_job(item, at) for item, at in node.items("jobs")),
        runs=tuple(_run(item, at, refs) for item, at in node.items("runs")),
        generate=_generator(node.data["generate"], node.at("generate"))
        if node.has("generate")
        else None,
        retention=node.get("retention", _positive_int, None),
    )


def _fault(value: Any, where: str) -> Fault:
    keys = (
        "kind",
        "path",
        "provider",
        "count",
        "probability",
        "after",
        "until",
        "status",
        "retry_after",
        "delay",
    )
    node = _Map(value, where, keys)
    kind = cast(FaultKind, node.get("kind", _one_of(FAULT_KINDS)))
    path = node.get("path", _text, "*")
    provider = node.get("provider", _one_of(PROVIDERS), None)
    count = node.get("count", _int, None)
    probability = node.get("probability", _fraction, None)
    after = node.get("after", _seconds, None)
    until = node.get("until", _seconds, None)
    status = node.get("status", _int, None)
    retry_after = node.get("retry_after", _positive_int, 60)
    delay = node.get("delay", _seconds, None)
    try:
        return Fault(
            kind, path, provider, count, probability, after, until, status, retry_after, delay
        )
    except ValueError as problem:  # Fault's own checks name the key first
        raise ValueError(f"{where}.{problem}") from None

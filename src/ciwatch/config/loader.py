"""Loading the configuration: YAML file -> data -> validated `Settings`, or one `ConfigError`
listing every problem as `FILE:LINE key.path: message`, sorted by line."""

from __future__ import annotations

import difflib
import json
import os
import re
import types
import typing
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ciwatch.config.base import BaseSource, Loc
from ciwatch.config.masking import SECRET_FIELDS
from ciwatch.config.models import (
    CHANNEL_TYPES,
    SOURCE_MODELS,
    SOURCE_TYPES,
    Settings,
    cross_problems,
)
from ciwatch.config.yamldoc import Document, YamlSyntaxError, build, compose
from ciwatch.errors import ConfigError

DEFAULT_PATH = "ciwatch.yaml"
_TOP_KEYS = ", ".join(Settings.model_fields)
_TAGGED_LISTS = {"sources": SOURCE_TYPES, "channels": CHANNEL_TYPES}
_EXPECTED = {
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}
_BOUNDS = {
    "greater_than": ("gt", "must be more than"),
    "greater_than_equal": ("ge", "must be at least"),
    "less_than": ("lt", "must be less than"),
    "less_than_equal": ("le", "must be at most"),
}


def default_settings() -> Settings:
    """The settings with no configuration file at all: SQLite `ciwatch.db`, no sources."""
    return Settings()


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """The configuration file to read by default: `$CIWATCH_CONFIG`, else `ciwatch.yaml`."""
    environ = os.environ if env is None else env
    return Path(environ.get("CIWATCH_CONFIG") or DEFAULT_PATH)


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Read, expand (`${VAR}` from `env`, default `os.environ`) and validate a YAML file.

    Raises ConfigError listing every problem, one `FILE:LINE key.path: message` line each.
    """
    name = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{name}: is a directory, not a file") from None
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte {exc.start})") from None
    return parse_settings(text, name, env)


def parse_settings(
    text: str, filename: str = DEFAULT_PATH, env: Mapping[str, str] | None = None
) -> Settings:
    """Validate configuration text; like `load_settings` without the file. An empty document
    (or only comments) gives the defaults."""
    environ = os.environ if env is None else env
    try:
        root = compose(text)
    except YamlSyntaxError as exc:
        where = f"{filename}:{exc.line}" if exc.line else filename
        raise ConfigError(f"{where} {exc.message}") from None
    doc = build(root, environ) if root is not None else None
    if doc is None or (doc.data is None and not doc.problems):
        return default_settings()
    found = [(line or doc.line(loc), loc, message) for line, loc, message in doc.problems]
    if not isinstance(doc.data, dict):
        if found:
            raise ConfigError([_render(filename, line, loc, msg) for line, loc, msg in found])
        got = _kind(doc.data)
        raise ConfigError(
            f"{filename}:{doc.root_line} the top level must be a mapping of settings "
            f"({_TOP_KEYS}), got {got}"
        )
    data, defaulted = _prepared(doc.data)
    found.extend((doc.line(loc), loc, message) for loc, message in _prepare_problems(doc.data))
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        found.extend(_problems(exc, doc, data, defaulted))
    if found:
        found.sort(key=lambda item: item[0])
        raise ConfigError(
            [_render(filename, line, loc, message) for line, loc, message in found],
            details=[
                {"file": filename, "line": line, "key": render_path(loc), "message": message}
                for line, loc, message in found
            ],
        )
    assert settings is not None
    return settings


# Keys starting with `x-` are the user's own (YAML anchor blocks, as in Compose files): allowed at
# the top level and in each source, channel and route, and ignored.
EXTENSION_PREFIX = "x-"
# Common source settings a top-level `defaults:` block may set for every source.
SOURCE_DEFAULTS = tuple(
    name for name in BaseSource.model_fields if name not in ("name", "type", "url")
)
# Each kind's source model, from the provider registry (through `config.models`).
_SOURCE_MODELS: dict[str, type[BaseSource]] = {
    model.model_fields["type"].default: model for model in SOURCE_MODELS
}
_ANY_SOURCE_FIELD = frozenset(name for m in _SOURCE_MODELS.values() for name in m.model_fields)


def _own(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in mapping.items()
        if not (isinstance(k, str) and k.startswith(EXTENSION_PREFIX))
    }


def _prepared(data: dict[str, Any]) -> tuple[dict[str, Any], dict[int, set[str]]]:
    """The data to validate: `x-` keys dropped, `defaults` merged into every source (the
    source's own keys win). Also which keys of each source came from `defaults`."""
    data = _own(data)
    defaults = data.pop("defaults", None)
    defaults = (
        {k: v for k, v in _own(defaults).items() if k in SOURCE_DEFAULTS}
        if isinstance(defaults, Mapping)
        else {}
    )
    defaulted: dict[int, set[str]] = {}
    sources = data.get("sources")
    if isinstance(sources, list):
        merged = []
        for i, source in enumerate(sources):
            if isinstance(source, Mapping):
                own = _own(source)
                defaulted[i] = {k for k in defaults if k not in own}
                source = {**defaults, **own}
            merged.append(source)
        data["sources"] = merged
    alerts = data.get("alerts")
    if isinstance(alerts, Mapping):
        alerts = _own(alerts)
        for key in ("channels", "routes"):
            items = alerts.get(key)
            if isinstance(items, list):
                alerts[key] = [_own(i) if isinstance(i, Mapping) else i for i in items]
        data["alerts"] = alerts
    return data, defaulted


def _prepare_problems(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """What `_prepared` cannot take: a `defaults` that is not a mapping of common source
    settings, and unknown keys of a source whose `type` is unknown (validation stops at the
    type, so they would only show once it is fixed)."""
    problems: list[tuple[Loc, str]] = []
    defaults = data.get("defaults")
    if defaults is not None and not isinstance(defaults, Mapping):
        problems.append((("defaults",), f"expected a mapping, got {_kind(defaults)}"))
    elif isinstance(defaults, Mapping):
        for key in _own(defaults):
            if key not in SOURCE_DEFAULTS:
                problems.append(
                    (("defaults", key), _unknown(str(key), SOURCE_DEFAULTS, "source default"))
                )
    sources = data.get("sources")
    for i, source in enumerate(sources if isinstance(sources, list) else []):
        kind = source.get("type") if isinstance(source, Mapping) else None
        # A `type` that is not a string (a list, a mapping) is no kind: its own error says so.
        if isinstance(source, Mapping) and not (isinstance(kind, str) and kind in _SOURCE_MODELS):
            for key in _own(source):
                if key not in _ANY_SOURCE_FIELD:
                    problems.append((("sources", i, key), _unknown(str(key), _ANY_SOURCE_FIELD)))
    return problems


def _unknown(key: str, allowed: typing.Iterable[str], what: str = "key") -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.75)
    return f"unknown {what}; did you mean {close[0]!r}?" if close else f"unknown {what}"


def _model_at(loc: Loc, data: Any) -> type[BaseModel] | None:
    """The settings model of the mapping at `loc` (for "did you mean"), or None."""
    model: type[BaseModel] | None = Settings
    node = data
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            return None
        field = model.model_fields.get(part)
        node = node.get(part) if isinstance(node, Mapping) else None
        if field is None:
            return None
        annotation: Any = field.annotation
        model = None
        for _ in range(4):  # unwrap list[X], X | None, Annotated[Union, discriminator]
            origin = typing.get_origin(annotation)
            if origin in (list, typing.Union, types.UnionType, typing.Annotated):
                args = [a for a in typing.get_args(annotation) if a is not type(None)]
                if origin is list:
                    annotation = args[0]
                    continue
                if origin is typing.Annotated:
                    annotation = args[0]
                    continue
                models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
                if len(models) == 1:
                    annotation = models[0]
                break
            break
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return model


def _problems(
    exc: ValidationError, doc: Document, data: Any, defaulted: Mapping[int, set[str]]
) -> list[tuple[int, Loc, str]]:
    seen: set[tuple[Loc, str]] = set()
    result: list[tuple[int, Loc, str]] = []
    translated = []
    for error in exc.errors():
        loc, message, depends_on = _translate(error, data)
        # A bad value a source took from `defaults` is reported once, where it was written.
        source = loc[1] if len(loc) >= 3 and loc[0] == "sources" else None
        if isinstance(source, int) and loc[2] in defaulted.get(source, ()):
            loc = ("defaults", *loc[2:])
        translated.append((loc, message, depends_on))
    # The models check names across lists only when everything else is valid; on raw data the
    # same checks run always, so these problems show up with the others.
    for loc, message, depends_on in [*translated, *((*p, ()) for p in cross_problems(doc.data))]:
        if (loc, message) in seen or any(
            loc[: len(u)] == u or any(u[: len(d)] == d for d in depends_on) for u in doc.unresolved
        ):
            continue
        seen.add((loc, message))
        result.append((doc.line(loc), loc, message))
    return result


def _translate(error: ErrorDetails, data: Any) -> tuple[Loc, str, tuple[Loc, ...]]:
    """(location, message, locations it depends on) of one pydantic error."""
    loc = _strip_tags(tuple(error["loc"]), data)
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error["input"]
    if kind == "union_tag_invalid":
        choices = _choices(ctx["expected_tags"])
        message = f"{ctx['tag']!r} is not one of {choices}"
        close = difflib.get_close_matches(str(ctx["tag"]), choices.split(", "), n=1, cutoff=0.75)
        if close:
            message += f"; did you mean {close[0]!r}?"
        return (*loc, "type"), message, ()
    if kind == "union_tag_not_found":
        parent = next((part for part in reversed(loc) if isinstance(part, str)), "")
        kinds = ", ".join(_TAGGED_LISTS.get(parent, ()))
        return (*loc, "type"), f"required (one of {kinds})" if kinds else "required", ()
    if kind == "fields_check":
        model_loc = loc[: len(loc) - int(ctx["depth"])]
        return loc, str(ctx["message"]), tuple((*model_loc, field) for field in ctx["fields"])
    message = _message(kind, ctx, value, error["msg"])
    if kind == "extra_forbidden" and loc and isinstance(loc[-1], str):
        owner = loc[:-1]
        model = _item_model(owner, data) if _in_list_item(owner) else _model_at(owner, data)
        if model is not None:
            message = _unknown(loc[-1], model.model_fields)
    key = next((part for part in reversed(loc) if isinstance(part, str)), "")
    if key in SECRET_FIELDS and isinstance(value, str) and value and value in message:
        message = "invalid"
    return loc, message, ()


def _in_list_item(loc: Loc) -> bool:
    return bool(loc) and isinstance(loc[-1], int)


def _item_model(loc: Loc, data: Any) -> type[BaseModel] | None:
    """The model of the list item at `loc` (a source or channel by its `type`, a route)."""
    node = data
    for part in loc:
        if isinstance(node, Mapping) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    if loc[:1] == ("sources",):
        kind = node.get("type") if isinstance(node, Mapping) else None
        return _SOURCE_MODELS.get(kind) if isinstance(kind, str) else None
    if loc[:2] == ("alerts", "channels"):
        from ciwatch.config.models import channel_model

        kind = node.get("type") if isinstance(node, Mapping) else None
        return channel_model(kind) if isinstance(kind, str) else None
    if loc[:2] == ("alerts", "routes"):
        from ciwatch.config.models import RouteSettings

        return RouteSettings
    if loc[:1] == ("people",):
        from ciwatch.config.models import PersonSettings

        return PersonSettings
    return None


def _message(kind: str, ctx: dict[str, Any], value: Any, default: str) -> str:
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("literal_error", "enum"):
        return f"{value!r} is not one of {_choices(ctx.get('expected', ''))}"
    if kind in _EXPECTED:
        expected = _EXPECTED[kind]
        if kind.endswith("_parsing") or kind == "int_from_float":
            return f"expected {expected}, got {value!r}"
        hint = " (put it in quotes)" if kind == "string_type" and _is_number(value) else ""
        return f"expected {expected}, got {_kind(value)}{hint}"
    if kind in _BOUNDS:
        name, text = _BOUNDS[kind]
        bound = ctx.get(name)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        return f"{text} {bound}"
    if kind == "too_short":
        count = ctx.get("min_length", 1)
        return f"must have at least {count} item{'s' if count != 1 else ''}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", default))
    return default


def _strip_tags(loc: Loc, data: Any) -> Loc:
    """Drop the tag segment pydantic adds inside a discriminated union:
    ('sources', 0, 'gitlab', 'interval') -> ('sources', 0, 'interval')."""
    kept: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, Mapping):
            if part not in node and isinstance(part, str) and node.get("type") == part:
                continue
            node = node.get(part) if isinstance(part, str) else None
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        kept.append(part)
    return tuple(kept)


def _choices(expected: str) -> str:
    return ", ".join(re.findall(r"'([^']*)'", expected)) or expected


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _kind(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, date):
        return "a date"
    if isinstance(value, bytes):
        return "binary data"
    return f"a {type(value).__name__}"


def render_path(loc: Loc) -> str:
    """`('sources', 0, 'type')` -> `sources[0].type`; odd keys quoted: `headers["X Y"]`."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part)}]"
    return text


def _render(filename: str, line: int, loc: Loc, message: str) -> str:
    path = render_path(loc)
    return f"{filename}:{line} {path}: {message}" if path else f"{filename}:{line} {message}"

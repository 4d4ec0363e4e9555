"""The shipped example validates and uses every key; docs/configuration.md documents every key
with its default, as the models define it."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from ciwatch.config import (
    AlertSettings,
    AppriseChannel,
    BaseChannel,
    BaseSource,
    CollectionSettings,
    DingTalkChannel,
    EmailChannel,
    GitHubSource,
    GitLabSource,
    JenkinsSource,
    MetricsSettings,
    RouteSettings,
    ServerSettings,
    Settings,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    format_duration,
    load_settings,
)
from ciwatch.providers.azure import AzureSource

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ciwatch.yaml"
DOCS = ROOT / "docs" / "configuration.md"


# --- the shipped example and the reference documentation ----------------------------------------


EXAMPLE_VARIABLES = sorted(set(re.findall(r"\$\{([A-Z_]+)", EXAMPLE.read_text())))


def _example_env() -> dict[str, str]:
    env = {name: "x" for name in EXAMPLE_VARIABLES if name != "CIWATCH_DATABASE"}
    env["SLACK_WEBHOOK_URL"] = "https://hooks.slack.com/services/T0/B0/X"
    return env


def test_example_validates() -> None:
    s = load_settings(EXAMPLE, _example_env())
    assert [source.type for source in s.sources] == ["gitlab", "github", "jenkins"]
    assert sorted(channel.type for channel in s.alerts.channels) == sorted(
        ["email", "dingtalk", "wecom", "slack", "webhook", "feishu", "apprise"]
    )


def _all_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {key for item in value.values() for key in _all_keys(item)}
    if isinstance(value, list):
        return {key for item in value for key in _all_keys(item)}
    return set()


MODELS: list[type[BaseModel]] = [
    Settings,
    ServerSettings,
    CollectionSettings,
    GitLabSource,
    GitHubSource,
    JenkinsSource,
    AlertSettings,
    EmailChannel,
    DingTalkChannel,
    WeComChannel,
    SlackChannel,
    WebhookChannel,
    AppriseChannel,
    RouteSettings,
    MetricsSettings,
]


def _field_keys(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_example_uses_every_key() -> None:
    used = _all_keys(yaml.safe_load(EXAMPLE.read_text()))
    every = set().union(*(_field_keys(model) for model in MODELS))
    assert every - used == set()


# heading in docs/configuration.md -> (model, base whose keys are documented elsewhere)
DOC_SECTIONS: dict[str, tuple[type[BaseModel], type[BaseModel] | None]] = {
    "Top level": (Settings, None),
    "`server`": (ServerSettings, None),
    "`collection`": (CollectionSettings, None),
    "`sources[]`: every type": (BaseSource, None),
    "`sources[]` with `type: gitlab`": (GitLabSource, BaseSource),
    "`sources[]` with `type: github`": (GitHubSource, BaseSource),
    "`sources[]` with `type: jenkins`": (JenkinsSource, BaseSource),
    "`sources[]` with `type: azure`": (AzureSource, BaseSource),
    "`alerts`": (AlertSettings, None),
    "`alerts.channels[]`: every type": (BaseChannel, None),
    "`alerts.channels[]` with `type: email`": (EmailChannel, BaseChannel),
    "`alerts.channels[]` with `type: dingtalk`": (DingTalkChannel, BaseChannel),
    "`alerts.channels[]` with `type: wecom`": (WeComChannel, BaseChannel),
    "`alerts.channels[]` with `type: slack`": (SlackChannel, BaseChannel),
    "`alerts.channels[]` with `type: webhook`": (WebhookChannel, BaseChannel),
    "`alerts.channels[]` with `type: apprise`": (AppriseChannel, BaseChannel),
    "`alerts.routes[]`": (RouteSettings, None),
    "`metrics`": (MetricsSettings, None),
}
BASE_HEADINGS = {
    BaseSource: "`sources[]`: every type",
    BaseChannel: "`alerts.channels[]`: every type",
}
DOC_EXCEPTIONS = {("`sources[]`: every type", "url"): "depends on the type"}


def _doc_tables() -> dict[str, dict[str, str]]:
    tables: dict[str, dict[str, str]] = {}
    current: str | None = None
    for line in DOCS.read_text().splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            tables[current] = {}
        elif current is not None and line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            tables[current][cells[0].strip("`")] = cells[2]
    return tables


def _documented_default(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        return "see below"
    default = field.default
    if default is None:
        return "—"
    if isinstance(default, timedelta):
        text = format_duration(default)
    elif isinstance(default, bool):
        text = str(default).lower()
    elif isinstance(default, list | dict):
        text = json.dumps(json.loads(json.dumps(default, default=str)))
    else:
        text = str(default)
    return f"`{text}`"


def test_docs_document_every_key_with_its_default() -> None:
    tables = _doc_tables()
    for heading, (model, base) in DOC_SECTIONS.items():
        assert heading in tables, f"docs/configuration.md has no section {heading!r}"
        rows = tables[heading]
        expected: dict[str, str] = {}
        for name, field in model.model_fields.items():
            key = field.alias or name
            if base is not None:
                if name == "type":
                    continue
                inherited = base.model_fields.get(name)
                redocumented = (BASE_HEADINGS[base], key) in DOC_EXCEPTIONS
                if (
                    inherited is not None
                    and inherited.default == field.default
                    and not redocumented
                ):
                    continue
            expected[key] = DOC_EXCEPTIONS.get((heading, key), _documented_default(model, name))
        assert rows == expected, heading


def test_docs_error_examples_match_the_format() -> None:
    block = DOCS.read_text().split("```text\n", 1)[1].split("```", 1)[0]
    for line in block.splitlines():
        assert re.fullmatch(r"ciwatch\.yaml:\d+ [\w.\[\]]+: .+", line), line

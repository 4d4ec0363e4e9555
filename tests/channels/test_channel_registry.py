"""The channel registry agrees with everything else that knows the channel kinds: the
configuration's `ChannelSettings` union, docs/channels.md, the masking of `ciwatch config check`,
the config loader and `build_channel`. A new channel that misses one of these fails here."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from ciwatch.channels import CHANNELS, build_channel, make_test_message
from ciwatch.channels.registry import SPECS
from ciwatch.channels.spec import EXAMPLE_SECRET, ChannelSpec
from ciwatch.cli import app
from ciwatch.config import masked_dump, parse_settings
from ciwatch.config.models import CHANNEL_TYPES, channel_model

DOCS = Path(__file__).parents[2] / "docs"
KINDS = [spec.kind for spec in SPECS]


def test_the_registry_and_the_configuration_name_the_same_kinds() -> None:
    assert len(KINDS) == len(set(KINDS))
    assert set(KINDS) == set(CHANNEL_TYPES)
    assert set(CHANNELS) == set(KINDS)


def config_text(spec: ChannelSpec[Any]) -> str:
    channel = {"name": f"my-{spec.kind}", "type": spec.kind, **spec.example}
    document = {
        "alerts": {
            "channels": [channel],
            "routes": [{"channels": [channel["name"]]}],
        }
    }
    return yaml.safe_dump(document, sort_keys=False)


@pytest.mark.parametrize("spec", SPECS, ids=KINDS)
def test_settings_model_has_the_kind_as_its_type(spec: ChannelSpec[Any]) -> None:
    assert channel_model(spec.kind) is spec.settings
    assert spec.settings.model_fields["type"].default == spec.kind
    assert spec.url_field in spec.settings.model_fields
    for name in spec.secrets:
        assert name in spec.settings.model_fields


@pytest.mark.parametrize("spec", SPECS, ids=KINDS)
def test_documented_in_docs_channels(spec: ChannelSpec[Any]) -> None:
    """A row in the table of channels, a section of its own whose `Keys:` line names every key
    of its settings."""
    text = (DOCS / "channels.md").read_text()
    assert f"\n| `{spec.kind}` |" in text, f"no row for {spec.kind} in the table"
    sections = re.split(r"^## ", text, flags=re.MULTILINE)
    [section] = [s for s in sections if s.startswith(f"`{spec.kind}`")]
    [keys] = [line for line in section.splitlines() if line.startswith("Keys:")]
    for name, field in spec.settings.model_fields.items():
        if name not in ("name", "type"):
            assert f"`{field.alias or name}`" in keys, f"{spec.kind}: {field.alias or name}"


@pytest.mark.parametrize("spec", SPECS, ids=KINDS)
def test_round_trips_through_config_loading(spec: ChannelSpec[Any]) -> None:
    settings = parse_settings(config_text(spec), env={})
    [channel] = settings.alerts.channels
    assert type(channel) is spec.settings
    sender = build_channel(channel)
    assert sender.kind == spec.kind and sender.name == f"my-{spec.kind}"
    # the dump of `config check` loads again to the same settings (secrets aside)
    again = parse_settings(config_text(spec), env={})
    assert again == settings


@pytest.mark.parametrize("spec", SPECS, ids=KINDS)
def test_config_check_never_shows_a_secret(spec: ChannelSpec[Any], tmp_path: Path) -> None:
    assert EXAMPLE_SECRET in config_text(spec)  # the example does hold a secret
    settings = parse_settings(config_text(spec), env={})
    [channel] = settings.alerts.channels
    url = getattr(channel, spec.url_field)
    assert EXAMPLE_SECRET not in spec.mask(url)
    assert EXAMPLE_SECRET not in json.dumps(masked_dump(settings))
    assert EXAMPLE_SECRET not in repr(settings) + str(settings) + repr(channel)
    [dumped] = masked_dump(settings)["alerts"]["channels"]
    for name in spec.secrets:
        assert dumped[name] == "***"
    path = tmp_path / "ciwatch.yaml"
    path.write_text(config_text(spec))
    for args in (
        ["config", "check", "--config", str(path)],
        ["config", "check", "--json", "--config", str(path)],
    ):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert EXAMPLE_SECRET not in result.output
        assert spec.kind in result.output


@pytest.mark.parametrize("spec", SPECS, ids=KINDS)
def test_has_a_payload_and_a_verdict(spec: ChannelSpec[Any]) -> None:
    settings = parse_settings(config_text(spec), env={})
    [channel] = settings.alerts.channels
    body = spec.payload(channel, make_test_message(), datetime(2026, 1, 1, tzinfo=UTC))
    assert body
    assert callable(spec.verdict)

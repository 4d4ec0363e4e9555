"""Every list of provider kinds agrees with the provider registry (providers/registry.py): the
config `sources:` union, the API's `provider` enum in the OpenAPI document, the webhook routes,
the store's provider check, the simulator and docs/configuration.md
(docs/architecture.md#extension-points)."""

from __future__ import annotations

import importlib
import re
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ciwatch.config import SOURCE_TYPES, Settings
from ciwatch.config.base import BaseSource
from ciwatch.config.models import SourceSettings
from ciwatch.domain import Status
from ciwatch.providers.registry import BY_KIND, KINDS, PUSH, RUN_PROVIDERS, SPECS, spec_of
from ciwatch.providers.spec import ProviderSpec
from ciwatch.runtime import Runtime
from ciwatch.simulator import scenario
from ciwatch.state import RUN_FIELDS
from ciwatch.store import open_store
from ciwatch.store.rows import run_from_fields
from ciwatch.web.app import create_app
from ciwatch.web.schemas import RunModel

ROOT = Path(__file__).parents[1]
WEBHOOK_KINDS = tuple(spec.kind for spec in SPECS if spec.webhook is not None)


def test_the_registry_has_one_spec_per_kind() -> None:
    assert len(set(KINDS)) == len(SPECS) >= 3
    assert PUSH not in KINDS
    assert (*KINDS, PUSH) == RUN_PROVIDERS
    for spec in SPECS:
        assert spec_of(spec.kind) is spec
        assert issubclass(spec.settings, BaseSource)
        # The source model's `type:` tag is the kind.
        assert typing.get_args(spec.settings.model_fields["type"].annotation) == (spec.kind,)
        assert spec.settings.model_fields["type"].default == spec.kind
        assert spec.title
    assert spec_of("nope") is None


def test_the_config_union_is_the_registrys_models() -> None:
    union = typing.get_args(SourceSettings)[0]
    assert typing.get_args(union) == tuple(spec.settings for spec in SPECS)
    assert SOURCE_TYPES == KINDS
    schema = Settings.model_json_schema()
    mapping = schema["$defs"]["Settings"] if "Settings" in schema.get("$defs", {}) else schema
    discriminator = mapping["properties"]["sources"]["items"]["discriminator"]
    assert sorted(discriminator["mapping"]) == sorted(KINDS)


def test_an_unknown_source_type_is_refused_naming_every_kind() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings.model_validate({"sources": [{"name": "a", "type": "nope"}]})
    message = str(caught.value)
    for kind in KINDS:
        assert repr(kind) in message


@pytest.fixture
async def openapi(tmp_path: Path) -> dict[str, Any]:
    from ciwatch.clock import FakeClock
    from ciwatch.selfmetrics import CollectionMetrics

    store = open_store(f"sqlite:///{tmp_path / 'ciwatch.db'}")
    try:
        settings = Settings(database="sqlite:///unused.db")
        runtime = Runtime(
            settings, store, FakeClock(datetime(2024, 1, 1, tzinfo=UTC)), CollectionMetrics()
        )
        app = create_app(runtime)
        doc: dict[str, Any] = app.openapi()
        await app.state.metrics_cache.aclose()
        return doc
    finally:
        await store.close()


async def test_the_openapi_provider_enum_is_the_registrys(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    providers = schemas["RunModel"]["properties"]["provider"]
    assert providers["enum"] == list(RUN_PROVIDERS)
    assert RunModel.model_json_schema()["properties"]["provider"]["enum"] == list(RUN_PROVIDERS)


async def test_one_webhook_path_per_registered_kind(openapi: dict[str, Any]) -> None:
    paths = sorted(path for path in openapi["paths"] if path.startswith("/hooks/"))
    assert paths == sorted(f"/hooks/{kind}/{{source}}" for kind in WEBHOOK_KINDS)
    for kind in WEBHOOK_KINDS:
        operation = openapi["paths"][f"/hooks/{kind}/{{source}}"]["post"]
        handler = BY_KIND[kind].webhook
        assert handler is not None
        assert operation["summary"] == handler.summary
        for event in handler.events:
            assert event in operation["description"]


def test_the_store_keeps_registered_kinds_and_repairs_others() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    base = {"source": "s", "project": "p", "run_id": "1", "status": "success", "updated_at": now}

    def row(provider: str) -> list[Any]:
        values = {**base, "provider": provider}
        return [values.get(name, _default(name)) for name in RUN_FIELDS]

    for kind in RUN_PROVIDERS:
        assert run_from_fields(row(kind)).provider == kind
    # A kind the registry does not know (a provider module since removed): shown as pushed.
    assert run_from_fields(row("vanished")).provider == PUSH


def _default(name: str) -> Any:
    return {"attempt": 1, "tests_failing": ()}.get(name)


def test_the_simulator_serves_the_kinds_that_name_a_simulator() -> None:
    assert tuple(spec.kind for spec in SPECS if spec.simulator) == scenario.PROVIDERS
    for spec in SPECS:
        if spec.simulator is not None:
            importlib.import_module(spec.simulator)


def test_each_kind_maps_its_status_words_safely() -> None:
    for spec in SPECS:
        status, unknown = spec.map_status("no-such-word-anywhere")
        assert status is not Status.SUCCESS
        assert unknown is not None and unknown.provider == spec.kind


def test_the_docs_describe_each_kind() -> None:
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    webhooks = (ROOT / "docs" / "webhooks.md").read_text()
    for kind in KINDS:
        assert re.search(rf"### `sources\[\]` with `type: {kind}`", configuration), kind
    for kind in WEBHOOK_KINDS:
        assert f"`POST /hooks/{kind}/{{source}}`" in webhooks, kind


def test_a_kind_must_be_a_plain_lower_case_name() -> None:
    gitlab = BY_KIND["gitlab"]
    for bad in ("GitLab", "git lab", "git/lab", "g", ""):
        with pytest.raises(ValueError, match="provider kind"):
            ProviderSpec(bad, "X", gitlab.settings, gitlab.map_status, gitlab.build)

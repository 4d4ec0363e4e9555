"""The provider registry: one `ProviderSpec` per CI system (docs/architecture.md#extension-points).

`SPECS` is the single list of provider kinds. Everything else that names kinds is derived from
it: the config `sources:` union (`config/models.py`), the webhook route (`web/hooks.py`), the
API's `provider` enum (`web/schemas.py`), the store's provider check (`store/rows.py`) and the
simulator's kinds; tests/test_provider_registry.py checks that they agree. Adding a CI system is
its provider module (which defines its `SPEC`) plus one line here.

Importing this module imports the provider modules (their source models, status tables,
parsers and webhook handlers), never their pollers: `build` imports those on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ciwatch.providers import azure, github, gitlab, jenkins
from ciwatch.providers.spec import ProviderSpec

if TYPE_CHECKING:
    from ciwatch.clock import Clock
    from ciwatch.config.base import BaseSource
    from ciwatch.config.models import CollectionSettings
    from ciwatch.http import RequestRecorder
    from ciwatch.providers.base import Provider

SPECS: tuple[ProviderSpec, ...] = (
    gitlab.SPEC,
    github.SPEC,
    jenkins.SPEC,
    azure.SPEC,
)
BY_KIND: dict[str, ProviderSpec] = {spec.kind: spec for spec in SPECS}
KINDS: tuple[str, ...] = tuple(BY_KIND)

# The provider of runs sent to the push API (`POST /api/v1/runs`, web/report.py): not a source
# kind, no spec; its status words are the normalised ones (`domain.map_status`).
PUSH = "push"
RUN_PROVIDERS: tuple[str, ...] = (*KINDS, PUSH)

# The kinds the built-in simulator serves, with the module that simulates each (mounted at
# `/<kind>` by simulator/app.py; scenario projects, faults and the demo take their kinds from it).
SIMULATED: dict[str, str] = {spec.kind: spec.simulator for spec in SPECS if spec.simulator}

assert len(BY_KIND) == len(SPECS), "two provider specs share a kind"


def spec_of(kind: str) -> ProviderSpec | None:
    """The spec of a provider kind, or None."""
    return BY_KIND.get(kind)


def build_provider(
    settings: BaseSource,
    collection: CollectionSettings,
    clock: Clock,
    recorder: RequestRecorder | None = None,
) -> Provider:
    """The provider for one configured source."""
    return BY_KIND[settings.type].build(settings, collection, clock, recorder)

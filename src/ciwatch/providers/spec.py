"""`ProviderSpec`: everything ciwatch knows about one CI system, in one value
(docs/architecture.md#extension-points).

Each provider module (`providers/gitlab.py`, `github.py`, `jenkins.py`, ...) defines one `SPEC`,
and `providers/registry.py` lists them: that list is the single source of the provider kinds.
The config `sources:` union, the webhook route, the API's `provider` enum, the store's provider
check and the simulator's kinds are all derived from it (tests/test_provider_registry.py
fails when one disagrees). Adding a CI system is one provider module plus one registry line.

The fields:

- `kind`: the source `type:` in the configuration, the `provider` of its runs and targets, and
  the `/hooks/{kind}/{source}` path segment. Lower-case letters and digits.
- `title`: how people call it (`"GitLab"`), for the OpenAPI summary, logs and docs.
- `settings`: the pydantic model of a source of this kind, a subclass of
  `ciwatch.config.base.BaseSource` whose `type` is `Literal[kind]`. It lives in the provider
  module; the config union is built from the registry's models.
- `map_status`: the vendor's status word (and, for GitHub, the conclusion) to the normalised
  `Status`, with an `UnknownStatus` when the word is not one the vendor documents (never raises).
- `build`: the poller factory, `(settings, collection, clock, recorder) -> Provider`. It should
  import its poller module inside the function so importing the spec stays light.
- `webhook`: the webhook handler (`ciwatch.providers.hooks.WebhookHandler`), or None when the CI
  system sends no webhooks ciwatch reads (`POST /hooks/{kind}/...` then answers 404).
- `simulator`: the dotted path of the module that simulates this CI system in the built-in
  simulator (`ciwatch.simulator.gitlab`), or None. Only named here, imported by the simulator.

This module imports nothing beyond the domain model at run time (the types it names are
imported for type checkers only), so `ciwatch.providers.spec` stays light.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ciwatch.domain import Status, UnknownStatus

if TYPE_CHECKING:
    from ciwatch.clock import Clock
    from ciwatch.config.base import BaseSource
    from ciwatch.config.models import CollectionSettings
    from ciwatch.http import RequestRecorder
    from ciwatch.providers.base import Provider
    from ciwatch.providers.hooks import WebhookHandler

# What a kind may be: it is a path segment, a config tag and a label value.
KIND = re.compile(r"^[a-z][a-z0-9]{1,31}$")


class StatusMap(Protocol):
    """`(word, conclusion=None) -> (status, unknown or None)`; most vendors have no
    `conclusion`. Never raises: an unknown word maps to the vendor's safe status."""

    def __call__(
        self, word: str | None, conclusion: str | None = None, /
    ) -> tuple[Status, UnknownStatus | None]: ...


Factory = Callable[
    ["BaseSource", "CollectionSettings", "Clock", "RequestRecorder | None"], "Provider"
]
"""`(settings, collection, clock, recorder) -> Provider`: one poller per configured source."""


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One CI system: see the module's docstring for each field."""

    kind: str
    title: str
    settings: type[BaseSource]
    map_status: StatusMap
    build: Factory
    webhook: WebhookHandler | None = None
    simulator: str | None = None

    def __post_init__(self) -> None:
        if not KIND.match(self.kind):
            raise ValueError(f"provider kind {self.kind!r} does not match {KIND.pattern}")


def table_status(kind: str, table: dict[str, Status], unknown: Status) -> StatusMap:
    """A `map_status` for a vendor whose one word maps through `table` (lower-cased, trimmed);
    any other word is `unknown`, reported as an `UnknownStatus`."""

    def map_status(
        word: str | None, conclusion: str | None = None, /
    ) -> tuple[Status, UnknownStatus | None]:
        key = (word or "").strip().lower()
        if key in table:
            return table[key], None
        return unknown, UnknownStatus(kind, word or "")

    return map_status

"""What a notification channel is, in one place: a `ChannelSpec` per kind, declared as `SPEC` in
the channel's own module and listed once in `channels/registry.py`.

A spec names the channel's settings model, the factory that builds the sender, the function that
builds the service's request body from a `Message` (`payload`), the function that reads the
service's reply (`verdict`), and how its configuration hides secrets (`mask` for its URL,
`secrets` for fields that are secret as a whole). Everything else that lists channel kinds (the
factories of `build_channel`, the agreement test, the documentation check) is derived from the
registry.

Where the settings models live: in `config/models.py`, beside the rest of the configuration
schema, and the spec points at them. The configuration is loaded (and `ciwatch config check`
runs) without importing any channel module, so loading settings never pulls in aiohttp,
aiosmtplib or Apprise, and the channel modules can import the settings without an import cycle
(`config` never imports `channels`). `tests/channels/test_channel_registry.py` checks that the
registry and the configuration's `ChannelSettings` union name the same kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ciwatch.channels.base import Channel, Delivery, Message
from ciwatch.config.models import BaseChannel

if TYPE_CHECKING:
    import aiohttp

SettingsT = TypeVar("SettingsT", bound=BaseChannel)

Build = Callable[[SettingsT, "aiohttp.ClientSession | None"], Channel]
# (settings, message, now) -> the request body (a JSON-able document, a MIME message, ...).
Payload = Callable[[SettingsT, Message, datetime], Any]
# (the service's reply, the channel's label) -> a Delivery, or raises ChannelError.
Verdict = Callable[[Any, str], Delivery]


@dataclass(frozen=True)
class ChannelSpec(Generic[SettingsT]):
    """One kind of notification channel.

    - `kind`: the `type:` of its configuration; `title`: its name in prose and docs.
    - `settings`: its pydantic model (in `config/models.py`), whose `type` is `kind`.
    - `build(settings, session)`: the sender; HTTP channels use `session` when given.
    - `payload(settings, message, now)`: what is sent for `message` (`now` for signatures and
      dates), built in the channel's module from the shared wording of `render.py`.
    - `verdict(reply, label)`: what the service's reply means: a `Delivery`, or `ChannelError`
      (retryable or permanent). HTTP channels get the `Answer` after `check_status`.
    - `mask(url)`: the URL with its secret hidden, from the settings model's `url_mask`;
      `url_field` names the settings field holding that URL; `secrets`: the fields that are
      secret as a whole (masked by name everywhere, see `config/masking.SECRET_FIELDS`).
    - `example`: a configuration of this kind holding `EXAMPLE_SECRET` wherever a secret goes,
      for the agreement test (loaded, dumped by `config check`, never showing the secret).
    """

    kind: str
    title: str
    settings: type[SettingsT]
    build: Build[SettingsT]
    payload: Payload[SettingsT]
    verdict: Verdict
    example: Mapping[str, Any]
    url_field: str = "url"
    secrets: tuple[str, ...] = field(default=())

    @property
    def mask(self) -> Callable[[str], str]:
        """Its URL with the secret hidden: the settings model's `url_mask` (`mask_url` unless
        the model sets its own), the one `config check`, `repr` and `alerts test` use."""
        return self.settings.url_mask

    def __post_init__(self) -> None:
        declared = self.settings.model_fields["type"].default
        if declared != self.kind:
            raise ValueError(f"channel {self.kind!r}: its settings' type is {declared!r}")


# What `example` configurations hold wherever a secret goes.
EXAMPLE_SECRET = "SECRET-7f3a9c"  # noqa: S105 (a placeholder, not a credential)

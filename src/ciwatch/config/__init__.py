"""Configuration (docs/architecture.md#configuration): YAML with `${VAR}` expansion, validated by
pydantic into frozen
`Settings`; durations as `30s`/`5m`/`4h`; every problem reported at once with its file, line and
key path; secrets masked in dumps.

This package is the only place that reads the environment (`load_settings`, `parse_settings` and
`config_path` take `env`, defaulting to `os.environ`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ciwatch.config.masking import mask_tree
from ciwatch.lazy import exports

if TYPE_CHECKING:
    from ciwatch.config.base import BaseSource
    from ciwatch.config.durations import format_duration, parse_duration
    from ciwatch.config.loader import (
        DEFAULT_PATH,
        config_path,
        default_settings,
        load_settings,
        parse_settings,
    )
    from ciwatch.config.masking import MASK, SECRET_FIELDS, mask_tree, mask_url
    from ciwatch.config.models import (
        CHANNEL_TYPES,
        CHANNEL_URL_MASKS,
        SOURCE_TYPES,
        AlertSettings,
        AppriseChannel,
        BaseChannel,
        ChannelSettings,
        CollectionSettings,
        DingTalkChannel,
        EmailChannel,
        MetricsSettings,
        RouteSettings,
        ServerSettings,
        Settings,
        SlackChannel,
        SourceSettings,
        WebhookChannel,
        WeComChannel,
    )
    from ciwatch.config.types import split_listen

_exports = exports(
    __name__,
    {
        "format_duration": "durations",
        "parse_duration": "durations",
        "DEFAULT_PATH": "loader",
        "config_path": "loader",
        "default_settings": "loader",
        "load_settings": "loader",
        "parse_settings": "loader",
        "MASK": "masking",
        "SECRET_FIELDS": "masking",
        "mask_tree": "masking",
        "mask_url": "masking",
        "CHANNEL_TYPES": "models",
        "CHANNEL_URL_MASKS": "models",
        "SOURCE_TYPES": "models",
        "AlertSettings": "models",
        "AppriseChannel": "models",
        "BaseChannel": "models",
        "BaseSource": "base",
        "ChannelSettings": "models",
        "CollectionSettings": "models",
        "DingTalkChannel": "models",
        "EmailChannel": "models",
        "MetricsSettings": "models",
        "RouteSettings": "models",
        "ServerSettings": "models",
        "Settings": "models",
        "SlackChannel": "models",
        "SourceSettings": "models",
        "WebhookChannel": "models",
        "WeComChannel": "models",
        "split_listen": "types",
    },
)


def __getattr__(name: str) -> Any:
    """The names above, loaded on first use (`ciwatch.lazy`), and each provider's source model
    by its class name (`GitLabSource`), which lives in its provider module."""
    try:
        return _exports(name)
    except AttributeError:
        from ciwatch.providers.registry import SPECS

        for spec in SPECS:
            if spec.settings.__name__ == name:
                return spec.settings
        raise


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The normalised configuration as JSON-able data: defaults filled in, durations as text
    (`30s`), every secret `***` and credentials in URLs masked. Safe to print or log."""
    from ciwatch.config.models import CHANNEL_URL_MASKS

    data = settings.model_dump(mode="json", by_alias=True)
    dump: dict[str, Any] = mask_tree(data, CHANNEL_URL_MASKS)
    return dump


__all__ = [
    "CHANNEL_TYPES",
    "CHANNEL_URL_MASKS",
    "DEFAULT_PATH",
    "MASK",
    "SECRET_FIELDS",
    "SOURCE_TYPES",
    "AlertSettings",
    "AppriseChannel",
    "BaseChannel",
    "BaseSource",
    "ChannelSettings",
    "CollectionSettings",
    "DingTalkChannel",
    "EmailChannel",
    "MetricsSettings",
    "RouteSettings",
    "ServerSettings",
    "Settings",
    "SlackChannel",
    "SourceSettings",
    "WeComChannel",
    "WebhookChannel",
    "config_path",
    "default_settings",
    "format_duration",
    "load_settings",
    "mask_url",
    "masked_dump",
    "parse_duration",
    "parse_settings",
    "split_listen",
]

"""The configuration schema (docs/architecture.md#configuration): frozen pydantic models, unknown
keys rejected.

Every default lives here, once; `docs/configuration.md` documents them and a test keeps the two
in step. Checks that span several fields raise errors located at the field to fix.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Annotated, Any, ClassVar, Literal, Self
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from ciwatch.alerting.kinds import DEFAULT_EVENTS
from ciwatch.config.base import BaseSource, Check, ConfigModel, Loc, both_or_neither, raise_problems
from ciwatch.config.masking import mask_all_but_scheme, mask_url
from ciwatch.config.types import (
    AppriseUrl,
    BaseUrl,
    DatabaseUrl,
    DingTalkHandle,
    Duration,
    Email,
    FeishuUser,
    Glob,
    HttpUrl,
    Listen,
    Name,
    OptionalText,
    PersonName,
    PositiveDuration,
    Secret,
    SlackMember,
    SmtpUrl,
    TimeZoneName,
    WeComUser,
    split_listen,
)
from ciwatch.domain import AlertEventKind
from ciwatch.providers.registry import SPECS

# The source kinds and their models come from the provider registry (providers/registry.py):
# each provider module defines its source model on `config.base.BaseSource`, and this module
# builds the `sources:` union from them, so a new CI system adds no line here.
SOURCE_MODELS: tuple[type[BaseSource], ...] = tuple(spec.settings for spec in SPECS)
SOURCE_TYPES = tuple(spec.kind for spec in SPECS)


class ServerSettings(ConfigModel):
    """The HTTP server: dashboard, API, webhooks, /metrics
    (docs/architecture.md#http-and-dashboard)."""

    listen: Listen = "127.0.0.1:8080"
    username: OptionalText = None
    password: Secret = None
    report_token: Secret = None
    protect_metrics: bool = False
    base_url: BaseUrl | None = None

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems = both_or_neither(self, "username", "password")
        if self.protect_metrics and self.username is None:
            message = "needs username and password to be set"
            problems.append(Check(("protect_metrics",), message, ("username", "password")))
        raise_problems(self, problems)
        return self


class CollectionSettings(ConfigModel):
    """Polling, shared by every source (docs/architecture.md#collection)."""

    concurrency: int = Field(16, ge=1, le=1024)
    timeout: PositiveDuration = timedelta(seconds=30)
    retries: int = Field(4, ge=0, le=20)
    jitter: float = Field(0.1, ge=0.0, le=1.0)
    discovery_interval: PositiveDuration = timedelta(minutes=10)
    # Several replicas sharing one database divide the targets through leases
    # (docs/architecture.md#several-replicas).
    partition: bool = False


# One configured source: the registry's models, told apart by `type`. Type checkers see the
# base (code that needs a kind's own fields narrows with isinstance, in its provider module).
if typing.TYPE_CHECKING:
    SourceSettings = BaseSource
else:
    SourceSettings = Annotated[typing.Union.__getitem__(SOURCE_MODELS), Field(discriminator="type")]


class BaseChannel(ConfigModel):
    """What every notification channel has. `url_mask` hides the secret of its URL in dumps,
    reprs and messages (`mask_url`: userinfo passwords, secret-looking query parameters, hook
    path tokens); a channel whose URL keeps secrets elsewhere sets its own."""

    name: Name
    type: str
    url_mask: ClassVar[Callable[[str], str]] = staticmethod(mask_url)


class EmailChannel(BaseChannel):
    """SMTP: `smtp://` uses STARTTLS, `smtps://` implicit TLS; credentials in the URL."""

    type: Literal["email"] = "email"
    smtp_url: SmtpUrl
    from_: Email = Field(alias="from")
    to: list[Email] = Field(min_length=1)
    subject_prefix: str = "[ciwatch]"


class DingTalkChannel(BaseChannel):
    """DingTalk custom robot; `secret` enables signed requests."""

    type: Literal["dingtalk"] = "dingtalk"
    url: HttpUrl
    secret: Secret = None
    at_mobiles: list[str] = []
    at_user_ids: list[str] = []
    at_all: bool = False


class WeComChannel(BaseChannel):
    """WeCom (WeChat Work) group robot."""

    type: Literal["wecom"] = "wecom"
    url: HttpUrl
    mentioned_list: list[str] = []
    mentioned_mobile_list: list[str] = []


class SlackChannel(BaseChannel):
    """Slack incoming webhook."""

    type: Literal["slack"] = "slack"
    url: HttpUrl


class WebhookChannel(BaseChannel):
    """A JSON event POSTed to any URL; `secret` signs the body (HMAC-SHA256)."""

    type: Literal["webhook"] = "webhook"
    url: HttpUrl
    secret: Secret = None
    headers: dict[str, str] = {}


class FeishuChannel(BaseChannel):
    """Feishu (Lark) custom bot; `secret` enables signed requests."""

    type: Literal["feishu"] = "feishu"
    url: HttpUrl
    secret: Secret = None
    at_user_ids: list[FeishuUser] = []
    at_all: bool = False


class AppriseChannel(BaseChannel):
    """Any Apprise URL (tgram://, discord://, mailto://, ...)."""

    type: Literal["apprise"] = "apprise"
    url: AppriseUrl
    # Tokens sit anywhere in an Apprise URL (host, path, userinfo): only the scheme is shown.
    url_mask: ClassVar[Callable[[str], str]] = staticmethod(mask_all_but_scheme)


# Every channel's settings; `channels/registry.py` lists the same kinds (a test checks it).
ChannelSettings = Annotated[
    EmailChannel
    | DingTalkChannel
    | WeComChannel
    | SlackChannel
    | WebhookChannel
    | FeishuChannel
    | AppriseChannel,
    Field(discriminator="type"),
]
CHANNEL_URL_MASKS: dict[str, Callable[[str], str]] = {
    model.model_fields["type"].default: model.url_mask
    for model in typing.get_args(typing.get_args(ChannelSettings)[0])
}
CHANNEL_TYPES: tuple[str, ...] = tuple(
    model.model_fields["type"].default
    for model in typing.get_args(typing.get_args(ChannelSettings)[0])
)


def channel_model(kind: str) -> type[BaseChannel] | None:
    """The model of the channel type `kind` (for "did you mean" on its keys), or None."""
    for model in typing.get_args(typing.get_args(ChannelSettings)[0]):
        if model.model_fields["type"].default == kind:
            return model  # type: ignore[no-any-return]
    return None


class RouteSettings(ConfigModel):
    """Which alerts go to which channels: every list must match (globs on names)."""

    channels: list[str] = Field(min_length=1)
    sources: list[Glob] = ["*"]
    projects: list[Glob] = ["*"]
    refs: list[Glob] = ["*"]
    # Accepted: `domain.AlertEventKind`; default: every kind's `default_event` (alerting/kinds.py).
    events: list[AlertEventKind] = list(DEFAULT_EVENTS)
    # Names the route's grouped messages ("5 refs broke in <name>"); by default its globs.
    name: str | None = Field(default=None, min_length=1, max_length=100)
    # An escalation route: only refs red this long reach its channels, once per red period
    # (docs/alerting.md, "Escalation"); None: an ordinary route.
    after: PositiveDuration | None = None

    @property
    def label(self) -> str:
        """What a grouped message of this route is "in": its `name`, else its project globs
        (with its ref globs when they narrow it), e.g. `group/*` or `group/* on main`."""
        if self.name:
            return self.name
        projects = ", ".join(self.projects) if self.projects != ["*"] else "all projects"
        if self.refs == ["*"]:
            return projects
        return f"{projects} on {', '.join(self.refs)}"


class AlertSettings(ConfigModel):
    """Alert timing, channels and routes (docs/architecture.md#alerting)."""

    stuck_after: PositiveDuration = timedelta(hours=1)
    queued_after: PositiveDuration = timedelta(minutes=15)
    repeat_interval: PositiveDuration = timedelta(hours=4)
    group_wait: Duration = timedelta(seconds=30)
    # Refs already red when this ciwatch first sees them (docs/alerting.md, "First start"):
    # one summary message per channel, a `broken` message each, or nothing.
    on_start: Literal["summary", "each", "none"] = "summary"
    # ciwatch's own ill health (a target, a source's discovery, a channel, the store) lasting
    # this long raises an `unhealthy` alert (docs/alerting.md, "ciwatch's own health").
    unhealthy_after: Duration = timedelta(minutes=10)
    # A break whose failing jobs are all known-flaky (docs/alerting.md, "Likely flaky"):
    # notified as usual, notified marked "likely flaky", or recorded without a notice.
    flaky: Literal["notify", "label", "mute"] = "notify"
    channels: list[ChannelSettings] = []
    routes: list[RouteSettings] = []

    def channel(self, name: str) -> ChannelSettings | None:
        """The channel called `name`, or None."""
        return next((c for c in self.channels if c.name == name), None)


class MetricsSettings(ConfigModel):
    """Optional families of `/metrics` (docs/metrics.md, docs/migrating-from-gcpe.md)."""

    # The gitlab_ci_pipeline_* / gcpe_* names of gitlab-ci-pipelines-exporter, for GitLab refs,
    # so that dashboards built on that exporter keep working.
    gcpe_compatible: bool = False
    # Like GCPE's `output_sparse_status_metrics` (its default is true): only the current
    # status's series (value 1) instead of one series per status word.
    gcpe_sparse_status_metrics: bool = True


class PersonSettings(ConfigModel):
    """One person of `people:`: the identities a CI system may name them by (`names`: logins,
    e-mail addresses, display names; compared without regard to case) and their handles, so
    that a `broken` message mentions the author of the breaking commit."""

    names: list[PersonName] = Field(min_length=1)
    slack: SlackMember | None = None
    dingtalk: DingTalkHandle | None = None
    wecom: WeComUser | None = None
    feishu: FeishuUser | None = None
    email: Email | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems: list[Check] = []
        if not any((self.slack, self.dingtalk, self.wecom, self.feishu, self.email)):
            message = "has no handle: give at least one of slack, dingtalk, wecom, feishu or email"
            fields = ("slack", "dingtalk", "wecom", "feishu", "email")
            problems.append(Check((), message, fields))
        raise_problems(self, problems)
        return self


class FlakySettings(ConfigModel):
    """Flaky jobs (docs/dashboard.md, "Flaky jobs"): the window they are counted over."""

    window: PositiveDuration = timedelta(days=14)


class RecoverySettings(ConfigModel):
    """Time to recovery (docs/dashboard.md, "Time to recovery"): the window of its numbers."""

    window: PositiveDuration = timedelta(days=14)


class Settings(ConfigModel):
    """The whole configuration. Build it with `load_settings`, `parse_settings` or
    `default_settings`; it is frozen (derive a changed copy with `model_copy(update=...)`)."""

    database: DatabaseUrl = "sqlite:///ciwatch.db"
    server: ServerSettings = Field(default_factory=ServerSettings)
    collection: CollectionSettings = Field(default_factory=CollectionSettings)
    sources: list[SourceSettings] = []
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    # Where the dashboard's days start and in which zone pages and notifications show times;
    # storage stays UTC (docs/configuration.md).
    timezone: TimeZoneName = "UTC"
    people: list[PersonSettings] = []
    flaky: FlakySettings = Field(default_factory=FlakySettings)
    recovery: RecoverySettings = Field(default_factory=RecoverySettings)

    def source(self, name: str) -> SourceSettings | None:
        """The source called `name`, or None."""
        return next((s for s in self.sources if s.name == name), None)

    @property
    def zone(self) -> ZoneInfo:
        """The `timezone` (checked when the settings were built)."""
        return ZoneInfo(self.timezone)

    @model_validator(mode="after")
    def _check(self) -> Self:
        raw = {
            "sources": [{"name": s.name} for s in self.sources],
            "alerts": {
                "channels": [{"name": c.name} for c in self.alerts.channels],
                "routes": [{"channels": r.channels} for r in self.alerts.routes],
            },
            "people": [{"names": p.names} for p in self.people],
        }
        raise_problems(self, [Check(loc, message, ()) for loc, message in cross_problems(raw)])
        return self


def cross_problems(data: Any) -> list[tuple[Loc, str]]:
    """Checks across list items, on raw data or a model's: unique source and channel names,
    routes naming existing channels. Tolerant of malformed data (skips what it cannot read), so
    the loader can report these alongside the errors of other fields."""
    if not isinstance(data, Mapping):
        return []
    problems: list[tuple[Loc, str]] = []
    _unique_names(data.get("sources"), ("sources",), problems)
    _unique_people(data.get("people"), problems)
    alerts = data.get("alerts")
    if not isinstance(alerts, Mapping):
        return problems
    channels = alerts.get("channels", [])
    routes = alerts.get("routes")
    if not isinstance(channels, list) or not isinstance(routes, list):
        _unique_names(channels, ("alerts", "channels"), problems)
        return problems
    names = _unique_names(channels, ("alerts", "channels"), problems)
    known = f"channels: {', '.join(names)}" if names else "no channels are defined"
    for i, route in enumerate(routes):
        wanted = route.get("channels") if isinstance(route, Mapping) else None
        if not isinstance(wanted, list):
            continue
        for j, name in enumerate(wanted):
            if isinstance(name, str) and name not in names:
                loc: Loc = ("alerts", "routes", i, "channels", j)
                problems.append((loc, f"no channel named {name!r} ({known})"))
    return problems


def _unique_people(items: Any, problems: list[tuple[Loc, str]]) -> None:
    """No identity names two people (which one would be mentioned?)."""
    if not isinstance(items, list):
        return
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        names = item.get("names") if isinstance(item, Mapping) else None
        if not isinstance(names, list):
            continue
        for j, name in enumerate(names):
            if not isinstance(name, str):
                continue
            key = name.strip().casefold()
            if key in first and first[key] != index:
                where = f"people[{first[key]}]"
                problems.append((("people", index, "names", j), f"{name!r} is also {where}"))
            first.setdefault(key, index)


def _unique_names(items: Any, loc: Loc, problems: list[tuple[Loc, str]]) -> list[str]:
    names: list[str] = []
    if not isinstance(items, list):
        return names
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        name = item.get("name") if isinstance(item, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in first:
            where = f"{_path(loc)}[{first[name]}]"
            problems.append(((*loc, index, "name"), f"duplicate name {name!r} (also {where})"))
        else:
            first[name] = index
            names.append(name)
    return names


def _path(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)

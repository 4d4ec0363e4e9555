"""Annotated field types of the configuration: durations, names, URLs, paths, globs.

Every check raises `PydanticCustomError` with a message written for the operator (the loader
prints it after `file:line key.path:`). A value that may hold a secret is never echoed: URLs are
shown through `mask_url`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import zoneinfo
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, PlainSerializer
from pydantic_core import PydanticCustomError

from ciwatch.config.durations import format_duration, parse_duration
from ciwatch.config.masking import mask_url

# Runs reported with `ciwatch report` (docs/architecture.md#http-and-dashboard).
RESERVED_SOURCE_NAMES = frozenset({"push"})


def problem(message: str) -> PydanticCustomError:
    """A validation error whose text is `message`, verbatim."""
    return PydanticCustomError("ciwatch", "{message}", {"message": message})


def _duration(value: Any) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise problem(str(exc)) from None


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise problem("must be longer than 0s")
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
"""A duration of 0s or more, written `30s`, `5m`, `1h30m` (or seconds as a number)."""
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


def _empty_to_none(value: Any) -> Any:
    return None if value == "" else value


OptionalText = Annotated[str | None, BeforeValidator(_empty_to_none)]
"""An optional string; an empty one (e.g. from `${VAR:-}`) means unset."""
Secret = OptionalText
"""An optional secret: masked in dumps and reprs (by field name, see masking.SECRET_FIELDS)."""


def _matching(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise problem(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


_NAME = r"[a-z0-9][a-z0-9_.-]*"
_NAME_HINT = "a valid name (lower-case letters, digits, '_', '.', '-'; first a letter or digit)"


def _not_reserved(value: str) -> str:
    if value in RESERVED_SOURCE_NAMES:
        raise problem(f"{value!r} is reserved for runs reported with `ciwatch report`")
    return value


Name = Annotated[str, _matching(_NAME, _NAME_HINT)]
SourceName = Annotated[Name, AfterValidator(_not_reserved)]
Glob = Annotated[str, Field(min_length=1)]


def _time_zone(value: str) -> str:
    if not value or value.startswith(("/", ".")) or ".." in value:
        raise problem(f"{value!r} is not an IANA time zone name (e.g. Asia/Shanghai)")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        known = sorted(zoneinfo.available_timezones())
        close = difflib.get_close_matches(value, known, n=1, cutoff=0.75)
        if not close:  # "asia/shanghai": the names are case-sensitive
            close = [name for name in known if name.lower() == value.lower()][:1]
        hint = f"; did you mean {close[0]!r}?" if close else " (e.g. Asia/Shanghai, UTC)"
        raise problem(f"unknown time zone {value!r}{hint}") from None
    return value


TimeZoneName = Annotated[str, AfterValidator(_time_zone)]
"""An IANA time zone name (`Asia/Shanghai`, `Europe/Berlin`, `UTC`), checked with zoneinfo."""

_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_.-]*"
GitLabGroup = Annotated[
    str, _matching(rf"{_SEGMENT}(/{_SEGMENT})*", "a GitLab group path (e.g. platform/tools)")
]
GitLabProject = Annotated[
    str, _matching(rf"{_SEGMENT}(/{_SEGMENT})+", "a GitLab project path (e.g. group/sub/app)")
]
_LOGIN = r"[A-Za-z0-9][A-Za-z0-9_-]*"
GitHubLogin = Annotated[str, _matching(_LOGIN, "a GitHub organisation or user name")]
GitHubRepo = Annotated[
    str, _matching(rf"{_LOGIN}/[A-Za-z0-9_.-]+", "a GitHub repository as owner/repo")
]
_JENKINS_SEGMENT = r"[^/\s](?:[^/]*[^/\s])?"
JenkinsName = Annotated[
    str,
    _matching(
        rf"{_JENKINS_SEGMENT}(/{_JENKINS_SEGMENT})*", "a Jenkins full name (e.g. folder/job)"
    ),
]
_MAILBOX = r"[^@\s<>,]+@[^@\s<>,]+"
Email = Annotated[
    str, _matching(rf"{_MAILBOX}|[^<>@]*<{_MAILBOX}>", "an e-mail address (e.g. dev@example.com)")
]


# Chat handles of `people:` (docs/configuration.md#people). A Slack member id is `U…` or `W…`
# (what "Copy member ID" gives); a DingTalk handle is a mobile number (`atMobiles`) or a user id
# (`atUserIds`); a WeCom handle is a userid (`mentioned_list`, `<@userid>`).
SlackMember = Annotated[str, _matching(r"[UW][A-Z0-9]{2,20}", "a Slack member id (e.g. U012AB3CD)")]
DingTalkHandle = Annotated[
    str,
    _matching(
        r"\+?[0-9]{5,20}|[A-Za-z0-9_.@-]{1,64}",
        "a DingTalk mobile number (e.g. 13800000000) or user id",
    ),
]
WeComUser = Annotated[
    str, _matching(r"[A-Za-z0-9_.@-]{1,64}", "a WeCom userid (letters, digits, _ . @ -)")
]
FeishuUser = Annotated[
    str, _matching(r"[A-Za-z0-9_-]{1,64}", "a Feishu open_id, user_id or union_id (e.g. ou_1a2b3c)")
]
PersonName = Annotated[
    str,
    _matching(r"[^\x00-\x1f\x7f]{1,200}", "a login, e-mail address or name (one line)"),
]


def is_mobile(handle: str) -> bool:
    """Whether a DingTalk handle is a mobile number (else it is a user id)."""
    return re.fullmatch(r"\+?[0-9]{5,20}", handle) is not None


def _url_check(
    schemes: tuple[str, ...], what: str, *, strip: bool, echo: bool
) -> Callable[[str], str]:
    """A validator for URLs of `schemes`. With `echo`, a bad value is quoted (credentials
    masked); without, it is not shown at all: a robot or SMTP URL may be a secret as a whole."""

    def check(value: str) -> str:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme.lower() not in schemes
            or not parts.hostname
            or any(char.isspace() for char in value)
        ):
            raise problem(f"{mask_url(value)!r} is not {what}" if echo else f"not {what}")
        return value.rstrip("/") if strip and parts.path.endswith("/") else value

    return check


HttpUrl = Annotated[
    str, AfterValidator(_url_check(("http", "https"), "an http(s) URL", strip=False, echo=False))
]
"""An http or https URL, kept verbatim (robot and webhook URLs are used as given)."""
BaseUrl = Annotated[
    str, AfterValidator(_url_check(("http", "https"), "an http(s) URL", strip=True, echo=True))
]
"""An http or https URL that paths are appended to; a trailing `/` is dropped."""
SmtpUrl = Annotated[
    str,
    AfterValidator(
        _url_check(
            ("smtp", "smtps"),
            "an SMTP URL (smtp://HOST:587 or smtps://HOST:465)",
            strip=False,
            echo=False,
        )
    ),
]


def _apprise_url(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", value):
        raise problem("not an Apprise URL (SCHEME://...)")
    return value


AppriseUrl = Annotated[str, AfterValidator(_apprise_url)]

_DATABASE = re.compile(r"(sqlite|postgresql|postgres)(\+[A-Za-z0-9_]+)?://.*", re.DOTALL)
_DATABASE_HINT = "use sqlite:///PATH or postgresql://USER@HOST/DB"


def _database_url(value: str) -> str:
    if _DATABASE.fullmatch(value):
        return value
    # Only the scheme is shown: the rest may hold a password in a shape mask_url cannot parse.
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", value)
    if scheme:
        raise problem(f"database scheme {scheme.group(1)!r} is not supported ({_DATABASE_HINT})")
    raise problem(f"not a database URL ({_DATABASE_HINT})")


DatabaseUrl = Annotated[str, AfterValidator(_database_url)]


def split_listen(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets) as (host, port); ValueError naming the problem."""
    match = re.fullmatch(r"\[([^\]]+)\]:(\d{1,5})|([^\s:\[\]]+):(\d{1,5})", value)
    if not match:
        raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080)")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if match.group(1) is not None:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{value!r}: {host!r} is not an IPv6 address") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{value!r}: port {port} is not in 1-65535")
    return host, port


def _listen(value: str) -> str:
    try:
        split_listen(value)
    except ValueError as exc:
        raise problem(str(exc)) from None
    return value


Listen = Annotated[str, AfterValidator(_listen)]

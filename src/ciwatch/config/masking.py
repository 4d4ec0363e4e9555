"""Hiding secrets in URLs and in configuration dumps. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"

# Fields whose whole value is a secret (every model uses these names and only these for secrets).
SECRET_FIELDS = frozenset({"token", "password", "secret", "webhook_secret", "report_token"})
# Fields holding a URL that may carry a credential (userinfo, query parameter, path token).
URL_FIELDS = frozenset({"url", "smtp_url", "database", "base_url"})

_SECRET_PARAMS = frozenset(
    {"access_token", "key", "token", "secret", "sig", "signature", "password", "code", "auth"}
)
_SECRET_PARAM_SUFFIXES = ("token", "secret", "password", "key", "signature", "sign")
# Path segments after which every segment is a credential (Discord /api/webhooks/ID/TOKEN,
# Mattermost and Rocket.Chat /hooks/..., Microsoft Teams /webhookb2/..., Feishu and Lark bots
# /open-apis/bot/v2/hook/TOKEN).
_HOOK_SEGMENTS = frozenset({"hook", "hooks", "webhooks", "webhookb2"})
# Hosts where everything after the first path segment is a credential.
_TOKEN_PATH_HOSTS = frozenset({"hooks.slack.com"})
_TELEGRAM_BOT = re.compile(r"bot\d+:[\w-]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_CREDENTIALS = re.compile(r"//(?P<user>[^:/?#@]*):(?P<password>.*)@(?P<after>[^@]*)\Z", re.DOTALL)
_SENSITIVE_HEADER = re.compile(
    r"auth|token|key|secret|passw|cookie|signature|session|credential", re.IGNORECASE
)


def mask_url(url: str) -> str:
    """`url` with its credentials replaced by `***`, the rest kept verbatim.

    Masks the password of the userinfo (`postgresql://bot:***@db/ci`), secret-looking query
    parameters (`access_token`, `key`, `token`, `secret`, `sig`, `signature`, `password`, ...),
    the token path of Slack-, Discord-, Mattermost-, Teams- and Feishu-style webhook URLs and
    Telegram bot tokens. A value that cannot be parsed as a URL is masked whole.
    """
    scheme_match = _SCHEME.match(url)
    scheme = scheme_match.group(0) if scheme_match else ""
    rest = url[len(scheme) :]
    prefix = scheme
    credentials = _CREDENTIALS.match(rest)
    if credentials:
        # Split by hand: a password may hold '/', '?' or '#' that urlsplit would cut at.
        prefix += f"//{credentials['user']}:{MASK}@"
        rest = "//" + credentials["after"]
    try:
        parts = urlsplit(rest)
    except ValueError:
        return MASK
    out = prefix
    if rest.startswith("//"):
        out += parts.netloc if credentials else "//" + parts.netloc
    out += _mask_path((parts.hostname or "").lower(), parts.path)
    if "?" in rest.partition("#")[0]:
        out += "?" + _mask_query(parts.query)
    if "#" in rest:
        out += "#" + _mask_query(parts.fragment)
    return out


def mask_all_but_scheme(url: str) -> str:
    """`scheme://***`: for Apprise URLs, where tokens sit anywhere (host, path, userinfo)."""
    scheme, sep, _ = url.partition("://")
    return (
        f"{scheme}://{MASK}" if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) else MASK
    )


def _mask_path(host: str, path: str) -> str:
    segments = path.split("/")
    masking = False
    seen_first = False
    for index, segment in enumerate(segments):
        if not segment:
            continue
        if masking:
            segments[index] = MASK
        elif _TELEGRAM_BOT.fullmatch(segment):
            segments[index] = f"bot{MASK}"
        if (host in _TOKEN_PATH_HOSTS and not seen_first) or segment.lower() in _HOOK_SEGMENTS:
            masking = True
        seen_first = True
    return "/".join(segments)


def _mask_query(query: str) -> str:
    pairs = []
    for pair in re.split(r"([&;])", query):
        name, eq, value = pair.partition("=")
        if eq and value and _secret_param(unquote(name)):
            pair = f"{name}={MASK}"
        pairs.append(pair)
    return "".join(pairs)


def _secret_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_PARAMS or lowered.endswith(_SECRET_PARAM_SUFFIXES)


def sensitive_header(name: str) -> bool:
    """Whether a webhook header's value is masked in dumps (Authorization, X-Api-Key, ...)."""
    return bool(_SENSITIVE_HEADER.search(name))


def mask_tree(value: Any, url_masks: Mapping[str, Callable[[str], str]] | None = None) -> Any:
    """A JSON-able dump (from `model_dump(mode="json")`) with every secret masked. `url_masks`
    maps a `type` (a channel kind) to the function masking the URLs of a mapping of that type
    (`mask_url` for every other one): see `BaseChannel.url_mask`."""
    masks = url_masks or {}
    if isinstance(value, Mapping):
        masked: dict[str, Any] = {}
        kind = value.get("type")
        for key, item in value.items():
            if key in SECRET_FIELDS:
                masked[key] = None if item is None else MASK
            elif key in URL_FIELDS and isinstance(item, str):
                own = masks.get(kind) if isinstance(kind, str) else None
                masked[key] = (own or mask_url)(item)
            elif key == "headers" and isinstance(item, Mapping):
                masked[key] = {
                    name: MASK if sensitive_header(str(name)) else header
                    for name, header in item.items()
                }
            else:
                masked[key] = mask_tree(item, masks)
        return masked
    if isinstance(value, list):
        return [mask_tree(item, masks) for item in value]
    return value

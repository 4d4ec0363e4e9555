"""Configuration secrets: URL masking, and no secret in dumps, reprs or error messages;
robustness: any input gives Settings or a ConfigError, never another exception."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ciwatch.config import (
    AlertSettings,
    CollectionSettings,
    DingTalkChannel,
    EmailChannel,
    GitHubSource,
    GitLabSource,
    JenkinsSource,
    RouteSettings,
    ServerSettings,
    Settings,
    WebhookChannel,
    WeComChannel,
    load_settings,
    mask_url,
    masked_dump,
    parse_settings,
)
from ciwatch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ciwatch.yaml"


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    """The problem lines of `text`, which must be invalid."""
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, env=env or {})
    return caught.value.problems


def parse(text: str, env: dict[str, str] | None = None) -> Settings:
    return parse_settings(text, env=env or {})


# --- masking -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("sqlite:///ciwatch.db", "sqlite:///ciwatch.db"),
        ("postgresql://ci@db/ci", "postgresql://ci@db/ci"),
        ("postgresql://ci:pg-s3cret@db:5432/ci", "postgresql://ci:***@db:5432/ci"),
        ("smtp://user:p@ss/w?rd@mail.example.com:587", "smtp://user:***@mail.example.com:587"),
        (
            "https://oapi.dingtalk.com/robot/send?access_token=abc123",
            "https://oapi.dingtalk.com/robot/send?access_token=***",
        ),
        (
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k-1&debug=1",
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***&debug=1",
        ),
        (
            "https://hooks.slack.com/services/T000/B000/XXXX",
            "https://hooks.slack.com/services/***/***/***",
        ),
        (
            "https://discord.com/api/webhooks/123/tok-en",
            "https://discord.com/api/webhooks/***/***",
        ),
        (
            "https://open.feishu.cn/open-apis/bot/v2/hook/6c9f3e0a-41b2-4c1d-9e8f-0a1b2c3d4e5f",
            "https://open.feishu.cn/open-apis/bot/v2/hook/***",
        ),
        (
            "https://open.larksuite.com/open-apis/bot/v2/hook/lark-token?x=1",
            "https://open.larksuite.com/open-apis/bot/v2/hook/***?x=1",
        ),
        ("https://x.example/p?token=a&sig=b&signature=c", "https://x.example/p?token=***&sig=***&signature=***"),
        ("https://x.example/p?secret=a&password=b&private_token=c", "https://x.example/p?secret=***&password=***&private_token=***"),
        ("https://x.example/ci-events?page=2", "https://x.example/ci-events?page=2"),
        ("https://api.telegram.org/bot123:AA-bb/sendMessage", "https://api.telegram.org/bot***/sendMessage"),
        ("http://[::1", "***"),
    ],
)  # fmt: skip
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_webhook_headers_that_look_secret_are_masked() -> None:
    text = (
        "alerts:\n  channels:\n    - name: w\n      type: webhook\n      url: https://h.example\n"
        "      headers: {Authorization: Bearer abc, X-Api-Key: k, X-Env: prod}\n"
    )
    settings = parse(text)
    (channel,) = masked_dump(settings)["alerts"]["channels"]
    assert channel["headers"] == {"Authorization": "***", "X-Api-Key": "***", "X-Env": "prod"}
    assert "Bearer abc" not in repr(settings)


# The prefix keeps a generated secret from matching ordinary text of the dump by chance.
secret_text = st.text(string.ascii_letters + string.digits, min_size=4, max_size=32).map(
    lambda text: f"s3cr3t{text}"
)
EXAMPLE_VARIABLES = sorted(set(re.findall(r"\$\{([A-Z_]+)", EXAMPLE.read_text())))


@settings(deadline=None, max_examples=50)
@given(st.lists(secret_text, min_size=len(EXAMPLE_VARIABLES) + 2, unique=True))
def test_no_secret_survives_masking(secrets: list[str]) -> None:
    env = dict(zip(EXAMPLE_VARIABLES, secrets, strict=False))
    db_secret, slack_secret = secrets[-2:]
    env["CIWATCH_DATABASE"] = f"postgresql://ci:{db_secret}@db.example.com/ci"
    env["SLACK_WEBHOOK_URL"] = f"https://hooks.slack.com/services/T0/B0/{slack_secret}"
    hidden = [value for name, value in env.items() if name != "CIWATCH_DATABASE"]
    hidden = [*hidden, db_secret, slack_secret]
    hidden.remove(env["SLACK_WEBHOOK_URL"])
    loaded = load_settings(EXAMPLE, env)
    text = json.dumps(masked_dump(loaded)) + repr(loaded) + str(loaded)
    for secret in hidden:
        assert secret not in text


@settings(deadline=None, max_examples=50)
@given(secret_text)
def test_no_secret_in_error_messages(secret: str) -> None:
    text = (
        f"database: 'mysql://u:{secret}@h/db'\n"
        "alerts:\n  channels:\n"
        f"    - {{name: m, type: email, smtp_url: 'ftp://u:{secret}@h', from: a@b, to: [c@d]}}\n"
        f"    - {{name: d, type: dingtalk, url: 'oapi?access_token={secret}'}}\n"
        f"    - {{name: s, type: slack, url: 'hooks.slack.com/services/a/b/{secret}'}}\n"
        f"    - {{name: a, type: apprise, url: 'tgram:{secret}'}}\n"
    )
    found = problems(text)
    assert len(found) == 5
    assert not any(secret in line for line in found)


# --- robustness: only ConfigError, never a traceback --------------------------------------------

KEYS = sorted(
    {name for model in (Settings, ServerSettings, CollectionSettings, AlertSettings,
                        RouteSettings, GitLabSource, GitHubSource, JenkinsSource, EmailChannel,
                        DingTalkChannel, WeComChannel, WebhookChannel) for name in
     model.model_fields} | {"from", "x"}
)  # fmt: skip
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.sampled_from(["gitlab", "github", "jenkins", "email", "slack", "30s", "${X}", "$${", "*"]),
)
trees = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    ),
    max_leaves=25,
)


def _outcome(text: str) -> list[str] | None:
    """The problems of `text`, or None when it is valid; any other exception fails the test."""
    try:
        parse_settings(text, env={})
    except ConfigError as exc:
        return exc.problems
    return None


@settings(deadline=None, max_examples=150)
@given(st.dictionaries(st.sampled_from(KEYS), trees, max_size=5))
def test_any_structure_gives_settings_or_config_error(data: dict[str, Any]) -> None:
    found = _outcome(yaml.safe_dump(data))
    assert found is None or found
    assert all(re.match(r"ciwatch\.yaml:\d+ ", line) for line in found or [])


@settings(deadline=None, max_examples=150)
@given(st.text(max_size=80))
def test_any_text_gives_settings_or_config_error(text: str) -> None:
    found = _outcome(text)
    assert found is None or found
    assert all(line.startswith("ciwatch.yaml") for line in found or [])

"""Configuration: durations, the founding configuration example, defaults, ${VAR}
expansion, error lines and paths, masking, the shipped example and the reference documentation."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from ciwatch.config import (
    AppriseChannel,
    DingTalkChannel,
    EmailChannel,
    GitHubSource,
    GitLabSource,
    JenkinsSource,
    RouteSettings,
    ServerSettings,
    Settings,
    SlackChannel,
    WebhookChannel,
    WeComChannel,
    config_path,
    default_settings,
    load_settings,
    masked_dump,
    parse_settings,
)
from ciwatch.domain import AlertEventKind
from ciwatch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ciwatch.yaml"
DOCS = ROOT / "docs" / "configuration.md"


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    """The problem lines of `text`, which must be invalid."""
    with pytest.raises(ConfigError) as caught:
        parse_settings(text, env=env or {})
    return caught.value.problems


def parse(text: str, env: dict[str, str] | None = None) -> Settings:
    return parse_settings(text, env=env or {})


GITLAB = "{name: gl, type: gitlab, projects: [g/app]}"


# --- the founding configuration example ---------------------------------------------------------

DESIGN_EXAMPLE = """\
database: sqlite:///ciwatch.db            # or postgresql://user@host/db
server: {listen: "127.0.0.1:8080", username: admin, password: "${CIWATCH_PASSWORD}", report_token: "${CIWATCH_REPORT_TOKEN}", protect_metrics: false}
sources:
  - {name: gitlab, type: gitlab, url: "https://gitlab.example.com", token: "${GITLAB_TOKEN}",
     webhook_secret: "${GITLAB_HOOK_SECRET}", projects: ["group/app"], groups: ["platform"],
     refs: ["main", "release/*"], interval: 60s, active_interval: 15s}
  - {name: github, type: github, url: "https://api.github.com", token: "${GITHUB_TOKEN}",
     webhook_secret: "${GITHUB_HOOK_SECRET}", repos: ["octo-org/app"], orgs: ["octo-org"]}
  - {name: jenkins, type: jenkins, url: "https://jenkins.example.com", username: bot,
     token: "${JENKINS_TOKEN}", jobs: ["team/app/main"], folders: ["team"]}
alerts:
  stuck_after: 1h
  queued_after: 15m
  repeat_interval: 4h
  group_wait: 30s
  channels:
    - {name: mail, type: email, smtp_url: "smtp://user:${SMTP_PASSWORD}@mail.example.com:587", from: "ci@example.com", to: ["dev@example.com"]}
    - {name: ding, type: dingtalk, url: "https://oapi.dingtalk.com/robot/send?access_token=${DING_TOKEN}", secret: "${DING_SECRET}"}
    - {name: wecom, type: wecom, url: "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${WECOM_KEY}"}
    - {name: slack, type: slack, url: "${SLACK_WEBHOOK_URL}"}
    - {name: hook, type: webhook, url: "https://example.com/ci-events"}
    - {name: other, type: apprise, url: "tgram://token/chat"}
  routes:
    - {channels: [slack, ding], projects: ["group/*"], refs: ["main"], events: [broken, recovered, stuck]}
"""  # noqa: E501 - verbatim from the founding design sketch

DESIGN_ENV = {
    "CIWATCH_PASSWORD": "pw-9f2c",
    "CIWATCH_REPORT_TOKEN": "rt-77aa",
    "GITLAB_TOKEN": "glpat-abc",
    "GITLAB_HOOK_SECRET": "gl-hook",
    "GITHUB_TOKEN": "ghp_def",
    "GITHUB_HOOK_SECRET": "gh-hook",
    "JENKINS_TOKEN": "jk-123",
    "SMTP_PASSWORD": "smtp-pw",
    "DING_TOKEN": "ding-tok",
    "DING_SECRET": "SECding",
    "WECOM_KEY": "wecom-key",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/slacksecret",
}


def test_design_example_parses_to_the_documented_values() -> None:
    s = parse(DESIGN_EXAMPLE, DESIGN_ENV)
    assert s.database == "sqlite:///ciwatch.db"
    assert s.server.listen == "127.0.0.1:8080"
    assert (s.server.host, s.server.port) == ("127.0.0.1", 8080)
    assert s.server.username == "admin"
    assert s.server.password == "pw-9f2c"
    assert s.server.report_token == "rt-77aa"
    assert s.server.protect_metrics is False

    gitlab, github, jenkins = s.sources
    assert isinstance(gitlab, GitLabSource)
    assert gitlab.name == "gitlab"
    assert gitlab.url == "https://gitlab.example.com"
    assert gitlab.token == "glpat-abc"
    assert gitlab.webhook_secret == "gl-hook"
    assert gitlab.projects == ["group/app"]
    assert gitlab.groups == ["platform"]
    assert gitlab.refs == ["main", "release/*"]
    assert gitlab.interval == timedelta(seconds=60)
    assert gitlab.active_interval == timedelta(seconds=15)

    assert isinstance(github, GitHubSource)
    assert github.url == "https://api.github.com"
    assert (github.token, github.webhook_secret) == ("ghp_def", "gh-hook")
    assert github.repos == ["octo-org/app"]
    assert github.orgs == ["octo-org"]

    assert isinstance(jenkins, JenkinsSource)
    assert jenkins.url == "https://jenkins.example.com"
    assert (jenkins.username, jenkins.token) == ("bot", "jk-123")
    assert jenkins.jobs == ["team/app/main"]
    assert jenkins.folders == ["team"]
    assert s.source("jenkins") is jenkins
    assert s.source("nope") is None

    alerts = s.alerts
    assert alerts.stuck_after == timedelta(hours=1)
    assert alerts.queued_after == timedelta(minutes=15)
    assert alerts.repeat_interval == timedelta(hours=4)
    assert alerts.group_wait == timedelta(seconds=30)
    mail, ding, wecom, slack, hook, other = alerts.channels
    assert isinstance(mail, EmailChannel)
    assert mail.smtp_url == "smtp://user:smtp-pw@mail.example.com:587"
    assert mail.from_ == "ci@example.com"
    assert mail.to == ["dev@example.com"]
    assert isinstance(ding, DingTalkChannel)
    assert ding.url == "https://oapi.dingtalk.com/robot/send?access_token=ding-tok"
    assert ding.secret == "SECding"
    assert isinstance(wecom, WeComChannel)
    assert wecom.url.endswith("key=wecom-key")
    assert isinstance(slack, SlackChannel)
    assert slack.url == DESIGN_ENV["SLACK_WEBHOOK_URL"]
    assert isinstance(hook, WebhookChannel)
    assert hook.url == "https://example.com/ci-events"
    assert hook.secret is None
    assert isinstance(other, AppriseChannel)
    assert other.url == "tgram://token/chat"
    assert alerts.channel("ding") is ding

    (route,) = alerts.routes
    assert route.channels == ["slack", "ding"]
    assert route.projects == ["group/*"]
    assert route.refs == ["main"]
    assert route.sources == ["*"]
    assert route.events == [AlertEventKind.BROKEN, AlertEventKind.RECOVERED, AlertEventKind.STUCK]


# --- defaults ------------------------------------------------------------------------------------


def test_default_settings() -> None:
    s = default_settings()
    assert s.database == "sqlite:///ciwatch.db"
    assert s.sources == []
    assert s.server == ServerSettings()
    assert s.server.listen == "127.0.0.1:8080"
    assert s.server.username is None
    assert s.server.password is None
    assert s.server.report_token is None
    assert s.server.protect_metrics is False
    assert s.server.base_url is None
    c = s.collection
    assert (c.concurrency, c.retries, c.jitter) == (16, 4, 0.1)
    assert c.timeout == timedelta(seconds=30)
    assert c.discovery_interval == timedelta(minutes=10)
    a = s.alerts
    assert a.stuck_after == timedelta(hours=1)
    assert a.queued_after == timedelta(minutes=15)
    assert a.repeat_interval == timedelta(hours=4)
    assert a.group_wait == timedelta(seconds=30)
    assert a.on_start == "summary"
    assert a.channels == []
    assert a.routes == []


@pytest.mark.parametrize("text", ["", "\n", "# nothing but a comment\n", "---\n", "~\n"])
def test_empty_document_gives_the_defaults(text: str) -> None:
    assert parse(text) == default_settings()


def test_source_and_route_defaults() -> None:
    s = parse(
        f"sources:\n  - {GITLAB}\n  - {{name: gh, type: github, users: [me]}}\n"
        "  - {name: jk, type: jenkins, url: 'https://ci.example.com/', folders: [team]}\n"
        "alerts:\n  channels: [{name: s, type: slack, url: 'https://hooks.slack.com/x'}]\n"
        "  routes: [{channels: [s]}]\n"
    )
    gitlab, github, jenkins = s.sources
    assert gitlab.url == "https://gitlab.com"
    assert github.url == "https://api.github.com"
    assert jenkins.url == "https://ci.example.com"  # trailing slash dropped
    for source in s.sources:
        assert source.token is None
        assert source.webhook_secret is None
        assert source.interval == timedelta(seconds=60)
        assert source.active_interval == timedelta(seconds=15)
        assert source.requests_per_second == 10.0
        assert source.backfill == 50
        assert source.refs == source.exclude_refs == source.exclude_projects == []
        assert source.verify_tls is True
    assert isinstance(jenkins, JenkinsSource)
    assert jenkins.builds == 20
    assert jenkins.username is None
    assert isinstance(github, GitHubSource)
    assert github.workflows == []
    (route,) = s.alerts.routes
    assert route.sources == route.projects == route.refs == ["*"]
    assert route.events == list(AlertEventKind)


def test_an_empty_value_means_the_default() -> None:
    s = parse(f"server:\ncollection:\n  timeout:\nsources:\n  - {GITLAB}\nalerts:\n")
    assert s.server == ServerSettings()
    assert s.collection.timeout == timedelta(seconds=30)


def test_settings_are_frozen() -> None:
    s = default_settings()
    with pytest.raises(ValidationError):
        s.database = "sqlite:///other.db"  # type: ignore[misc]
    assert s.model_copy(update={"database": "sqlite:///o.db"}).database == "sqlite:///o.db"


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("0.0.0.0:1", "0.0.0.0", 1),  # noqa: S104 - a listen address, not a bind in a test
        ("[::1]:8080", "::1", 8080),
        ("[::]:65535", "::", 65535),
        ("localhost:9000", "localhost", 9000),
    ],
)
def test_listen(listen: str, host: str, port: int) -> None:
    server = parse(f"server: {{listen: '{listen}'}}").server
    assert (server.host, server.port) == (host, port)


@pytest.mark.parametrize(
    ("listen", "message"),
    [
        ("8080", "'8080' is not HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080)"),
        ("localhost:0", "'localhost:0': port 0 is not in 1-65535"),
        ("localhost:65536", "'localhost:65536': port 65536 is not in 1-65535"),
        ("::1:8080", "'::1:8080' is not HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080)"),
        ("[nope]:80", "'[nope]:80': 'nope' is not an IPv6 address"),
    ],
)
def test_bad_listen(listen: str, message: str) -> None:
    assert problems(f"server:\n  listen: '{listen}'\n") == [
        f"ciwatch.yaml:2 server.listen: {message}"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///ciwatch.db",
        "sqlite:////var/lib/ciwatch/ci.db",
        "sqlite+aiosqlite:///ci.db",
        "postgresql://ci@db/ci",
        "postgresql+asyncpg://ci:pw@db:5432/ci",
        "postgres://db/ci",
    ],
)
def test_database_urls(url: str) -> None:
    assert parse(f"database: '{url}'").database == url


# --- ${VAR} expansion ----------------------------------------------------------------------------


def _token(value: str, env: dict[str, str]) -> str | None:
    text = f"sources:\n  - {{name: gl, type: gitlab, projects: [g/a], token: '{value}'}}\n"
    return parse(text, env).sources[0].token


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("${T}", {"T": "abc"}, "abc"),
        ("pre-${T}-post", {"T": "abc"}, "pre-abc-post"),
        ("${A}${B}", {"A": "1", "B": "2"}, "12"),
        ("${T:-fallback}", {}, "fallback"),
        ("${T:-fallback}", {"T": ""}, "fallback"),
        ("${T:-fallback}", {"T": "set"}, "set"),
        ("${T:-}", {}, None),  # empty secret means unset
        ("$${T}", {"T": "abc"}, "${T}"),
        ("a$$${T}", {"T": "x"}, "a$${T}"),
        ("cost $5 and $T", {}, "cost $5 and $T"),
        ("${T}", {"T": "${OTHER}"}, "${OTHER}"),  # values are not expanded again
        ("${T:-a:-b}", {}, "a:-b"),
    ],
)
def test_expansion(value: str, env: dict[str, str], expected: str | None) -> None:
    assert _token(value, env) == expected


def test_expanded_strings_are_converted_to_the_field_type() -> None:
    env = {"N": "32", "V": "false", "I": "90", "J": "0.5"}
    text = (
        "collection: {concurrency: '${N}', jitter: '${J}'}\n"
        "sources:\n  - {name: gl, type: gitlab, projects: [g/a], verify_tls: '${V}',"
        " interval: '${I}', active_interval: '${I:-5}s'}\n"
    )
    s = parse(text, env)
    assert s.collection.concurrency == 32
    assert s.collection.jitter == 0.5
    source = s.sources[0]
    assert source.verify_tls is False
    assert source.interval == timedelta(seconds=90)
    assert source.active_interval == timedelta(seconds=90)


def test_keys_are_not_expanded() -> None:
    assert problems("${X}: 1\n", {"X": "database"}) == ['ciwatch.yaml:1 ["${X}"]: unknown key']


def test_unset_variables_are_reported_with_their_lines() -> None:
    text = (
        "server:\n"
        "  username: admin\n"
        "  password: ${CIWATCH_PASSWORD}\n"
        "sources:\n"
        "  - name: gl\n"
        "    type: gitlab\n"
        "    token: ${GITLAB_TOKEN}\n"
        "    url: https://${GL_HOST}/${GL_PATH:-}\n"
        "    projects: ['${GROUP}/app']\n"
    )
    assert problems(text) == [
        "ciwatch.yaml:3 server.password: environment variable CIWATCH_PASSWORD is not set",
        "ciwatch.yaml:7 sources[0].token: environment variable GITLAB_TOKEN is not set",
        "ciwatch.yaml:8 sources[0].url: environment variable GL_HOST is not set",
        "ciwatch.yaml:9 sources[0].projects[0]: environment variable GROUP is not set",
    ]


def test_malformed_reference() -> None:
    text = (
        f"sources:\n  - {GITLAB}\n  - {{name: x, type: gitlab, groups: [g], url: 'https://${{H'}}\n"
    )
    assert problems(text) == [
        "ciwatch.yaml:3 sources[1].url: malformed ${...}: write ${NAME} or ${NAME:-default} "
        "(and $${ for a literal ${)"
    ]


def test_load_settings_reads_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "ciwatch.yaml"
    path.write_text("database: ${CIWATCH_TEST_DB}\n")
    monkeypatch.setenv("CIWATCH_TEST_DB", "sqlite:///from-env.db")
    assert load_settings(path).database == "sqlite:///from-env.db"
    assert load_settings(path, {"CIWATCH_TEST_DB": "sqlite:///given.db"}).database.endswith(
        "given.db"
    )
    monkeypatch.delenv("CIWATCH_TEST_DB")
    with pytest.raises(ConfigError, match="CIWATCH_TEST_DB is not set"):
        load_settings(path)


def test_config_path() -> None:
    assert config_path({}) == Path("ciwatch.yaml")
    assert config_path({"CIWATCH_CONFIG": "/etc/ciwatch.yaml"}) == Path("/etc/ciwatch.yaml")


# --- errors: every kind, with line and path ------------------------------------------------------

BROKEN = """\
database: mysql://ci:hunter2@db/ci
server:
  lstn: "127.0.0.1:8080"
sources:
  - name: gl
    type: gitlub
    projects: [a/b]
  - name: gh
    type: github
    token: "${GH_TOKEN}"
    interval: 5 minutes
    repos: [octo/app]
  - name: gh
    type: github
    repos: [octo/other]
    active_interval: 2m
alerts:
  group_wait: 30s
  group_wait: 1m
  channels:
    - {name: mail, type: email, smtp_url: "smtp://h", from: ci@example.com, to: [dev@example.com]}
    - {name: ding, type: dingtalk}
  routes:
    - {channels: [mail, slak]}
  frobnicate: true
"""


def test_every_problem_at_once_sorted_by_line() -> None:
    assert problems(BROKEN) == [
        "ciwatch.yaml:1 database: database scheme 'mysql' is not supported "
        "(use sqlite:///PATH or postgresql://USER@HOST/DB)",
        "ciwatch.yaml:3 server.lstn: unknown key; did you mean 'listen'?",
        "ciwatch.yaml:6 sources[0].type: 'gitlub' is not one of gitlab, github, jenkins, azure; "
        "did you mean 'gitlab'?",
        "ciwatch.yaml:10 sources[1].token: environment variable GH_TOKEN is not set",
        "ciwatch.yaml:11 sources[1].interval: '5 minutes' is not a duration "
        "(use e.g. 30s, 5m, 4h, 1d)",
        "ciwatch.yaml:13 sources[2].name: duplicate name 'gh' (also sources[1])",
        "ciwatch.yaml:16 sources[2].active_interval: 2m is longer than interval (1m); "
        "it must be at most that",
        "ciwatch.yaml:19 alerts.group_wait: duplicate key (first at line 18)",
        "ciwatch.yaml:22 alerts.channels[1].url: required",
        "ciwatch.yaml:24 alerts.routes[0].channels[1]: no channel named 'slak' "
        "(channels: mail, ding)",
        "ciwatch.yaml:25 alerts.frobnicate: unknown key",
    ]


def test_the_filename_is_the_one_given(tmp_path: Path) -> None:
    path = tmp_path / "conf.yaml"
    path.write_text("server:\n  lstn: x\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems == [f"{path}:2 server.lstn: unknown key; did you mean 'listen'?"]
    assert str(caught.value) == f"{path}:2 server.lstn: unknown key; did you mean 'listen'?"


def test_unknown_key_points_at_the_key_line() -> None:
    text = "collection:\n  concurrency: 4\n  timout:\n    30s\n"
    assert problems(text) == [
        "ciwatch.yaml:3 collection.timout: unknown key; did you mean 'timeout'?"
    ]


def test_missing_key_uses_the_nearest_parent_line() -> None:
    text = "alerts:\n  channels:\n    - name: m\n      type: email\n      to: [a@b.c]\n"
    assert problems(text) == [
        "ciwatch.yaml:3 alerts.channels[0].smtp_url: required",
        "ciwatch.yaml:3 alerts.channels[0].from: required",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "sources:\n  - {name: x, type: gitlub}\n",
            [
                "ciwatch.yaml:2 sources[0].type: 'gitlub' is not one of gitlab, github, "
                "jenkins, azure; did you mean 'gitlab'?"
            ],
        ),
        (
            "sources:\n  - name: x\n    projects: [a/b]\n",
            ["ciwatch.yaml:2 sources[0].type: required (one of gitlab, github, jenkins, azure)"],
        ),
        (
            "alerts:\n  channels:\n    - {name: x, type: teams, url: 'https://x'}\n",
            [
                "ciwatch.yaml:3 alerts.channels[0].type: 'teams' is not one of email, dingtalk,"
                " wecom, slack, webhook, feishu, apprise"
            ],
        ),
        (
            "alerts:\n  channels:\n    - {name: x}\n",
            [
                "ciwatch.yaml:3 alerts.channels[0].type: required (one of email, dingtalk, wecom,"
                " slack, webhook, feishu, apprise)"
            ],
        ),
    ],
)
def test_union_tag_errors(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_fields_of_the_chosen_type_only() -> None:
    text = "sources:\n  - name: x\n    type: github\n    projects: [a/b]\n    repos: [a/b]\n"
    assert problems(text) == ["ciwatch.yaml:4 sources[0].projects: unknown key"]


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("sources: {a: 1}", 1, "sources: expected a list, got a mapping"),
        ("sources: [gitlab]", 1, "sources[0]: expected a mapping, got a string"),
        ("sources:\n  -", 2, "sources[0]: expected a mapping, got an empty value"),
        ("server: []", 1, "server: expected a mapping, got a list"),
        ("server: {username: 12, password: x}", 1, "server.username: expected a string, got an "
         "integer (put it in quotes)"),
        ("server: {protect_metrics: maybe}", 1, "server.protect_metrics: expected true or false, "
         "got 'maybe'"),
        ("collection: {concurrency: many}", 1, "collection.concurrency: expected an integer, got "
         "'many'"),
        ("collection: {concurrency: 0}", 1, "collection.concurrency: must be at least 1"),
        ("collection: {retries: 2.5}", 1, "collection.retries: expected a whole number, got 2.5"),
        ("collection: {jitter: 1.5}", 1, "collection.jitter: must be at most 1"),
        ("collection: {jitter: lots}", 1, "collection.jitter: expected a number, got 'lots'"),
        ("collection: {timeout: 0s}", 1, "collection.timeout: must be longer than 0s"),
        ("collection: {timeout: [1]}", 1, "collection.timeout: expected a duration "
         "(use e.g. 30s, 5m, 4h, 1d), got a list"),
        ("alerts: {group_wait: -1s}", 1, "alerts.group_wait: '-1s' is not a duration "
         "(use e.g. 30s, 5m, 4h, 1d)"),
        ("alerts: {routes: [{channels: []}]}", 1, "alerts.routes[0].channels: must have at "
         "least 1 item"),
        ("alerts:\n  group_wait: 1s\n  on_start: quiet", 3, "alerts.on_start: 'quiet' is not one "
         "of summary, each, none"),
        ("alerts: {on_start: true}", 1, "alerts.on_start: True is not one of summary, each, none"),
        ("alerts: {routes: [{channels: [x], events: [broke]}]}", 1,
         "alerts.routes[0].events[0]: 'broke' is not one of broken, still_failing, recovered, "
         "stuck, queued, unhealthy, healthy"),
        # A `type` that is not a word is refused as one, not a crash (hypothesis found it).
        ("sources: [{name: s, type: [gitlab]}]", 1, "sources[0].type: \"['gitlab']\" is not "
         "one of gitlab, github, jenkins, azure; did you mean 'gitlab'?"),
        ("sources: [{name: s, type: {a: 1}}]", 1, "sources[0].type: \"{'a': 1}\" is not one "
         "of gitlab, github, jenkins, azure"),
        ("database: 2024-01-01", 1, "database: expected a string, got a date"),
        ("database: [a]", 1, "database: expected a string, got a list"),
        ("database: ci.db", 1, "database: not a database URL (use sqlite:///PATH or "
         "postgresql://USER@HOST/DB)"),
    ],
)  # fmt: skip
def test_error_messages(body: str, line: int, message: str) -> None:
    found = problems(body + "\n")
    assert f"ciwatch.yaml:{line} {message}" in found


def _source(extra: str, kind: str = "gitlab", watch: str = "projects: [g/app]") -> str:
    return f"sources:\n  - name: s\n    type: {kind}\n    {watch}\n    {extra}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_source("name: x"), "ciwatch.yaml:5 sources[0].name: duplicate key (first at line 2)"),
        (_source("url: ftp://gitlab"), "ciwatch.yaml:5 sources[0].url: 'ftp://gitlab' is not an "
         "http(s) URL"),
        (_source("url: 'https://'"), "ciwatch.yaml:5 sources[0].url: 'https://' is not an http(s) "
         "URL"),
        (_source("backfill: 1001"), "ciwatch.yaml:5 sources[0].backfill: must be at most 1000"),
        (_source("requests_per_second: 0"), "ciwatch.yaml:5 sources[0].requests_per_second: "
         "must be more than 0"),
        (_source("refs: ['']"), "ciwatch.yaml:5 sources[0].refs[0]: must not be empty"),
        (_source("groups: ['a//b']"), "ciwatch.yaml:5 sources[0].groups[0]: 'a//b' is not a "
         "GitLab group path (e.g. platform/tools)"),
        (_source("x: 1", watch="projects: [app]"), "ciwatch.yaml:4 sources[0].projects[0]: 'app' "
         "is not a GitLab project path (e.g. group/sub/app)"),
        (_source("orgs: [a/b]", "github", "repos: [app]"), "ciwatch.yaml:4 sources[0].repos[0]: "
         "'app' is not a GitHub repository as owner/repo"),
        (_source("url: 'https://j'", "jenkins", "jobs: ['/a']"), "ciwatch.yaml:4 "
         "sources[0].jobs[0]: '/a' is not a Jenkins full name (e.g. folder/job)"),
        (_source("builds: 0", "jenkins", "jobs: [a]"), "ciwatch.yaml:2 sources[0].url: required"),
        ("sources:\n  - {name: Git Lab, type: gitlab, groups: [g]}\n", "ciwatch.yaml:2 "
         "sources[0].name: 'Git Lab' is not a valid name (lower-case letters, digits, '_', '.', "
         "'-'; first a letter or digit)"),
        ("sources:\n  - {name: push, type: gitlab, groups: [g]}\n", "ciwatch.yaml:2 "
         "sources[0].name: 'push' is reserved for runs reported with `ciwatch report`"),
    ],
)  # fmt: skip
def test_source_problems(text: str, message: str) -> None:
    assert message in problems(text)


@pytest.mark.parametrize(
    ("kind", "watch"),
    [
        ("gitlab", "projects or groups"),
        ("github", "repos, orgs or users"),
        ("jenkins", "jobs or folders"),
    ],
)
def test_a_source_must_watch_something(kind: str, watch: str) -> None:
    text = f"sources:\n  - name: s\n    type: {kind}\n    url: https://ci.example.com\n"
    assert problems(text) == [
        f"ciwatch.yaml:2 sources[0]: watches nothing: list at least one of {watch}"
    ]


def test_active_interval_must_not_exceed_interval() -> None:
    text = f"sources:\n  - {GITLAB[:-1]}, interval: 30s, active_interval: 1m}}\n"
    assert problems(text) == [
        "ciwatch.yaml:2 sources[0].active_interval: 1m is longer than interval (30s); "
        "it must be at most that"
    ]
    same = parse(f"sources:\n  - {GITLAB[:-1]}, interval: 30s, active_interval: 30s}}\n")
    assert same.sources[0].active_interval == timedelta(seconds=30)


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ("{username: admin}", "server.username: password is missing (set both username and "
         "password, or neither)"),
        ("{password: pw}", "server.password: username is missing (set both username and "
         "password, or neither)"),
        ("{protect_metrics: true}", "server.protect_metrics: needs username and password to be "
         "set"),
        ("{base_url: 'example.com'}", "server.base_url: 'example.com' is not an http(s) URL"),
    ],
)  # fmt: skip
def test_server_problems(server: str, message: str) -> None:
    assert problems(f"server: {server}\n") == [f"ciwatch.yaml:1 {message}"]


def test_jenkins_username_and_token_together() -> None:
    base = "sources:\n  - {name: j, type: jenkins, url: 'https://j', jobs: [a]"
    assert problems(base + ", token: t}\n") == [
        "ciwatch.yaml:2 sources[0].token: username is missing (set both username and token, "
        "or neither)"
    ]
    assert problems(base + ", username: u}\n") == [
        "ciwatch.yaml:2 sources[0].username: token is missing (set both username and token, "
        "or neither)"
    ]


def test_a_problem_caused_by_an_unset_variable_is_not_reported_twice() -> None:
    text = "server:\n  username: admin\n  password: ${PW}\n"
    assert problems(text) == ["ciwatch.yaml:3 server.password: environment variable PW is not set"]


def test_unique_names() -> None:
    text = (
        "sources:\n"
        f"  - {GITLAB}\n"
        "  - {name: gh, type: github, orgs: [o]}\n"
        f"  - {GITLAB}\n"
        "alerts:\n"
        "  channels:\n"
        "    - {name: s, type: slack, url: 'https://hooks.slack.com/a'}\n"
        "    - {name: s, type: apprise, url: 'json://example.com'}\n"
    )
    assert problems(text) == [
        "ciwatch.yaml:4 sources[2].name: duplicate name 'gl' (also sources[0])",
        "ciwatch.yaml:8 alerts.channels[1].name: duplicate name 's' (also alerts.channels[0])",
    ]


def test_route_naming_a_missing_channel() -> None:
    text = (
        "alerts:\n"
        "  channels:\n"
        "    - {name: mail, type: email, smtp_url: 'smtps://h', from: a@b.c, to: [d@e.f]}\n"
        "    - {name: ding, type: dingtalk, url: 'https://oapi.dingtalk.com/robot/send'}\n"
        "  routes:\n"
        "    - channels: [mail]\n"
        "    - channels:\n"
        "        - ding\n"
        "        - slak\n"
    )
    assert problems(text) == [
        "ciwatch.yaml:9 alerts.routes[1].channels[1]: no channel named 'slak' "
        "(channels: mail, ding)"
    ]
    assert problems("alerts:\n  routes: [{channels: [x]}]\n") == [
        "ciwatch.yaml:2 alerts.routes[0].channels[0]: no channel named 'x' (no channels are "
        "defined)"
    ]


def test_route_check_runs_even_when_a_channel_is_invalid() -> None:
    text = (
        "alerts:\n"
        "  channels:\n"
        "    - {name: ding, type: dingtalk, url: 'not a url'}\n"
        "  routes: [{channels: [ding, nope]}]\n"
    )
    assert problems(text) == [
        "ciwatch.yaml:3 alerts.channels[0].url: not an http(s) URL",
        "ciwatch.yaml:4 alerts.routes[0].channels[1]: no channel named 'nope' (channels: ding)",
    ]


def test_model_checks_also_apply_when_built_in_code() -> None:
    with pytest.raises(ValidationError, match="no channel named 'x'"):
        Settings.model_validate({"alerts": {"routes": [{"channels": ["x"]}]}})
    with pytest.raises(ValidationError, match="longer than interval"):
        GitLabSource(name="g", projects=["a/b"], active_interval="2m")
    route = RouteSettings(channels=["a"])
    assert route.events == list(AlertEventKind)


def test_channel_problems() -> None:
    text = (
        "alerts:\n"
        "  channels:\n"
        "    - name: m\n"
        "      type: email\n"
        "      smtp_url: 'http://user:topsecret@mail.example.com'\n"
        "      from: nobody\n"
        "      to: [ok@example.com, 'not an address']\n"
        "    - {name: a, type: apprise, url: 'no scheme'}\n"
        "    - {name: w, type: webhook, url: 'https://h', headers: {X-A: [1]}}\n"
    )
    assert problems(text) == [
        "ciwatch.yaml:5 alerts.channels[0].smtp_url: not an SMTP URL (smtp://HOST:587 or "
        "smtps://HOST:465)",
        "ciwatch.yaml:6 alerts.channels[0].from: 'nobody' is not an e-mail address "
        "(e.g. dev@example.com)",
        "ciwatch.yaml:7 alerts.channels[0].to[1]: 'not an address' is not an e-mail address "
        "(e.g. dev@example.com)",
        "ciwatch.yaml:8 alerts.channels[1].url: not an Apprise URL (SCHEME://...)",
        "ciwatch.yaml:9 alerts.channels[2].headers.X-A: expected a string, got a list",
    ]


def test_email_display_name_and_tls_schemes() -> None:
    text = (
        "alerts:\n  channels:\n"
        "    - {name: m, type: email, smtp_url: 'smtps://u:p@h:465', from: 'CI <ci@x.org>',"
        " to: [a@x.org], subject_prefix: '[ci]'}\n"
    )
    (mail,) = parse(text).alerts.channels
    assert isinstance(mail, EmailChannel)
    assert (mail.from_, mail.subject_prefix) == ("CI <ci@x.org>", "[ci]")


# --- not YAML, empty, missing, odd files ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sources: [\n", "ciwatch.yaml:2 not valid YAML: expected the node content, but found "
         "'<stream end>'"),
        ("a: 1\n  b: 2\n", "ciwatch.yaml:2 not valid YAML: mapping values are not allowed here"),
        ("a:\n\t- b\n", "ciwatch.yaml:2 not valid YAML: found character '\\t' that cannot start "
         "any token"),
        ("a: 1\n---\nb: 2\n", "ciwatch.yaml:2 not valid YAML: but found another document"),
        ("a: *nope\n", "ciwatch.yaml:1 not valid YAML: found undefined alias 'nope'"),
    ],
)  # fmt: skip
def test_not_yaml(text: str, expected: str) -> None:
    assert problems(text) == [expected]


@pytest.mark.parametrize(
    ("text", "got"),
    [("- a\n- b\n", "a list"), ("hello\n", "a string"), ("42\n", "an integer")],
)
def test_top_level_must_be_a_mapping(text: str, got: str) -> None:
    assert problems(text) == [
        "ciwatch.yaml:1 the top level must be a mapping of settings (database, server, "
        f"collection, sources, alerts, metrics, timezone, people, flaky, recovery), got {got}"
    ]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "ciwatch.yaml"
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems == [f"{path}: file not found"]


def test_directory_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(tmp_path)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"database: \xff\xfe\n")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_settings(binary)


def test_empty_file_and_bom(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_settings(empty, {}) == default_settings()
    bom = tmp_path / "bom.yaml"
    bom.write_bytes("\ufeffdatabase: sqlite:///b.db\n".encode())
    assert load_settings(bom, {}).database == "sqlite:///b.db"


def test_odd_yaml_is_reported_not_raised() -> None:
    assert problems("? [a]\n: 1\n") == [
        "ciwatch.yaml:1 a key must be plain text, not a list or mapping"
    ]
    assert problems("database: &a [*a]\n") == [
        "ciwatch.yaml:1 database[0]: an alias refers to itself",
        "ciwatch.yaml:1 database: expected a string, got a list",
    ]
    assert problems("database: !!int abc\n")[0].startswith(
        "ciwatch.yaml:1 database: not valid YAML"
    )
    assert problems("database: !custom x\n")[0].startswith(
        "ciwatch.yaml:1 database: not valid YAML"
    )


def test_anchors_and_merge_keys() -> None:
    text = (
        "sources:\n"
        "  - &gl {name: a, type: gitlab, groups: [g], interval: 5m, active_interval: 1m}\n"
        "  - <<: *gl\n"
        "    name: b\n"
        "    interval: 2m\n"
        "  - <<: [*gl]\n"
        "    name: c\n"
    )
    a, b, c = parse(text).sources
    assert isinstance(c, GitLabSource)
    assert (a.name, a.interval) == ("a", timedelta(minutes=5))
    assert (b.name, b.interval, b.active_interval) == (
        "b",
        timedelta(minutes=2),
        timedelta(minutes=1),
    )
    assert (c.name, c.interval, c.groups) == ("c", timedelta(minutes=5), ["g"])
    # The key is reported where it is written: in the anchored mapping.
    assert problems(text.replace("interval: 2m", "interval: 30s")) == [
        "ciwatch.yaml:2 sources[1].active_interval: 1m is longer than interval (30s); it must be "
        "at most that"
    ]


# --- masked dump ---------------------------------------------------------------------------------


def test_masked_dump_is_normalised_json() -> None:
    dump = masked_dump(parse(DESIGN_EXAMPLE, DESIGN_ENV))
    assert json.loads(json.dumps(dump)) == dump
    assert dump["server"]["password"] == "***"
    assert dump["server"]["report_token"] == "***"
    gitlab = dump["sources"][0]
    assert (gitlab["token"], gitlab["webhook_secret"]) == ("***", "***")
    assert (gitlab["interval"], gitlab["active_interval"]) == ("1m", "15s")
    assert dump["sources"][2]["webhook_secret"] is None
    assert dump["collection"]["timeout"] == "30s"
    assert dump["alerts"]["stuck_after"] == "1h"
    channels = {channel["name"]: channel for channel in dump["alerts"]["channels"]}
    assert channels["mail"]["smtp_url"] == "smtp://user:***@mail.example.com:587"
    assert channels["mail"]["from"] == "ci@example.com"
    assert channels["ding"]["url"] == "https://oapi.dingtalk.com/robot/send?access_token=***"
    assert channels["ding"]["secret"] == "***"
    assert channels["wecom"]["url"].endswith("send?key=***")
    assert channels["slack"]["url"] == "https://hooks.slack.com/services/***/***/***"
    assert channels["other"]["url"] == "tgram://***"
    assert dump["alerts"]["routes"][0]["events"] == ["broken", "recovered", "stuck"]
    assert masked_dump(default_settings())["database"] == "sqlite:///ciwatch.db"


# -- anchors, defaults, hints (issue 12) ---------------------------------------------------------

ANCHORED = """\
x-gitlab: &gitlab
  type: gitlab
  url: https://gitlab.example.com
  token: glpat-x
defaults:
  interval: 2m
  requests_per_second: 5
  x-note: ignored too
sources:
  - {<<: *gitlab, name: a, projects: [g/a]}
  - {<<: *gitlab, name: b, projects: [g/b], interval: 30s, active_interval: 10s, x-team: web}
alerts:
  x-shared: &hook {type: webhook, url: "https://hooks.example.com/ci"}
  channels:
    - {<<: *hook, name: hook, headers: {x-api-key: kept}}
"""


def test_x_keys_are_the_users_and_defaults_apply_to_every_source() -> None:
    settings = parse(ANCHORED)
    a, b = settings.sources
    assert (a.url, a.interval, a.requests_per_second) == (
        "https://gitlab.example.com",
        timedelta(minutes=2),
        5.0,
    )
    assert (b.interval, b.active_interval, b.requests_per_second) == (
        timedelta(seconds=30),
        timedelta(seconds=10),
        5.0,
    )
    (hook,) = settings.alerts.channels
    assert isinstance(hook, WebhookChannel)
    assert dict(hook.headers) == {"x-api-key": "kept"}  # only keys of settings are the user's


def test_a_bad_default_is_reported_once_where_it_was_written() -> None:
    text = (
        "defaults: {interval: '5 minutes', colur: red, name: x}\n"
        "sources:\n"
        "  - {name: a, type: gitlab, projects: [g/a]}\n"
        "  - {name: b, type: gitlab, projects: [g/b]}\n"
    )
    assert problems(text) == [
        "ciwatch.yaml:1 defaults.colur: unknown source default",
        "ciwatch.yaml:1 defaults.name: unknown source default",
        "ciwatch.yaml:1 defaults.interval: '5 minutes' is not a duration (use e.g. 30s, 5m, 4h, "
        "1d)",
    ]
    assert problems("defaults: [interval]\n") == [
        "ciwatch.yaml:1 defaults: expected a mapping, got a list"
    ]


def test_every_problem_in_one_pass_with_hints() -> None:
    """The keys of a source whose type is wrong are checked too (they came only once the type
    was fixed), and unknown keys get the closest known one."""
    text = (
        "databse: sqlite:///x.db\n"
        "sources:\n"
        "  - {name: gl, type: gitlub, url: 'https://g', projects: [a/b], intervall: 5m}\n"
    )
    assert problems(text) == [
        "ciwatch.yaml:1 databse: unknown key; did you mean 'database'?",
        "ciwatch.yaml:3 sources[0].intervall: unknown key; did you mean 'interval'?",
        "ciwatch.yaml:3 sources[0].type: 'gitlub' is not one of gitlab, github, jenkins, azure; "
        "did you mean 'gitlab'?",
    ]


def test_config_check_json_always_prints_json(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ciwatch.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {lstn: x}\n")
    result = CliRunner().invoke(app, ["config", "check", "--config", str(bad), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "ok": False,
        "problems": [
            {
                "file": str(bad),
                "line": 1,
                "key": "server.lstn",
                "message": "unknown key; did you mean 'listen'?",
            }
        ],
    }
    assert "server.lstn: unknown key" in result.stderr

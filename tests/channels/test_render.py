"""render.py: what messages say in every format, and that CI values cannot inject markup."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from ciwatch.channels import Message, Notice, dingtalk, email, make_test_message, slack, wecom
from ciwatch.channels import render as r

from .conftest import DASHBOARD, RUN_URL, grouped, hostile, notice, single


def _mrkdwn_texts(value: object) -> list[str]:
    """Every mrkdwn text object in Slack blocks (plain_text is never formatted)."""
    if isinstance(value, dict):
        if value.get("type") == "mrkdwn":
            return [value["text"]]
        return [text for item in value.values() for text in _mrkdwn_texts(item)]
    if isinstance(value, list):
        return [text for item in value for text in _mrkdwn_texts(item)]
    return []


def _slack_all(message: Message) -> str:
    """The fallback text and every mrkdwn text of the blocks."""
    texts = _mrkdwn_texts(slack.render_slack_blocks(message))
    return "\n".join([slack.render_slack_text(message), *texts])


FORMATS: dict[str, Callable[[Message], str]] = {
    "text": r.render_text,
    "robot_text": r.render_robot_text,
    "dingtalk": lambda m: dingtalk.markdown(m),
    "wecom": lambda m: wecom.markdown(m),
    "slack": slack.render_slack_text,
    "slack_blocks": lambda m: json.dumps(slack.render_slack_blocks(m), ensure_ascii=False),
    "html": email.render_html,
}


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_broken_message_names_everything(fmt: str) -> None:
    out = FORMATS[fmt](single("broken"))
    if fmt == "slack":  # the fallback is the title and a link
        assert "Broken" in out and "group/app" in out and RUN_URL in out
        return
    for expected in ("🔴", "Broken", "group/app", "main", "#17", "test, lint", "alice", RUN_URL):
        assert expected in out, expected
    assert "failed" in out
    assert "4m 50s" in out  # duration
    assert DASHBOARD in out


@pytest.mark.parametrize(
    ("kind", "emoji", "word"),
    [
        ("broken", "🔴", "Broken"),
        ("still_failing", "❌", "Still failing"),
        ("recovered", "✅", "Recovered"),
        ("stuck", "⏳", "Stuck"),
        ("queued", "🕒", "Queued too long"),
    ],
)
def test_titles_say_what_happened(kind: str, emoji: str, word: str) -> None:
    assert r.render_title(single(kind)) == f"{emoji} {word}: group/app on main"


def test_recovery_says_how_long_it_was_red_and_flaky() -> None:
    text = r.render_text(single("recovered", flaky=True))
    assert "Red for: 2h 03m" in text
    assert "Likely flaky: recovered on the same commit" in text
    assert "Likely flaky" not in r.render_text(single("recovered"))


@pytest.mark.parametrize(("kind", "label"), [("stuck", "Running for"), ("queued", "Queued for")])
def test_stuck_and_queued_say_for_how_long(kind: str, label: str) -> None:
    assert f"{label}: 1h 05m" in r.render_text(single(kind))


def test_provider_status_shown_when_it_differs() -> None:
    text = r.render_text(single(run_fields={"provider_status": "completed/timed_out"}))
    assert "Status: failed (completed/timed_out)" in text


def test_run_without_number_uses_its_id_and_many_jobs_are_capped() -> None:
    jobs = tuple(f"job-{i}" for i in range(25))
    text = r.render_text(single(failing_jobs=jobs, run_fields={"number": None}))
    assert "#1001" in text
    assert "job-9" in text and "job-10" not in text and "(+15 more)" in text


def test_test_message() -> None:
    message = make_test_message(dashboard_url="https://ciwatch.example.com/")
    assert r.render_title(message) == "🔔 Test message from ciwatch"
    assert "the channel works" in r.render_text(message)
    assert slack.render_slack_blocks(message)[0]["type"] == "header"


@pytest.mark.parametrize(
    ("message", "title"),
    [
        (grouped(5), "🔴 5 refs broke in group/*"),
        (grouped(3, "recovered"), "✅ 3 refs recovered in group/*"),
        (grouped(2, "stuck", group=""), "⏳ 2 runs stuck"),
        (
            Message((notice("recovered"), notice("broken"), notice("broken")), group="team"),
            "🔴 3 alerts in team: 2 broken, 1 recovered",
        ),
    ],
)
def test_grouped_titles(message: Message, title: str) -> None:
    assert r.render_title(message) == title


@pytest.mark.parametrize("fmt", ["text", "dingtalk", "wecom", "slack_blocks", "html"])
def test_grouped_messages_have_one_line_per_notice(fmt: str) -> None:
    out = FORMATS[fmt](grouped(5))
    for index in range(5):
        assert f"group/app-{index}" in out
        assert f"#{100 + index}" in out


def test_grouped_slack_blocks_stay_under_slacks_limit() -> None:
    blocks = slack.render_slack_blocks(grouped(120))
    assert len(blocks) <= 50
    assert blocks[-1]["type"] == "context"
    assert "75 more" in blocks[-1]["elements"][0]["text"]


# --- hostile values ---------------------------------------------------------------------------


def test_hostile_values_in_html_are_escaped() -> None:
    out = email.render_html(hostile())
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<b>x</b>" not in out and "&lt;b&gt;x&lt;/b&gt;" in out
    assert "javascript:" not in out.replace("(javascript:alert(1))", "")  # only as text
    assert 'href="javascript' not in out
    assert "&lt;http://evil.example|click&gt;" in out


@pytest.mark.parametrize("markdown", [dingtalk.markdown, wecom.markdown])
def test_hostile_values_in_markdown_are_inert(markdown: Callable[[Message], str]) -> None:
    out = markdown(hostile())
    assert "<script>" not in out and "<b>" not in out
    assert "*bold*" not in out and "∗bold∗" in out
    assert "[x](" not in out and "](javascript" not in out
    assert "`rm" not in out and "_it_" not in out and "~gone~" not in out
    assert "<http" not in out
    # only our own markup remains: bold labels and the dashboard link
    links = re.findall(r"\[[^\]]*\]\(([^)]*)\)", out)
    assert links == [DASHBOARD]


def test_hostile_values_in_slack_are_inert() -> None:
    message = hostile()
    out = _slack_all(message)
    assert "<!channel>" not in out and "&lt;!channel&gt;" in out
    assert "<@U123>" not in out
    assert "<http://evil.example|click>" not in out
    assert "*bold*" not in out and "`rm" not in out and "~gone~" not in out
    assert "<script>" not in out
    # the only links are ours
    links = re.findall(r"<(https?://[^|>]*)\|", out)
    assert set(links) == {DASHBOARD}
    header = slack.render_slack_blocks(message)[0]["text"]["text"]
    assert "<" not in header and ">" not in header


def test_robot_text_has_no_mention_syntax() -> None:
    out = r.render_robot_text(hostile())
    assert "<@U123>" not in out and "<!channel>" not in out


def test_values_cannot_break_lines() -> None:
    message = single(project="group/app\n### injected\r\n- item", ref="main\u2028x")
    for fmt in ("text", "dingtalk", "wecom"):
        out = FORMATS[fmt](message)
        assert "\n### injected" not in out
        assert "\n- item" not in out
        assert "\u2028" not in out


def test_underscores_inside_words_are_kept() -> None:
    out = wecom.markdown(single(project="group/my_app_name", ref="_tmp_"))
    assert "group/my_app_name" in out
    assert "_tmp_" not in out


def test_long_values_are_cut() -> None:
    text = r.render_title(single(project="a" * 5000))
    assert len(text) < 300 and text.endswith("on main")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://ci.example.com/a/b?x=1#f", "https://ci.example.com/a/b?x=1#f"),
        ("http://ci.example.com/run (1)|x>y", "http://ci.example.com/run%20%281%29%7Cx%3Ey"),
        ("javascript:alert(1)", None),
        ("data:text/html,<b>", None),
        ("/relative/path", None),
        ("https:///no-host", None),
        ("", None),
        (None, None),
    ],
)
def test_safe_url(url: str | None, expected: str | None) -> None:
    assert r.safe_url(url) == expected


@pytest.mark.parametrize("limit", [50, 100, 333, 4096])
def test_truncate_utf8_keeps_whole_lines_under_the_limit(limit: int) -> None:
    text = "\n".join(f"- 🔴 línea número {i} 中文" for i in range(400))
    tail = "… see https://ci.example.com/x"
    out = r.truncate_utf8(text, limit, tail)
    assert len(out.encode("utf-8")) <= limit
    assert out.endswith(tail) or limit < len(tail.encode())
    body = out.removesuffix(tail).rstrip("\n")
    if body:
        assert text.startswith(body)


def test_truncate_utf8_leaves_short_text_alone() -> None:
    assert r.truncate_utf8("short", 100, "…") == "short"


def test_notice_kind_is_checked() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        Notice("exploded", "s", "p", "r", None)
    with pytest.raises(ValueError, match="at least one notice"):
        Message(())


def test_render_is_pure() -> None:
    """render.py imports nothing that does I/O (it may be used anywhere)."""
    tree = ast.parse(Path(r.__file__).read_text())
    names = {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    } | {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    allowed = {
        "__future__",
        "html",
        "re",
        "collections.abc",
        "dataclasses",
        "datetime",
        "typing",
        "urllib.parse",
        "ciwatch.channels.base",
        "ciwatch.timeutil",  # pure too: the configured zone's time format
        "ciwatch.domain",  # pure data (the `Run` of a notice)
        "ciwatch.alerting.kinds",  # pure too: each kind's wording
    }
    assert names <= allowed, names - allowed

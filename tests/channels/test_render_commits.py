"""What a breaking message says about the commit, its author, the range since the last green
run and the failing tests, in every format (issue 13)."""

from __future__ import annotations

from ciwatch.channels import dingtalk, email, slack
from ciwatch.channels import render as r
from ciwatch.channels.base import Message

from .conftest import notice, single

COMMIT = {
    "sha": "c" * 40,
    "commit_title": "Parse *empty* <input>",
    "commit_author": "Ada Lovelace",
    "commit_email": "ada@example.com",
    "tests_total": 120,
    "tests_failed": 3,
    "tests_skipped": 2,
    "tests_failing": ("parser::empty_input", "parser::nested", "lexer::tokens"),
}


def broken() -> Message:
    return single(run_fields=COMMIT, green_sha="a" * 40)


def test_plain_text_names_commit_author_range_and_tests() -> None:
    text = r.render_text(broken())
    assert "Commit: cccccccccccc Parse *empty* <input>" in text
    assert "Author: Ada Lovelace <ada@example.com>" in text
    assert "Since green: aaaaaaaaaaaa..cccccccccccc" in text
    assert (
        "Tests: 3 tests failed: parser::empty_input, parser::nested, lexer::tokens "
        "(of 120; 2 skipped)" in text
    )


def test_the_range_links_the_vendors_compare_page() -> None:
    html = email.render_html(broken())
    assert f"https://gitlab.example.com/group/app/-/compare/{'a' * 40}...{'c' * 40}" in html
    gh = single(
        run_fields={
            **COMMIT,
            "provider": "github",
            "url": "https://github.com/octo/repo/actions/runs/5",
        },
        green_sha="a" * 40,
    )
    assert f"https://github.com/octo/repo/compare/{'a' * 40}...{'c' * 40}" in email.render_html(gh)
    jenkins = single(
        run_fields={**COMMIT, "provider": "jenkins", "url": "https://ci.example.com/job/a/5/"},
        green_sha="a" * 40,
    )
    assert "/compare/" not in email.render_html(jenkins)


def test_ci_values_stay_inert_in_every_format() -> None:
    message = broken()
    assert "*empty*" not in dingtalk.markdown(message)
    assert "<input>" not in slack.render_slack_text(message)
    assert "&lt;input&gt;" in email.render_html(message)


def test_a_grouped_line_names_the_author_and_failed_tests() -> None:
    message = Message((notice(run_fields=COMMIT), notice(run_fields=COMMIT)), group="group/*")
    text = r.render_text(message)
    assert "by Ada Lovelace <ada@example.com>" in text
    assert "3 tests failed: parser::empty_input" in text


def test_tests_sentence() -> None:
    run = notice(run_fields=COMMIT).run
    assert run is not None
    assert r.tests_sentence(run).startswith("3 tests failed")
    green = notice(run_fields={"tests_total": 10, "tests_failed": 0}).run
    assert green is not None and r.tests_sentence(green) == "10 tests passed"
    none = notice().run
    assert none is not None and r.tests_sentence(none) == ""
    many = notice(run_fields={"tests_failed": 9, "tests_failing": tuple(f"t{i}" for i in range(9))})
    assert many.run is not None and "+4 more" in r.tests_sentence(many.run)

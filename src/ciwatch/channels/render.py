"""What every channel's rendering shares: the wording of a `Message` (title, facts, the lines of a
group), the escaping of untrusted values per format, the `Format`s several channels use (plain
text, robot text, Markdown) and the size helpers. Pure: no I/O.

Each channel builds its own request body from these in its own module (Slack's Block Kit in
`slack.py`, the e-mail's HTML in `email.py`, Feishu's post in `feishu.py`, ...).

Every value that came from a CI system (project, ref, job names, author, workflow, URLs) is
untrusted and neutralised for the target format:

- HTML: `html.escape` (quotes too); links only for http(s) URLs.
- Markdown (robots): the robots document no escape character, so the characters that make
  markup (`* _ ` [ ] < > ~ | \\`) are replaced by look-alikes (`∗ ˍ ˋ ［ ］ ＜ ＞ ∼ │ ∖`); an
  underscore inside a word (`my_app`) is kept, since it cannot start emphasis there.
- Slack mrkdwn: `& < >` become entities (so `<!channel>` and `<url|text>` cannot be injected),
  and `* _ ~ `` ` get the same look-alikes.
- Plain text: whitespace (newlines included) collapsed to one space, so a value cannot start a
  line of its own; for robots' plain text `< >` get look-alikes too (WeCom's `<@userid>`).

Every value is also cut to a sane length, and lists of failing jobs are capped.

A message of `at_start` notices (`Message.at_start`) is the summary of the refs that were
already failing when ciwatch started: `🔴 5 refs were already failing when ciwatch started`,
then a line for each of the first `START_MAX_REFS` refs and `… and N more`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from urllib.parse import quote, urlsplit

from ciwatch.alerting.kinds import WORDING
from ciwatch.channels.base import HEALTH_KINDS, Message, Notice
from ciwatch.domain import CommitRange, Run
from ciwatch.timeutil import human_duration, local_time

# The wording of each notice kind, from its entry in alerting/kinds.py.
EMOJI = {kind: wording.emoji for kind, wording in WORDING.items()}
WORD = {kind: wording.word for kind, wording in WORDING.items()}
# "5 refs broke in group/*"
GROUP_PHRASE = {kind: wording.group_phrase for kind, wording in WORDING.items()}
# Most severe first: the emoji of a mixed group is that of its most severe notice.
SEVERITY = tuple(sorted(WORDING, key=lambda kind: WORDING[kind].severity))
ELAPSED_LABEL = {
    kind: wording.elapsed_label
    for kind, wording in WORDING.items()
    if wording.elapsed_label is not None
}

MAX_VALUE = 200
MAX_DETAIL = 500  # an error text (the CI server's answer)
MAX_JOB_NAME = 100
MAX_JOBS = 10
MAX_TEST_NAME = 100
MAX_TEST_NAMES = 5  # of the up to 20 stored; the project page shows them all
MAX_TESTS_TEXT = MAX_TEST_NAMES * (MAX_TEST_NAME + 2) + 80
MAX_RANGE_SHOWN = 5  # commits since green a message lists (of the up to 20 stored)
MAX_RANGE_TEXT = MAX_RANGE_SHOWN * (12 + MAX_VALUE // 2 + 60) + 40
START_MAX_REFS = 10  # the refs a start summary names; the rest are counted
TEST_TEXT = "This is a test message from ciwatch: the channel works."


# --- untrusted values and links -----------------------------------------------------------


@dataclass(frozen=True)
class Val:
    """A value from a CI system: put on one line, cut to `limit`, escaped for the format."""

    text: str
    limit: int = MAX_VALUE


@dataclass(frozen=True)
class Link:
    """A link whose URL came from a CI system or the configuration; shown only if http(s)."""

    label: str | Val
    url: str | None


Part = str | Val | Link  # a plain str is ciwatch's own text


def one_line(value: str, limit: int = MAX_VALUE) -> str:
    """`value` with every run of whitespace or control characters as one space, cut to `limit`
    characters with an ellipsis."""
    text = " ".join(_CONTROL.sub(" ", value).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# An underscore that touches a non-word character (or an edge) can open or close emphasis.
_LOOSE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_MARKDOWN_LOOKALIKES = str.maketrans(
    {
        "*": "∗",
        "`": "ˋ",
        "[": "［",
        "]": "］",
        "<": "＜",
        ">": "＞",
        "~": "∼",
        "|": "│",
        "\\": "∖",
    }
)
_SLACK_LOOKALIKES = str.maketrans({"*": "∗", "`": "ˋ", "~": "∼"})
_ANGLE_LOOKALIKES = str.maketrans({"<": "＜", ">": "＞"})


def escape_markdown(value: str) -> str:
    """A CI value made inert in DingTalk/WeCom Markdown (see the module docstring)."""
    return _LOOSE_UNDERSCORE.sub("ˍ", value.translate(_MARKDOWN_LOOKALIKES))


def escape_slack(value: str) -> str:
    """A CI value made inert in Slack mrkdwn: entities for `& < >`, look-alikes for markup."""
    text = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _LOOSE_UNDERSCORE.sub("ˍ", text.translate(_SLACK_LOOKALIKES))


def escape_robot_text(value: str) -> str:
    """A CI value for a robot's plain-text message: no `<@user>` mentions."""
    return value.translate(_ANGLE_LOOKALIKES)


# Characters left as they are in a URL; everything else (spaces, quotes, `<>|()`, non-ASCII) is
# percent-encoded so the URL cannot end the link syntax of any format early.
_URL_SAFE = "/:?#[]@!$&'*+,;=%~-._"


def safe_url(url: str | None) -> str | None:
    """`url` if it is an absolute http(s) URL, with unsafe characters percent-encoded; else
    None (a `javascript:` or relative URL is never linked)."""
    if not url:
        return None
    text = url.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return quote(text, safe=_URL_SAFE)


# --- what a notice says, format-neutral ----------------------------------------------------


@dataclass(frozen=True)
class Fact:
    label: str
    parts: tuple[Part, ...]


def headline(notice: Notice) -> list[Part]:
    """`🔴 Broken: group/app on main`."""
    emoji = EMOJI[notice.kind]
    if notice.kind == "test":
        return [f"{emoji} Test message from ciwatch"]
    if notice.kind in HEALTH_KINDS:
        return [f"{emoji} {WORD[notice.kind]}: ", *subject(notice)]
    flaky = "[likely flaky] " if notice.flaky_label else ""
    return [
        f"{emoji} {flaky}{WORD[notice.kind]}: ",
        Val(notice.project),
        " on ",
        Val(notice.ref),
    ]


def subject(notice: Notice) -> list[Part]:
    """What an `unhealthy` notice is about: `source gl, target group/app`, `source jk
    (discovery)`, `channel slack`, `the store`."""
    if notice.source == "ciwatch" and notice.project == "store":
        return ["the ciwatch store"]
    if notice.source == "ciwatch" and notice.project.startswith("channel:"):
        return ["channel ", Val(notice.project.removeprefix("channel:"))]
    if not notice.project:
        return ["source ", Val(notice.source), " (discovery)"]
    return ["source ", Val(notice.source), ", target ", Val(notice.project)]


def group_title(message: Message) -> list[Part]:
    """`🔴 5 refs broke in group/*`, or `🔴 4 alerts in group/*: 3 broken, 1 recovered`."""
    kinds = [notice.kind for notice in message.notices]
    worst = min(kinds, key=SEVERITY.index)
    count = len(kinds)
    if len(set(kinds)) == 1:
        parts: list[Part] = [f"{EMOJI[worst]} {count} {GROUP_PHRASE[worst]}"]
        if message.group:
            parts += [" in ", Val(message.group)]
        return parts
    parts = [f"{EMOJI[worst]} {count} alerts"]
    if message.group:
        parts += [" in ", Val(message.group)]
    tally = ", ".join(
        f"{kinds.count(kind)} {WORD[kind].lower()}" for kind in SEVERITY if kind in kinds
    )
    return [*parts, f": {tally}"]


def start_phrase(count: int) -> str:
    """`5 refs were already failing when ciwatch started`."""
    refs = "1 ref was" if count == 1 else f"{count} refs were"
    return f"{refs} already failing when ciwatch started"


def start_sentence(message: Message) -> list[Part]:
    """The start summary in one line, naming the first `START_MAX_REFS` refs:
    `5 refs were already failing when ciwatch started: group/app main, ... and 2 more`."""
    parts: list[Part] = [f"{start_phrase(len(message.notices))}: "]
    for i, notice in enumerate(message.notices[:START_MAX_REFS]):
        parts += [", " if i else "", Val(notice.project), " ", Val(notice.ref)]
    rest = start_rest(message)
    return [*parts, f" and {rest} more"] if rest else parts


def start_rest(message: Message) -> int:
    """How many refs of a start summary are counted rather than listed."""
    return max(len(message.notices) - START_MAX_REFS, 0)


def start_more(message: Message) -> str:
    return f"… and {start_rest(message)} more"


def title_parts(message: Message) -> list[Part]:
    if message.at_start:
        return [f"{EMOJI['broken']} {start_phrase(len(message.notices))}"]
    return group_title(message) if message.grouped else headline(message.notices[0])


def listed(message: Message) -> tuple[Notice, ...]:
    """The notices a message shows a line each for: all of a group, the first
    `START_MAX_REFS` of a start summary (see `start_more` for the rest)."""
    return message.notices[:START_MAX_REFS] if message.at_start else message.notices


def as_lines(message: Message) -> bool:
    """Whether the message is a list of one-line notices (a group or a start summary), not
    one notice's facts."""
    return message.grouped or message.at_start


def _run_label(notice: Notice) -> Val | str:
    run = notice.run
    if run is None:
        return "run"
    return f"#{run.number}" if run.number is not None else Val(f"#{run.run_id}")


def _jobs(jobs: Sequence[str]) -> Val:
    shown = [one_line(job, MAX_JOB_NAME) for job in jobs[:MAX_JOBS]]
    more = f" (+{len(jobs) - MAX_JOBS} more)" if len(jobs) > MAX_JOBS else ""
    return Val(", ".join(shown) + more, limit=MAX_JOBS * (MAX_JOB_NAME + 2) + 20)


def facts(notice: Notice, zone: tzinfo = UTC) -> list[Fact]:
    """The label/value lines describing one notice; times are written in `zone`."""
    if notice.kind == "test":
        return [Fact("Message", (TEST_TEXT,))]
    out: list[Fact] = []
    if notice.detail:
        out.append(Fact("Error", (Val(notice.detail, limit=MAX_DETAIL),)))
    run = notice.run
    if run is not None:
        run_parts: list[Part] = [Val(run.workflow), " "] if run.workflow else []
        out.append(Fact("Run", (*run_parts, Link(_run_label(notice), run.url))))
        status: list[Part] = [run.status.value]
        if run.provider_status and run.provider_status.lower() != run.status.value:
            status += [" (", Val(run.provider_status), ")"]
        out.append(Fact("Status", tuple(status)))
        label, when = _run_moment(notice)
        out.append(Fact(label, (local_time(when, zone, "%Y-%m-%d %H:%M"),)))
    if notice.failing_jobs:
        out.append(Fact("Failing jobs", (_jobs(notice.failing_jobs),)))
    if notice.red_for is not None and notice.kind in ELAPSED_LABEL:
        out.append(Fact(ELAPSED_LABEL[notice.kind], (human_duration(notice.red_for),)))
    if notice.flaky:
        out.append(Fact("Likely flaky", ("recovered on the same commit as the failure",)))
    if notice.likely_flaky:
        out.append(Fact("Likely flaky", (Val(notice.likely_flaky, limit=MAX_DETAIL),)))
    if run is not None:
        if run.author:
            who: list[Part] = [Val(run.author)]
            if run.event:
                who += [" (", Val(run.event), ")"]
            out.append(Fact("Triggered by", tuple(who)))
        if run.sha:
            commit: list[Part] = [Val(run.sha[:12])]
            if run.commit_title:
                commit += [" ", Val(run.commit_title)]
            out.append(Fact("Commit", tuple(commit)))
        author = commit_author(run)
        if author:
            out.append(Fact("Author", (Val(author),)))
        if notice.green_sha and run.sha:
            since: list[Part] = []
            if notice.commit_range is not None:
                since.append(f"{commits_count(notice.commit_range)} (")
            since += range_parts(notice.green_sha, run)
            if notice.commit_range is not None:
                since.append(")")
            out.append(Fact("Since green", tuple(since)))
            listed = commits_sentence(notice.commit_range)
            if listed:
                out.append(Fact("Commits", (Val(listed, limit=MAX_RANGE_TEXT),)))
        if tests_sentence(run):
            out.append(Fact("Tests", (Val(tests_sentence(run), limit=MAX_TESTS_TEXT),)))
        if run.duration_seconds is not None:
            out.append(Fact("Duration", (human_duration(run.duration_seconds),)))
    out.append(Fact("Source", (Val(notice.source),)))
    return out


def _run_moment(notice: Notice) -> tuple[str, datetime]:
    """The latest known moment of the notice's run, and what it was."""
    run = notice.run
    assert run is not None
    if run.finished_at is not None:
        return "Finished", run.finished_at
    if run.started_at is not None:
        return "Started", run.started_at
    return "Created", run.created_at or run.updated_at


def commit_author(run: Run) -> str | None:
    """`Ada Lovelace <ada@example.com>`, the name or the address alone, or None."""
    if run.commit_author and run.commit_email:
        return f"{run.commit_author} <{run.commit_email}>"
    return run.commit_author or run.commit_email


def compare_url(run: Run, base: str) -> str | None:
    """The web page of the commits `base...run.sha`, derived from the run's own URL for GitHub
    (`…/actions/runs/N` → `…/compare/BASE...HEAD`) and GitLab (`…/-/pipelines/N` →
    `…/-/compare/BASE...HEAD`); None for Jenkins and reports (no such page to point at)."""
    url = run.url or ""
    if run.provider == "github" and "/actions/runs/" in url:
        return f"{url.split('/actions/runs/')[0]}/compare/{base}...{run.sha}"
    if run.provider == "gitlab" and "/-/pipelines/" in url:
        return f"{url.split('/-/pipelines/')[0]}/-/compare/{base}...{run.sha}"
    return None


def range_parts(base: str, run: Run) -> list[Part]:
    """`abc123def456..0123456789ab` (a link to the comparison where the CI has one)."""
    label = Val(f"{base[:12]}..{(run.sha or '')[:12]}")
    url = compare_url(run, base)
    return [Link(label, url)] if url else [label]


def commits_count(found: CommitRange) -> str:
    """`3 commits`, `1 commit`, `120 commits`."""
    return f"{found.total} commit" + ("" if found.total == 1 else "s")


def commits_sentence(found: CommitRange | None, shown: int = MAX_RANGE_SHOWN) -> str:
    """`a1b2c3d4e5f6 Fix parser (Ada), 0f1e2d3c4b5a Bump (bob), +1 more`: the newest `shown`
    commits of the range, or "" when there is none."""
    if found is None or not found.commits:
        return ""
    parts = []
    for commit in found.commits[:shown]:
        text = commit.sha[:12]
        if commit.title:
            text += " " + one_line(commit.title, MAX_VALUE // 2)
        who = commit.login or commit.author or commit.email
        if who:
            text += f" ({one_line(who, 60)})"
        parts.append(text)
    more = found.total - len(parts)
    return ", ".join(parts) + (f", +{more} more" if more > 0 else "")


def tests_sentence(run: Run) -> str:
    """`3 tests failed: parser::empty_input, … (of 120; 2 skipped)`, `120 tests passed`, or
    "" when the run has no test report."""
    if run.tests_total is None and run.tests_failed is None:
        return ""
    failed = (run.tests_failed or 0) + (run.tests_errored or 0)
    total = f"of {run.tests_total}" if run.tests_total is not None else ""
    skipped = f"{run.tests_skipped} skipped" if run.tests_skipped else ""
    tail = "; ".join(part for part in (total, skipped) if part)
    if not failed:
        passed = f"{run.tests_total} tests passed" if run.tests_total is not None else "no failures"
        return passed + (f" ({skipped})" if skipped else "")
    word = "test" if failed == 1 else "tests"
    names = [one_line(name, MAX_TEST_NAME) for name in run.tests_failing[:MAX_TEST_NAMES]]
    more = len(run.tests_failing) - len(names)
    listed = ", ".join(names) + (f", +{more} more" if more > 0 else "")
    return (
        f"{failed} {word} failed"
        + (f": {listed}" if listed else "")
        + (f" ({tail})" if tail else "")
    )


def links(notice: Notice) -> list[Link]:
    """The run and the dashboard, those that are http(s) URLs."""
    found = [Link("Open the run", notice.run.url if notice.run else None)]
    found.append(Link("ciwatch dashboard", notice.dashboard_url))
    return [link for link in found if safe_url(link.url)]


def summary_line(notice: Notice, *, with_kind: bool) -> list[Part]:
    """One line of a grouped message: `🔴 group/app · main · #17 failed · failing: test`."""
    if notice.kind in HEALTH_KINDS:
        return _health_line(notice, with_kind=with_kind)
    parts: list[Part] = [f"{EMOJI[notice.kind]} ", Val(notice.project), " · ", Val(notice.ref)]
    if with_kind:
        parts.append(f" · {WORD[notice.kind].lower()}")
    run = notice.run
    if run is not None:
        parts += [" · ", Link(_run_label(notice), run.url), f" {run.status.value}"]
    if notice.failing_jobs:
        parts += [" · failing: ", _jobs(notice.failing_jobs)]
    if notice.red_for is not None and notice.kind in ELAPSED_LABEL:
        label = ELAPSED_LABEL[notice.kind].lower()
        parts.append(f" · {label} {human_duration(notice.red_for)}")
    if notice.flaky:
        parts.append(" · likely flaky")
    if run is not None and notice.kind == "broken":
        author = commit_author(run)
        if author:
            parts += [" · by ", Val(author)]
        if notice.commit_range is not None:
            parts.append(f" · {commits_count(notice.commit_range)} since green")
    if run is not None and run.tests_failed:
        parts += [" · ", Val(tests_sentence(run), limit=MAX_TESTS_TEXT)]
    if notice.likely_flaky:
        parts += [" · ", Val(notice.likely_flaky, limit=MAX_DETAIL)]
    if safe_url(notice.dashboard_url):
        parts += [" · ", Link("dashboard", notice.dashboard_url)]
    return parts


def _health_line(notice: Notice, *, with_kind: bool) -> list[Part]:
    """One line of a grouped message about ciwatch's own health: `⚠️ source jk (discovery) ·
    folder team: GET …: HTTP 401 · unhealthy for 12m`."""
    parts: list[Part] = [f"{EMOJI[notice.kind]} ", *subject(notice)]
    if with_kind:
        parts.append(f" · {WORD[notice.kind].lower()}")
    if notice.detail:
        parts += [" · ", Val(notice.detail, limit=MAX_DETAIL)]
    if notice.red_for is not None:
        label = ELAPSED_LABEL[notice.kind].lower()
        parts.append(f" · {label} {human_duration(notice.red_for)}")
    return parts


def primary_link(message: Message) -> str | None:
    """Where "see more" points: the run of a single notice (else its dashboard page); for a
    group, the first dashboard page."""
    if not message.grouped:
        notice = message.notices[0]
        return safe_url(notice.run.url if notice.run else None) or safe_url(notice.dashboard_url)
    for notice in message.notices:
        url = safe_url(notice.dashboard_url)
        if url:
            return url
    return None


# --- formats -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Format:
    value: Callable[[str], str]  # a CI value, already on one line
    own: Callable[[str], str]  # ciwatch's own text
    link: Callable[[str, str], str]  # (formatted label, safe URL)
    bold: Callable[[str], str]

    def parts(self, parts: Sequence[Part]) -> str:
        return "".join(self.part(part) for part in parts)

    def part(self, part: Part) -> str:
        if isinstance(part, Val):
            return self.value(one_line(part.text, part.limit))
        if isinstance(part, Link):
            label = self.part(part.label)
            url = safe_url(part.url)
            return self.link(label, url) if url else label
        return self.own(part)


def _same(text: str) -> str:
    return text


PLAIN = Format(_same, _same, lambda label, url: f"{label} {url}", _same)
ROBOT_PLAIN = Format(escape_robot_text, _same, lambda label, url: f"{label} {url}", _same)
MARKDOWN = Format(
    escape_markdown, _same, lambda label, url: f"[{label}]({url})", lambda text: f"**{text}**"
)


def render_title(message: Message) -> str:
    """The title as plain text (e-mail subject, DingTalk title, Slack header)."""
    return PLAIN.parts(title_parts(message))


def _text(message: Message, fmt: Format) -> str:
    lines = [fmt.parts(title_parts(message)), ""]
    if as_lines(message):
        mixed = len({notice.kind for notice in message.notices}) > 1
        lines += [f"- {fmt.parts(summary_line(n, with_kind=mixed))}" for n in listed(message)]
        if message.at_start and start_rest(message):
            lines.append(start_more(message))
        return "\n".join(lines)
    notice = message.notices[0]
    lines += [f"{fact.label}: {fmt.parts(fact.parts)}" for fact in facts(notice, message.zone)]
    found = links(notice)
    if found:
        lines.append("")
        lines += [fmt.parts([link]) for link in found]
    return "\n".join(lines)


def render_text(message: Message) -> str:
    """Plain text (the e-mail text part, Apprise)."""
    return _text(message, PLAIN)


def render_robot_text(message: Message) -> str:
    """Plain text for a chat robot's `text` message (no `<...>` mention syntax from values)."""
    return _text(message, ROBOT_PLAIN)


def render_markdown(message: Message, *, line_break: str = "\n") -> str:
    """Markdown for a chat robot: a `###` title, then the facts (one notice) or a list (a group).
    `line_break` separates the facts: a robot that starts a new line only at a blank line
    (DingTalk) passes `"\\n\\n"`."""
    fmt = MARKDOWN
    sep = line_break
    head = f"### {fmt.parts(title_parts(message))}"
    if as_lines(message):
        mixed = len({notice.kind for notice in message.notices}) > 1
        items = [f"- {fmt.parts(summary_line(n, with_kind=mixed))}" for n in listed(message)]
        more = "\n\n" + start_more(message) if message.at_start and start_rest(message) else ""
        return head + "\n\n" + "\n".join(items) + more
    notice = message.notices[0]
    lines = [f"**{fact.label}:** {fmt.parts(fact.parts)}" for fact in facts(notice, message.zone)]
    found = links(notice)
    if found:
        lines.append(" · ".join(fmt.parts([link]) for link in found))
    return head + "\n\n" + sep.join(lines)


# --- size limits ---------------------------------------------------------------------------


def cut(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, the last one an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def truncate_utf8(text: str, limit: int, tail: str) -> str:
    """`text` if it fits in `limit` UTF-8 bytes; else as many whole lines as fit followed by
    `tail` (cutting inside the first line only when even that does not fit)."""
    if utf8_len(text) <= limit:
        return text
    budget = limit - utf8_len(tail)
    if budget <= 0:
        return _cut_bytes(tail, limit)
    kept: list[str] = []
    used = 0
    for line in text.split("\n"):
        size = utf8_len(line) + (1 if kept else 0)
        if used + size + 1 > budget:  # +1 for the newline before the tail
            break
        kept.append(line)
        used += size
    if not kept:
        return _cut_bytes(text, budget - 1) + "\n" + tail
    return "\n".join(kept) + "\n" + tail


def _cut_bytes(text: str, limit: int) -> str:
    return text.encode("utf-8")[: max(limit, 0)].decode("utf-8", "ignore")

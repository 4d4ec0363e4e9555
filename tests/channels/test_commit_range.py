"""The commits since green, end to end (issue 13): a ref of the simulator goes green → red, the
real poller collects it, the alert engine asks the source's provider for the commits between
the last green run and the breaking one (GitLab `repository/compare`, GitHub `compare`) once,
and the `broken` message lists them and mentions their authors in Slack, DingTalk and WeCom
syntax; the range is kept on the failing run for the project page. A vendor error or a slow
answer leaves the list out, and the notice still goes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from ciwatch.alerting.delivery import notice_from_payload, notice_to_payload
from ciwatch.channels import dingtalk, slack, wecom
from ciwatch.channels.base import Message
from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.config.models import DingTalkChannel, SlackChannel, WeComChannel
from ciwatch.domain import CommitRange, RangeCommit, Run, Status
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.simulator import Simulator, start_simulator
from ciwatch.simulator.azure import DEFAULT_AZURE_TOKEN
from ciwatch.simulator.faults import Fault
from ciwatch.simulator.loader import scenario_from_dict
from ciwatch.store import SqlStore

from .conftest import notice
from .harness import DingTalkRobot, SlackWebhook, WeComRobot

START = datetime(2026, 1, 1, tzinfo=UTC)
TOKENS = {
    "gitlab": "glpat-range",
    "github": "ghp_range",
    "jenkins": "jenkins-range",
    "azure": DEFAULT_AZURE_TOKEN,
}
PROJECT = {"gitlab": "team/app", "github": "octo/app", "jenkins": "team/app", "azure": "Fab/app"}
SOURCE = {"gitlab": "gl", "github": "gh", "jenkins": "jk", "azure": "az"}

# main: green (alice), two canceled runs (which leave the ref green: bob, dave), then the
# breaking run one minute in (carol). The simulator's history of a ref is its runs' SHAs.
RUNS = [
    {"at": "-3h", "author": "alice", "message": "Add the parser"},
    {"at": "-2h", "result": "canceled", "author": "bob", "message": "Tune the pool"},
    {"at": "-1h", "result": "canceled", "author": "dave", "message": "Bump dependencies"},
    {
        "at": "1m",
        "queue": "10s",
        "duration": "2m",
        "result": "failed",
        "author": "carol",
        "message": "Break the parser",
    },
]

PEOPLE = [
    {"names": ["carol"], "slack": "U0CAROL", "dingtalk": "13800000001", "wecom": "carol.w"},
    # Bob is named by his e-mail (GitLab's commits) and his login (GitHub's commit authors).
    {"names": ["bob@example.com", "bob"], "slack": "U0BOB", "dingtalk": "bob-id", "wecom": "bob.w"},
]


def scenario(kind: str) -> dict[str, Any]:
    project: dict[str, Any] = {"provider": kind, "path": PROJECT[kind], "runs": RUNS}
    if kind == "gitlab":
        project.update(id=7, refs=["main"])
    elif kind == "github":
        project.update(workflow="Build")
    tokens = {"ci-bot": TOKENS[kind]} if kind == "jenkins" else [TOKENS[kind]]
    return {
        "name": "range",
        "seed": 1,
        "retention": 50,
        # The Azure API takes the simulator's own token (no `tokens:` entry).
        "tokens": {kind: tokens} if kind != "azure" else {},
        "projects": [project],
    }


class Receivers:
    def __init__(self) -> None:
        self.slack = SlackWebhook()
        self.dingtalk = DingTalkRobot()
        self.wecom = WeComRobot()
        self.all = (self.slack, self.dingtalk, self.wecom)


@pytest.fixture
async def receivers() -> AsyncIterator[Receivers]:
    found = Receivers()
    for receiver in found.all:
        await receiver.start()
    try:
        yield found
    finally:
        for receiver in found.all:
            await receiver.stop()


def settings(kind: str, url: str, receivers: Receivers) -> Settings:
    source: dict[str, Any] = {
        "type": kind,
        "name": SOURCE[kind],
        "url": url,
        "token": TOKENS[kind],
        # The token bucket must never wait on the fake clock that drives the simulator.
        "requests_per_second": 100_000,
    }
    if kind == "azure":
        source.update(organization="fabrikam", projects=["Fab"], url=f"{url}/azure")
    else:
        listed = {"gitlab": "projects", "github": "repos", "jenkins": "jobs"}[kind]
        source[listed] = [PROJECT[kind]]
    if kind == "jenkins":
        source["username"] = "ci-bot"
    return Settings.model_validate(
        {
            "database": "sqlite:///unused.db",
            "collection": {"retries": 0, "jitter": 0.0},
            "sources": [source],
            "people": PEOPLE,
            "alerts": {
                "group_wait": "0s",
                "channels": [
                    {"name": "slack", "type": "slack", "url": receivers.slack.url},
                    {"name": "ding", "type": "dingtalk", "url": receivers.dingtalk.url},
                    {"name": "wecom", "type": "wecom", "url": receivers.wecom.url},
                ],
                "routes": [{"channels": ["slack", "ding", "wecom"]}],
            },
        }
    )


class Rig:
    def __init__(self, kind: str, store: SqlStore, receivers: Receivers) -> None:
        self.kind = kind
        self.store = store
        self.receivers = receivers
        self.clock = FakeClock(START)
        self.sim = Simulator(scenario_from_dict(scenario(kind)), self.clock)

    async def __aenter__(self) -> Rig:
        self.running = await start_simulator(self.sim)
        url = {
            "gitlab": self.running.gitlab_url,
            "github": self.running.github_url,
            "jenkins": self.running.jenkins_url,
            "azure": self.running.url,
        }[self.kind]
        self.runtime = await Runtime.open(
            settings(self.kind, url, self.receivers), clock=self.clock, store=self.store
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        for channel in self.runtime.alerting.channels.values():
            await channel.close()
        for provider in self.runtime.providers.values():
            await provider.close()
        await self.running.stop()

    async def cycle(self) -> None:
        """Poll every target, evaluate, deliver what was queued."""
        assert self.runtime.scheduler is not None
        report = await self.runtime.scheduler.run_once()
        assert not report.failed, [o.error for o in report.failed]
        before = sum(self.sim.stats.by_path.values())
        await self.runtime.alerting.engine.evaluate()
        self.evaluation_requests = sum(self.sim.stats.by_path.values()) - before
        while await self.runtime.alerting.workers.drain():
            pass

    async def broken_run(self) -> Run:
        page = await self.store.history(source=SOURCE[self.kind], status=Status.FAILED)
        (run,) = page.runs
        return run

    async def go_red(self) -> None:
        """Green at the start (nothing sent, nothing asked at evaluation), red five minutes in
        (`evaluation_requests`: what the evaluation of the break asked the CI system)."""
        await self.cycle()
        assert [r.messages for r in self.receivers.all] == [[], [], []]
        assert self.evaluation_requests == 0
        self.clock.advance(300)
        await self.cycle()


async def get(store: SqlStore, clock: FakeClock, *paths: str) -> list[httpx.Response]:
    """GET `paths` from the web app over the store (dashboard and API)."""
    from ciwatch.web.app import create_app

    runtime = Runtime(Settings(database="sqlite:///unused.db"), store, clock, CollectionMetrics())
    app = create_app(runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dash.test") as c:
            answers = [await c.get(path) for path in paths]
    assert [a.status_code for a in answers] == [200] * len(paths)
    return answers


@pytest.mark.parametrize("kind", ["gitlab", "github", "jenkins", "azure"])
async def test_a_break_lists_and_mentions_the_commits_since_green(
    kind: str, store: SqlStore, receivers: Receivers
) -> None:
    async with Rig(kind, store, receivers) as rig:
        await rig.go_red()
        # One request (compare; Jenkins: the job's builds) for the one break.
        assert rig.evaluation_requests == 1
        [slack] = receivers.slack.messages
        [ding] = receivers.dingtalk.messages
        [wecom] = receivers.wecom.messages
        # Its repeat (`still_failing`, after repeat_interval) asks nothing.
        rig.clock.advance(4 * 3600 + 60)
        await rig.cycle()
        assert len(receivers.slack.messages) == 2
        assert "Still failing" in receivers.slack.messages[1]["text"]
        assert rig.evaluation_requests == 0

    # Newest first: the breaking commit, then the two canceled runs' commits.
    titles = ["Break the parser", "Bump dependencies", "Tune the pool"]
    text = json.dumps(slack["blocks"], ensure_ascii=False)
    assert "Since green" in text and "3 commits (" in text
    positions = [text.index(title) for title in titles]
    assert positions == sorted(positions)
    assert "Add the parser" not in text  # the green run's own commit is not in the range
    # The breaking commit's author first, then the range's (dave is nobody in `people:`).
    assert slack["text"].endswith("\ncc <@U0CAROL> <@U0BOB>")
    assert ding["at"]["atMobiles"] == ["13800000001"]
    assert ding["at"]["atUserIds"] == ["bob-id"]
    assert ding["markdown"]["text"].endswith("@13800000001 @bob-id")
    assert all(title in ding["markdown"]["text"] for title in titles)
    content = wecom["markdown"]["content"]
    assert all(title in content for title in titles)
    assert content.index("<@carol.w>") < content.index("<@bob.w>")

    # Kept on the failing run, so the project page lists them too.
    broken = await rig.broken_run()
    key = broken.key
    kept = await store.commit_range(key)
    assert kept is not None and kept.total == 3 and not kept.cut
    assert [c.title for c in kept.commits] == titles
    project, run, api = await get(
        store,
        rig.clock,
        f"/projects/{key.source}/{key.project}?ref={broken.ref}",
        f"/runs/{key.source}/{key.project}/{key.run_id}",
        f"/api/v1/runs/{key.source}/{key.project}/{key.run_id}",
    )
    assert "3 commits since green" in project.text
    assert all(title in project.text for title in titles)
    assert "Since green" in run.text and all(title in run.text for title in titles)
    listed = api.json()["commit_range"]
    assert (listed["total"], listed["cut"]) == (3, False)
    assert [c["title"] for c in listed["commits"]] == titles


@pytest.mark.parametrize(
    "fault",
    [
        Fault(kind="status", status=404, path="*compare*"),
        Fault(kind="slow", delay=3.0, path="*compare*"),
    ],
    ids=["vendor-error", "too-slow"],
)
async def test_without_an_answer_the_notice_goes_without_the_list(
    fault: Fault, store: SqlStore, receivers: Receivers
) -> None:
    async with Rig("gitlab", store, receivers) as rig:
        rig.runtime.alerting.engine.range_timeout = 0.3
        rig.sim.add_fault(fault)
        await rig.go_red()
        assert rig.evaluation_requests == 1
        [slack] = receivers.slack.messages
        key = (await rig.broken_run()).key
    text = json.dumps(slack["blocks"], ensure_ascii=False)
    assert "Since green" in text  # the compare link remains
    assert "commits (" not in text and "Bump dependencies" not in text
    # Only the breaking run's own author is mentioned.
    assert slack["text"].endswith("\ncc <@U0CAROL>")
    assert await store.commit_range(key) is None


HOSTILE = CommitRange(
    (
        RangeCommit("e" * 40, title="<!channel> *bold* [x](http://evil.test)", author="<@U1>"),
        *(RangeCommit(f"{n:040x}", title=f"Change {n}") for n in range(1, 9)),
    ),
    total=40,
)


def test_the_range_survives_the_outbox_and_is_neutralised_per_channel() -> None:
    original = notice(green_sha="a" * 40, commit_range=HOSTILE)
    assert notice_from_payload(notice_to_payload(original)) == original
    message = Message((original,))
    slack_text = json.dumps(slack.payload(SlackChannel(name="s", url="https://x.test"), message))
    assert "&lt;!channel&gt;" in slack_text and "<!channel>" not in slack_text
    assert "<@U1>" not in slack_text
    ding = dingtalk.payload(DingTalkChannel(name="d", url="https://x.test"), message)
    text = ding["markdown"]["text"]
    assert "∗bold∗" in text and "［x］" in text
    # The newest five of the 40 are listed, then how many more.
    assert "Change 4" in text and "Change 5" not in text and "+35 more" in text
    assert "40 commits (" in text
    content = wecom.payload(WeComChannel(name="w", url="https://x.test"), message)
    assert "<@U1>" not in json.dumps(content, ensure_ascii=False)

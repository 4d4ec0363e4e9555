"""The extra requests of commits and test reports (issue 13), counted on the simulator.

Polls examples/scenarios/basic.yaml (fake clock, SQLite in a temporary directory) twice from an
empty store: once with `tests: false`, once with `tests: true` on every source. Each time: one
backfill cycle, then one cycle after the clock moved 15 minutes, then one unchanged cycle.
Prints, per source, the runs stored or changed and the requests made to the commit and
test-report endpoints (the only extra requests polls make for it). After each cycle the alert
engine evaluates every ref (one webhook channel, never delivered to): the `broken` notices it
queued and the requests it made for the commits since green (`gitlab range`, `github range`,
`jenkins range`), which are made at break time, never by a poll. basic.yaml has no GitHub run
that is failed when polled, so the same is done for the three GitHub repositories of the demo
scenario (`demo_scenario()`, failed runs among them), whose check runs and annotations are
GitHub's "tests". Asserts nothing.

    PYTHONPATH=src python benchmarks/extras.py
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from ciwatch.clock import FakeClock
from ciwatch.config import GitHubSource, GitLabSource, JenkinsSource, Settings
from ciwatch.runtime import Runtime
from ciwatch.simulator import Scenario, Simulator, demo_scenario, load_scenario, start_simulator
from ciwatch.store import open_store

BASIC = Path(__file__).parents[1] / "examples" / "scenarios" / "basic.yaml"
START = datetime(2026, 1, 1, tzinfo=UTC)


def kind(path: str) -> str | None:
    # A Jenkins build's own `api/json` is read by a poll only for a failed build's changeSets.
    if "/repository/commits/" in path or re.search(r"/job/.+/\d+/api/json$", path):
        return "commit"
    if "test_report" in path or "/testReport/" in path:
        return "tests"
    if path.endswith(("/check-runs", "/annotations")):  # GitHub: check-run annotations
        return "tests"
    return None


def extras(before: Counter[str], after: Counter[str], every: str | None = None) -> dict[str, int]:
    """The requests between two counts by provider and kind (`every`: all of that kind, as an
    evaluation asks only for ranges; a Jenkins range reads the job's own `api/json`)."""
    found: Counter[str] = Counter()
    for path, count in (after - before).items():
        what = every or kind(path)
        if what:
            # GitLab paths start /gitlab, GitHub /github, Jenkins /jenkins (the prefixes)
            found[f"{path.split('/')[1]} {what}"] += count
    return dict(sorted(found.items()))


async def measure(tests: bool, directory: str, demo: bool = False) -> None:
    clock = FakeClock(START)
    scenario: Scenario = demo_scenario() if demo else load_scenario(BASIC)
    sim = Simulator(scenario, clock)
    sim.clear_faults()
    running = await start_simulator(sim)
    common = {"requests_per_second": 100_000, "tests": tests}
    sources: list[GitLabSource | GitHubSource | JenkinsSource] = [
        GitLabSource(
            name="gl",
            url=running.gitlab_url,
            token="glpat-basic-example",  # noqa: S106 - the scenario's own credential
            projects=["platform/backend/api", "platform/frontend/web", "tools/scripts"],
            **common,
        ),
        GitHubSource(
            name="gh",
            url=running.github_url,
            token="ghp_basic_example",  # noqa: S106 - the scenario's own credential
            repos=["octo-org/web", "octo-org/api"],
            **common,
        ),
        JenkinsSource(
            name="jk",
            url=running.jenkins_url,
            username="ci-bot",
            token="jenkins-basic-token",  # noqa: S106 - the scenario's own credential
            jobs=["smoke", "team/app", "team/tools/nightly", "team/gateway"],
            **common,
        ),
    ]
    if demo:
        sources = [
            GitHubSource(
                name="gh",
                url=running.github_url,
                token="ghp_simulator",  # noqa: S106 - the simulator's default credential
                repos=["octo-org/service", "octo-org/docs", "octo-org/mobile"],
                backfill=100,
                **common,
            )
        ]
    settings = Settings(
        database=f"sqlite:///{directory}/extras-{tests}-{demo}.db",
        # One channel and route, so breaks are notified (queued only: nothing delivers them).
        alerts={
            "channels": [{"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/"}],
            "routes": [{"channels": ["hook"]}],
        },
        collection={"retries": 2, "jitter": 0.0},
        sources=sources,
    )
    store = open_store(settings.database)
    await store.upgrade()
    runtime = await Runtime.open(settings, clock=clock, store=store)
    try:
        assert runtime.scheduler is not None
        for label, advance in (("backfill", 0), ("+15 min", 15 * 60), ("unchanged", 0)):
            clock.advance(advance)
            before = Counter(sim.stats.by_path)
            report = await runtime.scheduler.run_once()
            polled = Counter(sim.stats.by_path)
            changes = await runtime.alerting.engine.evaluate()
            after = Counter(sim.stats.by_path)
            changed = sum(o.changed for o in report.outcomes)
            broken = sum(
                1
                for change in changes
                if change.notices
                and change.decision.notify is not None
                and change.decision.notify.value == "broken"
            )
            print(
                f"{'demo gh ' if demo else ''}"
                f"tests={str(tests).lower():5} {label:9} requests {report.requests:4}  "
                f"changed runs {changed:3}  extra {extras(before, polled) or '{}'}"
            )
            asked = sum((after - polled).values())
            print(
                f"{'':11} {label:9} alerts: broken notices {broken:2}  "
                f"requests {asked:2}  extra {extras(polled, after, 'range') or '{}'}"
            )
    finally:
        for provider in runtime.providers.values():
            await provider.close()
        await store.close()
        await running.stop()


async def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        for demo in (False, True):
            for tests in (False, True):
                await measure(tests, directory, demo)


if __name__ == "__main__":
    asyncio.run(main())

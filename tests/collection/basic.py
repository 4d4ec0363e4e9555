"""Sources pointed at the `basic.yaml` simulator: two targets on each provider."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ciwatch.config import GitHubSource, GitLabSource, JenkinsSource
from ciwatch.simulator import RunningSimulator

BASIC = Path(__file__).parents[2] / "examples" / "scenarios" / "basic.yaml"
START = datetime(2026, 1, 1, tzinfo=UTC)


def basic_sources(
    running: RunningSimulator, *, more_gitlab: tuple[str, ...] = (), **options: Any
) -> list[GitLabSource | GitHubSource | JenkinsSource]:
    """gl (GitLab), gh (GitHub) and jk (Jenkins) with the scenario's credentials; `options`
    go to every source (intervals, rates), `more_gitlab` adds GitLab projects."""
    return [
        GitLabSource(
            name="gl",
            url=running.gitlab_url,
            token="glpat-basic-example",
            projects=["platform/backend/api", "platform/frontend/web", *more_gitlab],
            **options,
        ),
        GitHubSource(
            name="gh",
            url=running.github_url,
            token="ghp_basic_example",
            repos=["octo-org/web", "octo-org/api"],
            **options,
        ),
        JenkinsSource(
            name="jk",
            url=running.jenkins_url,
            username="ci-bot",
            token="jenkins-basic-token",
            jobs=["team/app", "team/gateway"],
            **options,
        ),
    ]

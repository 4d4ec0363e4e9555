"""What `ciwatch report` sends: a run filled from the command line and, inside a CI job, from
the CI system's own environment variables (GitHub Actions, GitLab CI, Jenkins).

Pure: the environment is passed in as a mapping; the CLI passes `os.environ`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ciwatch.domain import Status

# Words a CI step may hand over (GitHub `job.status`, Jenkins `currentBuild.currentResult`,
# GitLab `CI_JOB_STATUS`) mapped to ciwatch's statuses.
STATUS_WORDS: dict[str, Status] = {
    **{s.value: s for s in Status},
    "failure": Status.FAILED,
    "unstable": Status.FAILED,
    "error": Status.FAILED,
    "timed_out": Status.FAILED,
    "cancelled": Status.CANCELED,
    "aborted": Status.CANCELED,
    "not_built": Status.SKIPPED,
    "in_progress": Status.RUNNING,
    "started": Status.RUNNING,
    "pending": Status.QUEUED,
}


def parse_status(word: str) -> Status:
    """A CI system's status word as a ciwatch status; ValueError naming the choices."""
    key = word.strip().lower()
    if key not in STATUS_WORDS:
        choices = ", ".join(sorted(STATUS_WORDS))
        raise ValueError(f"'{word}' is not a status ({choices})")
    return STATUS_WORDS[key]


def detect_ci(env: Mapping[str, str]) -> tuple[str | None, dict[str, Any]]:
    """The CI system running us and the run fields its variables give (empty outside CI)."""
    if env.get("GITHUB_ACTIONS") == "true":
        repo, run_id = env.get("GITHUB_REPOSITORY"), env.get("GITHUB_RUN_ID")
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        fields = {
            "project": repo,
            "run_id": run_id,
            "number": _int(env.get("GITHUB_RUN_NUMBER")),
            "attempt": _int(env.get("GITHUB_RUN_ATTEMPT")),
            "workflow": env.get("GITHUB_WORKFLOW"),
            "ref": env.get("GITHUB_HEAD_REF") or env.get("GITHUB_REF_NAME"),
            "sha": env.get("GITHUB_SHA"),
            "event": env.get("GITHUB_EVENT_NAME"),
            "author": env.get("GITHUB_TRIGGERING_ACTOR") or env.get("GITHUB_ACTOR"),
            "url": f"{server}/{repo}/actions/runs/{run_id}" if repo and run_id else None,
        }
        return "github", fields
    if env.get("GITLAB_CI") == "true":
        return "gitlab", {
            "project": env.get("CI_PROJECT_PATH"),
            "run_id": env.get("CI_PIPELINE_ID"),
            "number": _int(env.get("CI_PIPELINE_IID")),
            "workflow": env.get("CI_PIPELINE_NAME"),
            "ref": env.get("CI_COMMIT_REF_NAME"),
            "sha": env.get("CI_COMMIT_SHA"),
            "event": env.get("CI_PIPELINE_SOURCE"),
            "author": env.get("GITLAB_USER_LOGIN"),
            "url": env.get("CI_PIPELINE_URL"),
            "created_at": env.get("CI_PIPELINE_CREATED_AT"),
        }
    if env.get("JENKINS_URL") and env.get("JOB_NAME") and env.get("BUILD_NUMBER"):
        branch = env.get("BRANCH_NAME") or env.get("GIT_BRANCH") or ""
        for prefix in ("refs/remotes/origin/", "origin/", "refs/heads/"):
            branch = branch.removeprefix(prefix)
        return "jenkins", {
            "project": env.get("JOB_NAME"),
            "run_id": env.get("BUILD_NUMBER"),
            "number": _int(env.get("BUILD_NUMBER")),
            "ref": branch or None,
            "sha": env.get("GIT_COMMIT"),
            "url": env.get("BUILD_URL"),
            "author": env.get("BUILD_USER_ID"),
        }
    return None, {}


def build_report(explicit: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """The JSON body: explicit values win over detected ones; unset fields are left out."""
    _, detected = detect_ci(env)
    merged = {**detected, **{k: v for k, v in explicit.items() if v is not None}}
    return {key: value for key, value in merged.items() if value is not None}


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None

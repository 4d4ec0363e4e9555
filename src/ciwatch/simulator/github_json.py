"""GitHub REST payloads (shaped like tests/fixtures/github/api), built from run plans."""

from __future__ import annotations

import base64
import zlib
from collections.abc import Sequence
from typing import Any

from yarl import URL

from ciwatch.simulator import reports
from ciwatch.simulator.httputil import github_time, offset_time
from ciwatch.simulator.plans import FOREVER, Attempt, JobPlan, RunPlan, sha_for
from ciwatch.simulator.world import GitHubRepo

CONCLUSION = {
    "success": "success",
    "failed": "failure",
    "canceled": "cancelled",
    "skipped": "skipped",
    "manual": "action_required",
    "unstable": "failure",
    "timed_out": "timed_out",
}
EVENT = {
    "push": "push",
    "manual": "workflow_dispatch",
    "schedule": "schedule",
    "merge_request": "pull_request",
}
_USER_LINKS = (
    ("followers_url", "/followers"),
    ("following_url", "/following{/other_user}"),
    ("gists_url", "/gists{/gist_id}"),
    ("starred_url", "/starred{/owner}{/repo}"),
    ("subscriptions_url", "/subscriptions"),
    ("organizations_url", "/orgs"),
    ("repos_url", "/repos"),
    ("events_url", "/events{/privacy}"),
    ("received_events_url", "/received_events"),
)
# (key, suffix after the repo's API url); None: computed elsewhere. Order as in the fixture.
_REPO_LINKS = (
    ("archive_url", "/{archive_format}{/ref}"),
    ("assignees_url", "/assignees{/user}"),
    ("blobs_url", "/git/blobs{/sha}"),
    ("branches_url", "/branches{/branch}"),
    ("collaborators_url", "/collaborators{/collaborator}"),
    ("comments_url", "/comments{/number}"),
    ("commits_url", "/commits{/sha}"),
    ("compare_url", "/compare/{base}...{head}"),
    ("contents_url", "/contents/{+path}"),
    ("contributors_url", "/contributors"),
    ("deployments_url", "/deployments"),
    ("downloads_url", "/downloads"),
    ("events_url", "/events"),
    ("forks_url", "/forks"),
    ("git_commits_url", "/git/commits{/sha}"),
    ("git_refs_url", "/git/refs{/sha}"),
    ("git_tags_url", "/git/tags{/sha}"),
    ("git_url", None),
    ("issue_comment_url", "/issues/comments{/number}"),
    ("issue_events_url", "/issues/events{/number}"),
    ("issues_url", "/issues{/number}"),
    ("keys_url", "/keys{/key_id}"),
    ("labels_url", "/labels{/name}"),
    ("languages_url", "/languages"),
    ("merges_url", "/merges"),
    ("milestones_url", "/milestones{/number}"),
    ("notifications_url", "/notifications{?since,all,participating}"),
    ("pulls_url", "/pulls{/number}"),
    ("releases_url", "/releases{/id}"),
    ("ssh_url", None),
    ("stargazers_url", "/stargazers"),
    ("statuses_url", "/statuses/{sha}"),
    ("subscribers_url", "/subscribers"),
    ("subscription_url", "/subscription"),
    ("tags_url", "/tags"),
    ("teams_url", "/teams"),
    ("trees_url", "/git/trees{/sha}"),
    ("hooks_url", "/hooks"),
)


class Urls:
    """`api` is `{server}/github` (the API base), `web` the pretend github.com."""

    def __init__(self, api: str, start_ms: int) -> None:
        self.api = api
        self.web = f"{api}/web"
        self.host = URL(api).host or "localhost"
        self.start_ms = start_ms

    def t(self, offset: int | None) -> str | None:
        return None if offset is None or offset >= FOREVER else github_time(self.start_ms + offset)


def node_id(kind: str, number: int) -> str:
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode()


def run_id(stride: int, repo: GitHubRepo, n: int) -> int:
    return (n + 1) * stride + repo.index


def run_index(stride: int, repo: GitHubRepo, rid: int) -> int | None:
    n, index = divmod(rid, stride)
    return n - 1 if index == repo.index and n >= 1 else None


def status_words(attempt: Attempt, now: int) -> tuple[str, str | None]:
    phase = attempt.phase(now)
    if phase == "done":
        return "completed", CONCLUSION[attempt.result]
    return ("queued" if phase == "queued" else "in_progress"), None


def user(urls: Urls, login: str, kind: str = "User") -> dict[str, Any]:
    number = zlib.crc32(login.encode()) % 90_000 + 10_000
    url = f"{urls.api}/users/{login}"
    data: dict[str, Any] = {
        "login": login,
        "id": number,
        "node_id": node_id("User", number),
        "avatar_url": f"{urls.web}/avatars/{login}.png",
        "gravatar_id": "",
        "url": url,
        "html_url": f"{urls.web}/{login}",
    }
    data.update((key, url + suffix) for key, suffix in _USER_LINKS)
    data.update(type=kind, site_admin=False)
    return data


def repository(urls: Urls, repo: GitHubRepo, *, head: bool = False) -> dict[str, Any]:
    """The minimal repository object of a run (`head`: `head_repository`, no git/ssh urls)."""
    url = f"{urls.api}/repos/{repo.full_name}"
    data: dict[str, Any] = {
        "id": repo.id,
        "node_id": node_id("Repository", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "owner": user(urls, repo.owner, "Organization"),
        "private": True,
        "html_url": f"{urls.web}/{repo.full_name}",
        "description": f"Simulated repository {repo.full_name}",
        "fork": False,
        "url": url,
    }
    for key, suffix in _REPO_LINKS:
        if suffix is not None:
            data[key] = url + suffix
        elif not head:
            data[key] = (
                f"git://{urls.host}/{repo.full_name}.git"
                if key == "git_url"
                else f"git@{urls.host}:{repo.full_name}.git"
            )
    return data


def listed_repository(urls: Urls, repo: GitHubRepo, start_ms: int) -> dict[str, Any]:
    """A repository in `/orgs/:org/repos` and `/users/:user/repos`."""
    data = repository(urls, repo)
    created = github_time(start_ms - 365 * 86_400_000)
    data.update(default_branch=repo.refs[0], archived=False, disabled=False)
    data.update(visibility="private", created_at=created, updated_at=created, pushed_at=created)
    return data


def run_json(
    urls: Urls,
    stride: int,
    repo: GitHubRepo,
    plan: RunPlan,
    now: int,
    *,
    attempt_number: int | None = None,
    single: bool = False,
) -> dict[str, Any]:
    """A workflow run as of `now` (or as attempt `attempt_number` left it)."""
    current = plan.attempt_at(now)
    attempt = plan.attempts[attempt_number - 1] if attempt_number else current
    updated = max(t for t in attempt.events() if t <= now)
    status, conclusion = status_words(attempt, now)
    rid = run_id(stride, repo, plan.n)
    url = f"{urls.api}/repos/{repo.full_name}/actions/runs/{rid}"
    workflow_url = f"{urls.api}/repos/{repo.full_name}/actions/workflows/{repo.workflow_id}"
    suite = rid * 10 + attempt.number
    actor = user(urls, plan.author)
    data: dict[str, Any] = {
        "id": rid,
        "name": repo.workflow,
        "node_id": node_id("WorkflowRun", rid),
        "check_suite_id": suite,
        "check_suite_node_id": node_id("CheckSuite", suite),
        "head_branch": plan.ref,
        "head_sha": plan.sha,
        "path": f".github/workflows/{repo.workflow.lower().replace(' ', '-')}.yml@{plan.ref}",
        "run_number": plan.n + 1,
        "event": EVENT.get(plan.event, "push"),
        "display_title": plan.message,
        "status": status,
        "conclusion": conclusion,
        "workflow_id": repo.workflow_id,
        "url": url,
        "html_url": f"{urls.web}/{repo.full_name}/actions/runs/{rid}",
        "pull_requests": [],
        "created_at": urls.t(plan.created),
        "updated_at": urls.t(updated),
        "actor": actor,
        "run_attempt": attempt.number,
        "run_started_at": urls.t(attempt.queued),
        "triggering_actor": actor,
        "jobs_url": f"{url}/jobs",
        "logs_url": f"{url}/logs",
        "check_suite_url": f"{urls.api}/repos/{repo.full_name}/check-suites/{suite}",
        "artifacts_url": f"{url}/artifacts",
        "cancel_url": f"{url}/cancel",
        "rerun_url": f"{url}/rerun",
        "previous_attempt_url": (
            f"{url}/attempts/{attempt.number - 1}" if attempt.number > 1 else None
        ),
        "workflow_url": workflow_url,
        "head_commit": head_commit(urls, plan),
        "repository": repository(urls, repo),
        "head_repository": repository(urls, repo, head=True),
    }
    if single:
        data["referenced_workflows"] = []
    return data


def head_commit(urls: Urls, plan: RunPlan) -> dict[str, Any]:
    return {
        "id": plan.sha,
        "tree_id": sha_for(plan.sha),
        "message": plan.message,
        "timestamp": urls.t(plan.created - 30_000),
        "author": {"name": plan.author.title(), "email": f"{plan.author}@example.com"},
        "committer": {"name": "GitHub", "email": "noreply@github.com"},
    }


def comparison(
    urls: Urls,
    repo: GitHubRepo,
    base: str,
    head: str,
    plans: Sequence[RunPlan],
    shown: Sequence[RunPlan],
) -> dict[str, Any]:
    """`GET /repos/{owner}/{repo}/compare/{basehead}` ("Compare two commits",
    `commit-comparison`): `total_commits` of the whole range, `commits` the page asked for,
    oldest first; no files."""
    web = f"{urls.web}/{repo.full_name}"
    api = f"{urls.api}/repos/{repo.full_name}"
    return {
        "url": f"{api}/compare/{base}...{head}",
        "html_url": f"{web}/compare/{base}...{head}",
        "status": "ahead",
        "ahead_by": len(plans),
        "behind_by": 0,
        "total_commits": len(plans),
        "commits": [compared_commit(urls, repo, plan) for plan in shown],
        "files": [],
    }


def compared_commit(urls: Urls, repo: GitHubRepo, plan: RunPlan) -> dict[str, Any]:
    """One `commits[]` item of a comparison: the git commit and the author's account."""
    git = head_commit(urls, plan)
    return {
        "sha": plan.sha,
        "url": f"{urls.api}/repos/{repo.full_name}/commits/{plan.sha}",
        "html_url": f"{urls.web}/{repo.full_name}/commit/{plan.sha}",
        "commit": {
            "author": {**git["author"], "date": git["timestamp"]},
            "committer": {**git["committer"], "date": git["timestamp"]},
            "message": plan.message,
            "tree": {"sha": git["tree_id"]},
            "comment_count": 0,
        },
        "author": {"login": plan.author, "type": "User"},
        "committer": {"login": "web-flow", "type": "User"},
        "parents": [],
    }


def jobs_json(
    urls: Urls, stride: int, repo: GitHubRepo, plan: RunPlan, attempt: Attempt, now: int
) -> list[dict[str, Any]]:
    return [job_json(urls, stride, repo, plan, attempt, job, now) for job in attempt.jobs]


def job_json(
    urls: Urls,
    stride: int,
    repo: GitHubRepo,
    plan: RunPlan,
    attempt: Attempt,
    job: JobPlan,
    now: int,
) -> dict[str, Any]:
    rid = run_id(stride, repo, plan.n)
    jid = rid * 100 + (attempt.number - 1) * 50 + job.index
    word, started, finished = job.status_at(attempt, now)
    reached = attempt.started + job.start
    if word == "skipped":
        started = finished = reached
    elif word == "manual":
        started, finished = reached, None
    status = {"waiting": "queued", "running": "in_progress", "manual": "waiting"}.get(
        word, "completed"
    )
    conclusion = CONCLUSION[word] if status == "completed" else None
    running = word not in ("waiting", "skipped", "manual")
    api = f"{urls.api}/repos/{repo.full_name}"
    return {
        "id": jid,
        "run_id": rid,
        "run_url": f"{api}/actions/runs/{rid}",
        "run_attempt": attempt.number,
        "node_id": node_id("CheckRun", jid),
        "head_sha": plan.sha,
        "url": f"{api}/actions/jobs/{jid}",
        "html_url": f"{urls.web}/{repo.full_name}/actions/runs/{rid}/job/{jid}",
        "status": status,
        "conclusion": conclusion,
        "created_at": urls.t(attempt.queued),
        "started_at": urls.t(started if started is not None else attempt.queued),
        "completed_at": urls.t(finished),
        "name": job.name,
        "steps": steps(urls, job.name, started, finished, now, conclusion) if running else [],
        "check_run_url": f"{api}/check-runs/{jid}",
        "labels": ["ubuntu-latest"],
        "runner_id": job.index % 8 + 1 if running else None,
        "runner_name": f"GitHub Actions {job.index % 8 + 1}" if running else None,
        "runner_group_id": 1 if running else None,
        "runner_group_name": "GitHub Actions" if running else None,
        "workflow_name": repo.workflow,
        "head_branch": plan.ref,
    }


def steps(
    urls: Urls,
    name: str,
    started: int | None,
    finished: int | None,
    now: int,
    conclusion: str | None,
) -> list[dict[str, Any]]:
    assert started is not None
    end = finished if finished is not None else FOREVER
    edges = [started, min(started + 1000, end), max(min(end - 1000, FOREVER), started), end]
    names = ("Set up job", f"Run {name}", "Complete job")
    result: list[dict[str, Any]] = []
    for number, (title, begin, stop) in enumerate(zip(names, edges, edges[1:], strict=False), 1):
        if now < begin:
            status, step_conclusion, t0, t1 = "queued", None, None, None
        elif now < stop:
            status, step_conclusion, t0, t1 = "in_progress", None, begin, None
        else:
            ok = "success" if number != 2 else conclusion
            status, step_conclusion, t0, t1 = "completed", ok, begin, stop
        result.append(
            {
                "name": title,
                "status": status,
                "conclusion": step_conclusion,
                "number": number,
                "started_at": offset_time(urls.start_ms + t0) if t0 is not None else None,
                "completed_at": offset_time(urls.start_ms + t1) if t1 is not None else None,
            }
        )
    return result


# --- Check runs and their annotations (the failing tests a run's jobs report) ----------------

# A job's check run has the job's id (`check_run_url` ends with it).
_FAILED_JOB_WORDS = frozenset({"failed", "timed_out", "unstable"})
RUNNER_EXIT = "Process completed with exit code 1."


def job_key(jid: int) -> tuple[int, int, int]:
    """A job (check run) id → (run id, attempt number, job index); see `job_json`."""
    rid, rest = divmod(jid, 100)
    attempt, index = divmod(rest, 50)
    return rid, attempt + 1, index


def annotations_json(
    urls: Urls, repo: GitHubRepo, plan: RunPlan, attempt: Attempt, job: JobPlan, now: int
) -> list[dict[str, Any]]:
    """The annotations of a job's check run at `now`: for a failed job, one `failure` per failed
    test case (simulator/reports.py, once the attempt is done), a `warning`, and the runner's
    "Process completed with exit code 1."; none for any other job."""
    word, _started, finished = job.status_at(attempt, now)
    if finished is None or word not in _FAILED_JOB_WORDS:
        return []
    blob = f"{urls.web}/{repo.full_name}/blob/{plan.sha}"
    path = f"tests/test_{job.name.lower().replace(' ', '_')}.py"
    found = [
        case
        for case in reports.cases(attempt, now) or []
        if case.classname == job.name and case.status == "failed"
    ]
    notes = [
        annotation(
            f"{blob}/{path}",
            path,
            10 * k,
            "failure",
            f"{case.classname}::{case.name}",
            f"AssertionError: {case.name} failed",
        )
        for k, case in enumerate(found, 1)
    ]
    # An error or warning with no file: GitHub's path `.github` and its own `<path>#L<line>`
    # title (as annotations read from the API show them, tests/fixtures/SOURCES.md).
    for level, message in (
        ("warning", "Node.js 16 actions are deprecated."),
        ("failure", RUNNER_EXIT),
    ):
        notes.append(
            annotation(f"{blob}/.github", ".github", 1, level, ".github#L1", message, None)
        )
    return notes


def annotation(
    blob: str,
    path: str,
    line: int,
    level: str,
    title: str,
    message: str,
    raw_details: str | None = "",
) -> dict[str, Any]:
    """One annotation, its keys in the order of the `check-annotation-items` example."""
    return {
        "path": path,
        "start_line": line,
        "end_line": line,
        "start_column": None,
        "end_column": None,
        "annotation_level": level,
        "title": title,
        "message": message,
        "raw_details": raw_details,
        "blob_href": blob,
    }


def check_run_json(
    urls: Urls,
    stride: int,
    repo: GitHubRepo,
    plan: RunPlan,
    attempt: Attempt,
    job: JobPlan,
    now: int,
) -> dict[str, Any]:
    """A job's check run (the `check-run` schema), as GitHub Actions makes one per job."""
    j = job_json(urls, stride, repo, plan, attempt, job, now)
    count = len(annotations_json(urls, repo, plan, attempt, job, now))
    url = j["check_run_url"]
    suite = run_id(stride, repo, plan.n) * 10 + attempt.number
    return {
        "id": j["id"],
        "head_sha": plan.sha,
        "node_id": j["node_id"],
        "external_id": "",
        "url": url,
        "html_url": j["html_url"],
        "details_url": j["html_url"],
        "status": j["status"],
        "conclusion": j["conclusion"],
        "started_at": j["started_at"],
        "completed_at": j["completed_at"],
        "output": {
            "title": f"{job.name} failed" if count else None,
            "summary": f"{count} annotations" if count else None,
            "text": None,
            "annotations_count": count,
            "annotations_url": f"{url}/annotations",
        },
        "name": job.name,
        "check_suite": {"id": suite},
        "app": actions_app(urls),
        "pull_requests": [],
    }


def actions_app(urls: Urls) -> dict[str, Any]:
    """The GitHub App that owns the check runs of Actions jobs (`app` of the `check-run`)."""
    # Seconds and a numeric offset, as in GitHub's `check-run` example.
    created = (github_time(urls.start_ms - 3 * 365 * 86_400_000) or "").replace("Z", "+00:00")
    return {
        "id": 15368,
        "slug": "github-actions",
        "node_id": node_id("Integration", 15368),
        "owner": user(urls, "github", "Organization"),
        "name": "GitHub Actions",
        "description": "Automate your workflow from idea to production",
        "external_url": "https://help.github.com/en/actions",
        "html_url": f"{urls.web}/apps/github-actions",
        "created_at": created,
        "updated_at": created,
        "permissions": {
            "metadata": "read",
            "contents": "write",
            "issues": "write",
            "single_file": "write",
        },
        "events": ["check_run", "check_suite", "push", "pull_request"],
    }

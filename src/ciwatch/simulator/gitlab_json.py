"""GitLab API payloads (shaped like tests/fixtures/gitlab/api), built from run plans."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from yarl import URL

from ciwatch.simulator import reports
from ciwatch.simulator.httputil import gitlab_time, offset_time
from ciwatch.simulator.plans import FOREVER, Attempt, JobPlan, RunPlan
from ciwatch.simulator.world import GitLabGroup, GitLabProject

RESULT_WORD = {
    "success": "success",
    "failed": "failed",
    "canceled": "canceled",
    "skipped": "skipped",
    "manual": "manual",
    "unstable": "failed",
    "timed_out": "failed",
}
SOURCE = {
    "push": "push",
    "manual": "web",
    "schedule": "schedule",
    "merge_request": "merge_request_event",
}
_DETAIL_TEXT = {"success": "passed", "manual": "blocked", "pending": "pending"}
_FAILURE_REASON = {"timed_out": "job_execution_timeout", "unstable": "script_failure"}
_AVATAR = "https://www.gravatar.com/avatar/{}?s=80&d=identicon"
_DAY_MS = 86_400_000


class Urls:
    """Absolute URLs for one request: `root` is `{server}/gitlab`."""

    def __init__(self, root: str, start_ms: int) -> None:
        self.root = root
        self.start_ms = start_ms

    def t(self, offset: int | None) -> str | None:
        return None if offset is None or offset >= FOREVER else gitlab_time(self.start_ms + offset)


def pipeline_id(stride: int, project: GitLabProject, n: int) -> int:
    return (n + 1) * stride + project.index


def run_index(stride: int, project: GitLabProject, pid: int) -> int | None:
    n, index = divmod(pid, stride)
    return n - 1 if index == project.index and n >= 1 else None


def status(plan: RunPlan, now: int) -> str:
    attempt = plan.attempt_at(now)
    phase = attempt.phase(now)
    if phase == "queued":
        return "pending"
    return "running" if phase == "running" else RESULT_WORD[attempt.result]


def user_id(name: str) -> int:
    return zlib.crc32(name.encode()) % 9000 + 1000


def short_user(urls: Urls, name: str) -> dict[str, Any]:
    return {
        "id": user_id(name),
        "username": name,
        "name": name.title(),
        "state": "active",
        "avatar_url": _AVATAR.format(f"{user_id(name):032x}"),
        "web_url": f"{urls.root}/{name}",
    }


def pipeline_item(
    urls: Urls, stride: int, project: GitLabProject, plan: RunPlan, now: int
) -> dict[str, Any]:
    pid = pipeline_id(stride, project, plan.n)
    return {
        "id": pid,
        "iid": plan.n + 1,
        "project_id": project.id,
        "status": status(plan, now),
        "source": SOURCE.get(plan.event, "push"),
        "ref": plan.ref,
        "sha": plan.sha,
        "name": "Build pipeline",
        "web_url": f"{urls.root}/{project.path}/-/pipelines/{pid}",
        "created_at": urls.t(plan.created),
        "updated_at": urls.t(plan.updated(now)),
    }


def pipeline_detail(
    urls: Urls, stride: int, project: GitLabProject, plan: RunPlan, now: int
) -> dict[str, Any]:
    item = pipeline_item(urls, stride, project, plan, now)
    word = item["status"]
    first = plan.attempts[0]
    current = plan.attempt_at(now)
    done = current.phase(now) == "done"
    ran = [a for a in plan.attempts if a.queued <= now and a.phase(now) == "done"]
    return {
        "id": item["id"],
        "iid": item["iid"],
        "project_id": project.id,
        "name": item["name"],
        "sha": plan.sha,
        "ref": plan.ref,
        "status": word,
        "source": item["source"],
        "created_at": item["created_at"],
        "updated_at": item["updated_at"],
        "web_url": item["web_url"],
        "before_sha": "0" * 40,
        "tag": False,
        "yaml_errors": None,
        "user": short_user(urls, plan.author),
        "started_at": urls.t(first.started) if now >= first.started else None,
        "finished_at": urls.t(current.finished) if done else None,
        "committed_at": None,
        "duration": sum(a.finished - a.started for a in ran) // 1000 if done else None,
        "queued_duration": (first.started - first.queued) // 1000 if now >= first.started else None,
        "coverage": None,
        "detailed_status": {
            "icon": f"status_{word}",
            "text": _DETAIL_TEXT.get(word, word),
            "label": _DETAIL_TEXT.get(word, word),
            "group": word,
            "tooltip": _DETAIL_TEXT.get(word, word),
            "has_details": False,
            "details_path": f"/{project.path}/-/pipelines/{item['id']}",
            "illustration": None,
            "favicon": f"/assets/ci_favicons/favicon_status_{word}.png",
        },
    }


def jobs(
    urls: Urls, stride: int, project: GitLabProject, plan: RunPlan, now: int, *, retried: bool
) -> list[dict[str, Any]]:
    """The pipeline's jobs by id: after a retry, the retried jobs' new versions replace the old
    ones (which `retried` adds back)."""
    pid = pipeline_id(stride, project, plan.n)
    current = plan.attempt_at(now)
    first = plan.attempts[0]
    rows: list[tuple[Attempt, JobPlan]] = []
    for job in first.jobs:
        redone = current.number > 1 and job.result != "success"
        if not redone or retried:
            rows.append((first, job))
        if redone:
            rows.append((current, current.jobs[job.index]))
    return [job_json(urls, project, plan, pid, a, j, now) for a, j in rows]


def job_json(
    urls: Urls,
    project: GitLabProject,
    plan: RunPlan,
    pid: int,
    attempt: Attempt,
    job: JobPlan,
    now: int,
) -> dict[str, Any]:
    word, started, finished = job.status_at(attempt, now)
    if word == "waiting":
        word = "pending" if job.start == 0 and now >= attempt.queued else "created"
    else:
        word = RESULT_WORD.get(word, word)
    job_id = pid * 100 + (attempt.number - 1) * 50 + job.index
    data: dict[str, Any] = {
        "commit": commit(urls, plan),
        "coverage": None,
        "allow_failure": False,
        "created_at": urls.t(attempt.queued),
        "started_at": urls.t(started),
        "finished_at": urls.t(finished),
        "duration": (finished - started) / 1000
        if finished is not None and started is not None
        else None,
        "queued_duration": (started - attempt.queued) / 1000 if started is not None else None,
        "artifacts_expire_at": urls.t(finished + 30 * _DAY_MS) if finished is not None else None,
        "tag_list": ["docker", "linux"],
        "id": job_id,
        "name": job.name,
        "pipeline": {
            "id": pid,
            "project_id": project.id,
            "ref": plan.ref,
            "sha": plan.sha,
            "status": status(plan, now),
        },
        "ref": plan.ref,
        "artifacts": [],
        "runner": runner(job) if started is not None else None,
        "stage": job.stage,
        "status": word,
        "tag": False,
        "web_url": f"{urls.root}/{project.path}/-/jobs/{job_id}",
        "project": {"ci_job_token_scope_enabled": False},
        "user": long_user(urls, plan.author),
    }
    if word == "failed":
        data["failure_reason"] = _FAILURE_REASON.get(job.result, "script_failure")
    return data


def runner(job: JobPlan) -> dict[str, Any]:
    number = job.index % 4 + 1
    return {
        "id": number,
        "description": f"shared-runner-{number}",
        "ip_address": None,
        "active": True,
        "paused": False,
        "is_shared": True,
        "runner_type": "instance_type",
        "name": "gitlab-runner",
        "online": True,
        "status": "online",
    }


def commit(urls: Urls, plan: RunPlan) -> dict[str, Any]:
    return {
        "author_email": f"{plan.author}@example.com",
        "author_name": plan.author.title(),
        "created_at": offset_time(urls.start_ms + plan.created - 30_000),
        "id": plan.sha,
        "message": plan.message,
        "short_id": plan.sha[:8],
        "title": plan.message,
    }


def long_user(urls: Urls, name: str) -> dict[str, Any]:
    user = short_user(urls, name)
    user["created_at"] = gitlab_time(urls.start_ms - 400 * _DAY_MS)
    user.update(bio=None, location=None, public_email="", skype="", linkedin="", twitter="")
    user.update(website_url="", organization="")
    return {k: user[k] for k in _LONG_USER_KEYS}


_LONG_USER_KEYS = (
    "id",
    "name",
    "username",
    "state",
    "avatar_url",
    "web_url",
    "created_at",
    "bio",
    "location",
    "public_email",
    "skype",
    "linkedin",
    "twitter",
    "website_url",
    "organization",
)


def namespace(urls: Urls, group: GitLabGroup | None) -> dict[str, Any]:
    if group is None:
        return {
            "id": 1,
            "name": "root",
            "path": "root",
            "kind": "user",
            "full_path": "root",
            "parent_id": None,
            "avatar_url": None,
            "web_url": f"{urls.root}/root",
        }
    return {
        "id": group.id,
        "name": group.name,
        "path": group.name,
        "kind": "group",
        "full_path": group.full_path,
        "parent_id": group.parent_id,
        "avatar_url": None,
        "web_url": f"{urls.root}/groups/{group.full_path}",
    }


def project_json(
    urls: Urls, project: GitLabProject, group: GitLabGroup | None, last: int | None
) -> dict[str, Any]:
    """`GET /projects/:id` (the documented fields ciwatch can use; there is no fixture)."""
    web_url = f"{urls.root}/{project.path}"
    host = URL(urls.root).host
    return {
        "id": project.id,
        "description": f"Simulated project {project.path}",
        "name": project.name,
        "name_with_namespace": " / ".join(project.path.split("/")),
        "path": project.name,
        "path_with_namespace": project.path,
        "created_at": gitlab_time(urls.start_ms - 365 * _DAY_MS),
        "default_branch": project.refs[0],
        "tag_list": [],
        "topics": [],
        "ssh_url_to_repo": f"git@{host}:{project.path}.git",
        "http_url_to_repo": f"{web_url}.git",
        "web_url": web_url,
        "readme_url": f"{web_url}/-/blob/{project.refs[0]}/README.md",
        "avatar_url": None,
        "forks_count": 0,
        "star_count": 0,
        "last_activity_at": urls.t(last) if last is not None else gitlab_time(urls.start_ms),
        "namespace": namespace(urls, group),
        "archived": False,
        "visibility": "private",
        "empty_repo": False,
        "jobs_enabled": True,
    }


def commit_detail(urls: Urls, project: GitLabProject, plan: RunPlan) -> dict[str, Any]:
    """`GET /projects/:id/repository/commits/:sha` (doc/api/commits.md "Get a single commit")."""
    authored = offset_time(urls.start_ms + plan.created - 30_000)
    return {
        **commit(urls, plan),
        "committer_name": plan.author.title(),
        "committer_email": f"{plan.author}@example.com",
        "committed_date": authored,
        "authored_date": authored,
        "parent_ids": [],
        "web_url": f"{urls.root}/{project.path}/-/commit/{plan.sha}",
        "stats": {"additions": 1, "deletions": 1, "total": 2},
        "status": None,
    }


def compare(
    urls: Urls, project: GitLabProject, base: str, head: str, plans: Sequence[RunPlan]
) -> dict[str, Any]:
    """`GET /projects/:id/repository/compare` (doc/api/repositories.md "Compare branches,
    tags, or commits"): `commits` oldest first, `commit` the newest; no diffs."""
    commits = [commit(urls, plan) for plan in plans]
    return {
        "commit": commits[-1] if commits else None,
        "commits": commits,
        "diffs": [],
        "compare_timeout": False,
        "compare_same_ref": base == head,
        "web_url": f"{urls.root}/{project.path}/-/compare/{base}...{head}",
    }


def test_report(attempt: Attempt, now: int) -> dict[str, Any]:
    """`GET .../pipelines/:id/test_report` (doc/api/pipelines.md): one suite per job."""
    found = reports.cases(attempt, now) or []
    suites: dict[str, list[reports.Case]] = {}
    for case in found:
        suites.setdefault(case.classname, []).append(case)
    total = reports.counts(found)
    return {
        "total_time": 0,
        "total_count": total["total"],
        "success_count": total["success"],
        "failed_count": total["failed"],
        "skipped_count": total["skipped"],
        "error_count": 0,
        "test_suites": [
            {
                "name": name,
                "total_time": 0,
                "total_count": len(group),
                "success_count": sum(c.status == "success" for c in group),
                "failed_count": sum(c.status == "failed" for c in group),
                "skipped_count": sum(c.status == "skipped" for c in group),
                "error_count": 0,
                "test_cases": [
                    {
                        "status": case.status,
                        "name": case.name,
                        "classname": case.classname,
                        "execution_time": 0,
                        "system_output": None,
                        "stack_trace": None,
                    }
                    for case in group
                ],
            }
            for name, group in suites.items()
        ],
    }


def test_report_summary(attempt: Attempt, now: int) -> dict[str, Any]:
    """`GET .../pipelines/:id/test_report_summary` (doc/api/pipelines.md)."""
    found = reports.cases(attempt, now) or []
    total = reports.counts(found)
    suites = sorted({case.classname for case in found})
    return {
        "total": {
            "time": 0,
            "count": total["total"],
            "success": total["success"],
            "failed": total["failed"],
            "skipped": total["skipped"],
            "error": 0,
            "suite_error": None,
        },
        "test_suites": [
            {
                "name": name,
                "total_time": 0,
                "total_count": sum(c.classname == name for c in found),
                "success_count": sum(c.classname == name and c.status == "success" for c in found),
                "failed_count": sum(c.classname == name and c.status == "failed" for c in found),
                "skipped_count": sum(c.classname == name and c.status == "skipped" for c in found),
                "error_count": 0,
                "build_ids": [],
                "suite_error": None,
            }
            for name in suites
        ],
    }

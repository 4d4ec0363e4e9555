"""What a source watches: one function per fact, shared by the pollers and the webhook receivers.

A poller watches what it discovers (explicit projects, repos and jobs, plus what it lists under
groups, organisations, users and folders) minus `exclude_projects`, and keeps the runs whose ref
passes `refs` / `exclude_refs` and, on GitHub, whose workflow passes `workflows`. A webhook
names its project, ref and workflow itself, so `unwatched` makes the same decision from them:

- **projects**: listed (`projects`, `repos`, `jobs`), or under a listed group path (GitLab
  lists groups with their subgroups: `platform` covers `platform/tools/app`), owned by a listed
  organisation or user (GitHub: `octo-org` covers `octo-org/*`), or inside a listed folder
  (Jenkins, at any depth). A Jenkins job listed in `jobs` also covers the jobs inside it (the
  branch jobs of a multibranch project notify as `project/branch`). GitLab and GitHub paths are
  compared without regard to case, as both servers treat them; Jenkins names are exact. Then
  `exclude_projects` (`exclude_project`), exactly as discovery applies it.
- **refs**: `ref_wanted`, exactly as polls apply it (a run without a ref passes only when
  `refs` is empty).
- **workflows** (GitHub): `workflow_wanted`, exactly as polls apply it.

Discovery also skips archived projects and repositories; a webhook does not say whether its
project is archived, and an archived project runs no pipelines, so that is not checked here.

The vendor fields a job delivery carries beside the job (a GitLab Job Hook's `ref`, a GitHub
`workflow_job`'s `head_branch` and `workflow_name`) are read by `gitlab_job_scope` and
`github_job_scope`.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Final, Literal

from ciwatch.config import GitHubSource, GitLabSource, JenkinsSource, SourceSettings
from ciwatch.providers.base import matches, wanted
from ciwatch.providers.common import Body, Payload, decode


class _Unknown(Enum):
    UNKNOWN = "unknown"


# A fact the delivery does not carry: not checked (a GitHub `workflow_job` without
# `workflow_name`, as older GitHub Enterprise versions send it).
UNKNOWN: Final = _Unknown.UNKNOWN
Fact = str | Literal[_Unknown.UNKNOWN] | None


def exclude_project(settings: SourceSettings, project: str) -> bool:
    """Whether `exclude_projects` drops `project` (discovery and webhooks)."""
    return not wanted(project, [], settings.exclude_projects)


def ref_wanted(settings: SourceSettings, ref: str | None) -> bool:
    """Whether a run on `ref` is kept: `refs` (empty: every ref) minus `exclude_refs`."""
    return wanted(ref, settings.refs, settings.exclude_refs)


def workflow_wanted(settings: SourceSettings, workflow: str | None) -> bool:
    """Whether a run of `workflow` is kept: GitHub's `workflows` globs (empty: every one)."""
    if not isinstance(settings, GitHubSource) or not settings.workflows:
        return True
    return matches(workflow or "", settings.workflows)


def _under(name: str, prefixes: Sequence[str], *, fold: bool) -> bool:
    value = name.casefold() if fold else name
    for prefix in prefixes:
        base = (prefix.casefold() if fold else prefix).strip("/")
        if value.startswith(base + "/"):
            return True
    return False


def _listed(name: str, names: Sequence[str], *, fold: bool) -> bool:
    if fold:
        return name.casefold() in {n.casefold() for n in names}
    return name in names


def project_member(settings: SourceSettings, project: str) -> bool:
    """Whether `project` is one the source lists or finds by discovery (before
    `exclude_projects`)."""
    if isinstance(settings, GitLabSource):
        return _listed(project, settings.projects, fold=True) or _under(
            project, settings.groups, fold=True
        )
    if isinstance(settings, GitHubSource):
        owners = [*settings.orgs, *settings.users]
        return _listed(project, settings.repos, fold=True) or (
            project.count("/") == 1 and _under(project, owners, fold=True)
        )
    assert isinstance(settings, JenkinsSource)
    return _listed(project, settings.jobs, fold=False) or _under(
        project, [*settings.jobs, *settings.folders], fold=False
    )


def _lists(settings: SourceSettings) -> str:
    shown = [f"{key}: {', '.join(getattr(settings, key))}" for key in settings.WATCH_FIELDS]
    return "; ".join(item for item in shown if not item.endswith(": "))


def unwatched(
    settings: SourceSettings,
    project: str,
    ref: Fact = UNKNOWN,
    workflow: Fact = UNKNOWN,
) -> str | None:
    """Why the source does not watch a delivery about `project` (on `ref`, of `workflow`), or
    None when it does (or when the source sets `webhooks_accept_unwatched`)."""
    if settings.webhooks_accept_unwatched:
        return None
    name = settings.name
    if not project_member(settings, project):
        return f"project {project!r} is not watched by source {name!r} ({_lists(settings)})"
    if exclude_project(settings, project):
        globs = ", ".join(settings.exclude_projects)
        return f"project {project!r} is excluded by exclude_projects ({globs})"
    if ref is not UNKNOWN and not ref_wanted(settings, ref):
        return f"ref {ref!r} is not watched by source {name!r} ({_ref_globs(settings)})"
    if workflow is not UNKNOWN and not workflow_wanted(settings, workflow):
        assert isinstance(settings, GitHubSource)
        globs = ", ".join(settings.workflows)
        return f"workflow {workflow!r} is not watched by source {name!r} (workflows: {globs})"
    return None


def _ref_globs(settings: SourceSettings) -> str:
    parts = []
    if settings.refs:
        parts.append(f"refs: {', '.join(settings.refs)}")
    if settings.exclude_refs:
        parts.append(f"exclude_refs: {', '.join(settings.exclude_refs)}")
    return "; ".join(parts)


# -- the scope of job deliveries ------------------------------------------------------------


class _GitLabJobHook(Payload):
    ref: str | None = None


class _GitHubJob(Payload):
    head_branch: str | None = None
    workflow_name: str | None = None


class _GitHubJobEvent(Payload):
    workflow_job: _GitHubJob


def gitlab_job_scope(body: Body) -> str | None:
    """The ref of a GitLab Job Hook (its top-level `ref`)."""
    return decode(body, _GitLabJobHook, "GitLab Job Hook").ref


def github_job_scope(body: Body) -> tuple[str | None, Fact]:
    """The ref (`head_branch`) and workflow (`workflow_name`, else `UNKNOWN`) of a GitHub
    `workflow_job` event."""
    job = decode(body, _GitHubJobEvent, "GitHub workflow_job event").workflow_job
    return job.head_branch, job.workflow_name if job.workflow_name is not None else UNKNOWN

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

Which projects a source lists is each source model's `project_member` (in its provider module);
the vendor fields a job delivery carries beside the job (a GitLab Job Hook's `ref`, a GitHub
`workflow_job`'s `head_branch` and `workflow_name`) are read by the provider's webhook handler.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Final, Literal

from ciwatch.config.base import BaseSource
from ciwatch.providers.base import matches, wanted


class _Unknown(Enum):
    UNKNOWN = "unknown"


# A fact the delivery does not carry: not checked (a GitHub `workflow_job` without
# `workflow_name`, as older GitHub Enterprise versions send it).
UNKNOWN: Final = _Unknown.UNKNOWN
Fact = str | Literal[_Unknown.UNKNOWN] | None


def exclude_project(settings: BaseSource, project: str) -> bool:
    """Whether `exclude_projects` drops `project` (discovery and webhooks)."""
    return not wanted(project, [], settings.exclude_projects)


def ref_wanted(settings: BaseSource, ref: str | None) -> bool:
    """Whether a run on `ref` is kept: `refs` (empty: every ref) minus `exclude_refs`."""
    return wanted(ref, settings.refs, settings.exclude_refs)


def workflow_wanted(settings: BaseSource, workflow: str | None) -> bool:
    """Whether a run of `workflow` is kept: the source's workflow globs (GitHub's `workflows`;
    empty, or a kind without workflows: every one)."""
    globs = settings.workflow_globs()
    return not globs or matches(workflow or "", globs)


def under(name: str, prefixes: Sequence[str], *, fold: bool) -> bool:
    """Whether `name` is below one of `prefixes` (a group path, an owner, a folder)."""
    value = name.casefold() if fold else name
    for prefix in prefixes:
        base = (prefix.casefold() if fold else prefix).strip("/")
        if value.startswith(base + "/"):
            return True
    return False


def listed(name: str, names: Sequence[str], *, fold: bool) -> bool:
    """Whether `name` is one of `names` (without regard to case when `fold`)."""
    if fold:
        return name.casefold() in {n.casefold() for n in names}
    return name in names


def project_member(settings: BaseSource, project: str) -> bool:
    """Whether `project` is one the source lists or finds by discovery (before
    `exclude_projects`): each source model's `project_member`, in its provider module."""
    return settings.project_member(project)


def _lists(settings: BaseSource) -> str:
    shown = [f"{key}: {', '.join(getattr(settings, key))}" for key in settings.WATCH_FIELDS]
    return "; ".join(item for item in shown if not item.endswith(": "))


def unwatched(
    settings: BaseSource,
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
        globs = ", ".join(settings.workflow_globs())
        return f"workflow {workflow!r} is not watched by source {name!r} (workflows: {globs})"
    return None


def _ref_globs(settings: BaseSource) -> str:
    parts = []
    if settings.refs:
        parts.append(f"refs: {', '.join(settings.refs)}")
    if settings.exclude_refs:
        parts.append(f"exclude_refs: {', '.join(settings.exclude_refs)}")
    return "; ".join(parts)

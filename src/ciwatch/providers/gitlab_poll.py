"""GitLab CI polling: incremental pipeline lists, jobs of changed pipelines, group discovery.

Each poll is one request when nothing changed: `GET /projects/:id/pipelines` with
`updated_after` (the stored cursor minus an overlap for clock skew) and
`order_by=updated_at&sort=desc`. The first poll of a project fetches the `backfill` newest
pipelines instead. Nothing changed is known without decoding: an empty page (`[]`), or a page
identical byte for byte to the previous incremental answer (its hash is kept as the target's
`etag`; the newest pipeline is always in the overlap, so an idle project answers the same page).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from ciwatch.clock import Clock
from ciwatch.domain import (
    MAX_FAILING_TESTS,
    MAX_RANGE_COMMITS,
    CommitRange,
    Job,
    Run,
    Status,
    Target,
    TargetState,
)
from ciwatch.http import HttpClient
from ciwatch.providers import gitlab
from ciwatch.providers.base import PollResult
from ciwatch.providers.common import body_tag
from ciwatch.providers.gitlab import GitLabSource
from ciwatch.providers.watch import exclude_project, ref_wanted
from ciwatch.timeutil import iso_z, parse_time

# Re-read pipelines updated this long before the cursor: clocks of GitLab and ciwatch differ,
# and a pipeline updated during our previous request must not be skipped.
OVERLAP = timedelta(seconds=60)
PER_PAGE = 100
MAX_PAGES = 10


def _pid(project: str) -> str:
    return quote(project, safe="")


class GitLabProvider:
    kind = "gitlab"

    def __init__(self, settings: GitLabSource, http: HttpClient, clock: Clock) -> None:
        self.settings = settings
        self.source = settings.name
        self.http = http
        self.clock = clock

    async def close(self) -> None:
        await self.http.close()

    async def discover(self) -> list[Target]:
        names: dict[str, None] = dict.fromkeys(self.settings.projects)
        for group in self.settings.groups:
            page: int | None = 1
            while page is not None:
                resp = await self.http.get(
                    f"api/v4/groups/{_pid(group)}/projects",
                    params={
                        "include_subgroups": "true",
                        "archived": "false",
                        "per_page": PER_PAGE,
                        "page": page,
                        "order_by": "id",
                        "sort": "asc",
                    },
                    target=f"group {group}",
                )
                for project in gitlab.parse_projects(resp.body):
                    names.setdefault(project.path_with_namespace)
                page = _next_page(resp.headers)
        return [
            Target(self.source, self.kind, name)
            for name in names
            if not exclude_project(self.settings, name)
        ]

    async def poll(self, target: Target, state: TargetState | None) -> PollResult:
        cursor = parse_time(state.cursor) if state and state.cursor else None
        params: dict[str, str | int] = {"order_by": "updated_at", "sort": "desc"}
        if cursor is None:
            # First sight: the newest `backfill` pipelines, in as few pages as possible.
            limit = self.settings.backfill
            params["per_page"] = max(1, min(limit, PER_PAGE))
        else:
            limit = PER_PAGE * MAX_PAGES
            params["per_page"] = PER_PAGE
            params["updated_after"] = iso_z(cursor - OVERLAP) or ""
        path = f"api/v4/projects/{_pid(target.project)}/pipelines"
        runs: list[Run] = []
        requests = 0
        tag: str | None = None
        page: int | None = 1
        while page is not None and len(runs) < max(limit, 1):
            resp = await self.http.get(path, params={**params, "page": page}, target=target.project)
            requests += 1
            page = _next_page(resp.headers)
            if state is not None and cursor is not None and not runs:
                if _empty(resp.body):
                    # Nothing updated since the cursor: not decoded, the state stays as it is.
                    return PollResult([], state, requests=requests)
                if page is None:
                    tag = body_tag(resp.body)
                    if state.etag == tag:
                        # The overlap's pipelines, byte for byte as last time (the newest is
                        # always in it: `updated_after` is the cursor minus OVERLAP): not decoded.
                        return PollResult([], state, not_modified=True, requests=requests)
            runs.extend(gitlab.parse_pipelines(self.source, target.project, resp.body))
        runs = runs[: max(limit, 0)]
        newest = max((run.updated_at for run in runs), default=cursor)
        kept = [run for run in runs if ref_wanted(self.settings, run.ref)]
        new_state = TargetState(
            self.source,
            target.project,
            cursor=iso_z(newest) if newest else None,
            # Saved once these runs are stored: an identical answer later means stored.
            etag=tag if cursor is not None else None,
            extra=state.extra if state else {},
        )
        return PollResult(kept, new_state, requests=requests)

    async def details(self, run: Run) -> tuple[Run, list[Job]]:
        # The list endpoint omits user, start time and durations: read the pipeline itself.
        resp = await self.http.get(
            f"api/v4/projects/{_pid(run.project)}/pipelines/{run.run_id}", target=run.project
        )
        full = gitlab.parse_pipeline(self.source, run.project, resp.body)
        full = await self._extras(full)
        return full, await self._jobs(full)

    async def _extras(self, run: Run) -> Run:
        """The commit of a failed run (the API's pipeline has no commit: one read of it) and,
        with `tests: true`, the test report of a finished run. Called for changed runs only."""
        pid = _pid(run.project)
        changes: dict[str, Any] = {}
        if run.status is Status.FAILED and run.sha and run.commit_title is None:
            resp = await self.http.get(
                f"api/v4/projects/{pid}/repository/commits/{quote(run.sha, safe='')}",
                target=run.project,
            )
            changes.update(gitlab.parse_commit(resp.body))
        if self.settings.tests and run.status.terminal:
            resp = await self.http.get(
                f"api/v4/projects/{pid}/pipelines/{run.run_id}/test_report_summary",
                target=run.project,
            )
            counts = gitlab.parse_test_summary(resp.body)
            changes.update(counts)
            if (counts["tests_failed"] or 0) + (counts["tests_errored"] or 0) > 0:
                # The full report only when something failed: it carries every case.
                resp = await self.http.get(
                    f"api/v4/projects/{pid}/pipelines/{run.run_id}/test_report",
                    target=run.project,
                )
                changes["tests_failing"] = gitlab.parse_failing_tests(resp.body, MAX_FAILING_TESTS)
        return replace(run, **changes) if changes else run

    async def commits_between(self, green: Run, failing: Run) -> CommitRange:
        """One `repository/compare?from=<green>&to=<failing>` (`CommitRangeReader`)."""
        resp = await self.http.get(
            f"api/v4/projects/{_pid(failing.project)}/repository/compare",
            params={"from": green.sha or "", "to": failing.sha or ""},
            target=failing.project,
        )
        return gitlab.parse_compare(resp.body, MAX_RANGE_COMMITS)

    async def _jobs(self, run: Run) -> list[Job]:
        path = f"api/v4/projects/{_pid(run.project)}/pipelines/{run.run_id}/jobs"
        jobs: list[Job] = []
        page: int | None = 1
        while page is not None:
            # Retried jobs too: a job that failed and passed on retry is how a flaky job shows
            # (docs/dashboard.md, "Flaky jobs"); each retry is its own job id.
            params: dict[str, str | int] = {
                "per_page": PER_PAGE,
                "page": page,
                "include_retried": "true",
            }
            resp = await self.http.get(path, params=params, target=run.project)
            jobs.extend(gitlab.parse_jobs(self.source, run.project, run.run_id, resp.body))
            page = _next_page(resp.headers)
        return jobs


def _empty(body: bytes) -> bool:
    """Whether a list answer is the empty JSON array (`[]`, white space allowed)."""
    text = body.strip() if len(body) < 64 else b""
    return text[:1] == b"[" and text[-1:] == b"]" and not text[1:-1].strip()


def _next_page(headers: Mapping[str, str]) -> int | None:
    value = headers.get("x-next-page")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        return None

"""GitHub Actions polling: conditional requests on a stable URL, jobs of changed runs, repo
discovery for organisations and users.

`GET /repos/{owner}/{repo}/actions/runs?per_page=N` is asked with the stored ETag in
`If-None-Match`; GitHub answers 304, which costs no rate limit, while nothing changed. The URL
never moves (no `created>=` filter), or the ETag would never match. N is `backfill` (at most
100): more runs than that starting between two polls are reconciled only by later polls of
their own (a documented limit).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
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
from ciwatch.errors import AuthFailed, NotFound
from ciwatch.http import HttpClient
from ciwatch.providers import github
from ciwatch.providers.base import PollResult
from ciwatch.providers.github import GitHubSource
from ciwatch.providers.watch import exclude_project, ref_wanted, workflow_wanted

log = logging.getLogger(__name__)

PER_PAGE = 100
# Failed check runs whose annotations are read per failed run (`tests: true`): with the commit's
# check-run list, a failed run costs at most 1 + MAX_ANNOTATED requests.
MAX_ANNOTATED = 3


class GitHubProvider:
    kind = "github"

    def __init__(self, settings: GitHubSource, http: HttpClient, clock: Clock) -> None:
        self.settings = settings
        self.source = settings.name
        self.http = http
        self.clock = clock
        # Why the check runs could not be read (logged the first time), else None.
        self._checks_refused: str | None = None

    async def close(self) -> None:
        await self.http.close()

    async def discover(self) -> list[Target]:
        names: dict[str, None] = dict.fromkeys(self.settings.repos)
        owners = [f"orgs/{org}" for org in self.settings.orgs]
        owners += [f"users/{user}" for user in self.settings.users]
        for owner in owners:
            url: str | None = f"{owner}/repos"
            params: dict[str, str | int] | None = {"per_page": PER_PAGE, "type": "all"}
            while url is not None:
                resp = await self.http.get(url, params=params, target=owner)
                for repo in github.parse_repos(resp.body):
                    if not repo.archived:
                        names.setdefault(repo.full_name)
                url, params = _next_link(resp.headers), None
        return [
            Target(self.source, self.kind, name)
            for name in names
            if not exclude_project(self.settings, name)
        ]

    def _repo(self, project: str) -> str:
        return "/".join(quote(part, safe="") for part in project.split("/", 1))

    async def poll(self, target: Target, state: TargetState | None) -> PollResult:
        per_page = max(1, min(self.settings.backfill, PER_PAGE))
        etag = state.etag if state else None
        resp = await self.http.get(
            f"repos/{self._repo(target.project)}/actions/runs",
            params={"per_page": per_page},
            etag=etag,
            target=target.project,
        )
        previous = state or TargetState(self.source, target.project)
        if resp.not_modified:
            return PollResult([], previous, not_modified=True, requests=1)
        runs = [
            run
            for run in github.parse_runs(self.source, target.project, resp.body)
            if ref_wanted(self.settings, run.ref) and workflow_wanted(self.settings, run.workflow)
        ]
        new_state = replace(previous, etag=resp.headers.get("etag"))
        return PollResult(runs, new_state, requests=1)

    async def run(self, project: str, run_id: str) -> Run:
        """`GET /repos/{owner}/{repo}/actions/runs/{run_id}`: one run (for a `workflow_job`
        webhook whose run is not stored yet)."""
        resp = await self.http.get(
            f"repos/{self._repo(project)}/actions/runs/{quote(run_id, safe='')}", target=project
        )
        return github.parse_run(self.source, project, resp.body)

    async def commits_between(self, green: Run, failing: Run) -> CommitRange:
        """`compare/{green}...{failing}` (`CommitRangeReader`): one page of `PER_PAGE`
        commits, oldest first; a range longer than that costs one more request, for the
        last page, which holds the newest commits."""
        path = (
            f"repos/{self._repo(failing.project)}/compare/"
            f"{quote(green.sha or '', safe='')}...{quote(failing.sha or '', safe='')}"
        )
        resp = await self.http.get(path, params={"per_page": PER_PAGE}, target=failing.project)
        pages = [github.parse_comparison(resp.body)]
        total = pages[0].total_commits or 0
        if total > PER_PAGE:
            last = -(-total // PER_PAGE)
            resp = await self.http.get(
                path, params={"per_page": PER_PAGE, "page": last}, target=failing.project
            )
            pages.append(github.parse_comparison(resp.body))
        return github.comparison_range(pages, MAX_RANGE_COMMITS)

    async def details(self, run: Run) -> tuple[Run, list[Job]]:
        url: str | None = f"repos/{self._repo(run.project)}/actions/runs/{run.run_id}/jobs"
        params: dict[str, str | int] | None = {"per_page": PER_PAGE, "filter": "all"}
        # `filter=all`: the jobs of every attempt (each has its own job id), so a job that failed
        # in attempt 1 and passed in attempt 2 stays visible as flaky.
        jobs: list[Job] = []
        while url is not None:
            resp = await self.http.get(url, params=params, target=run.project)
            jobs.extend(github.parse_jobs(self.source, run.project, run.run_id, resp.body))
            url, params = _next_link(resp.headers), None
        return await self._tests(run, jobs), jobs

    async def _tests(self, run: Run, jobs: list[Job]) -> Run:
        """With `tests: true`, the failing tests of a failed run from check-run annotations:
        `GET .../commits/{sha}/check-runs` (first page), then the annotations (first page) of
        at most `MAX_ANNOTATED` failed check runs that have some, the run's own jobs first.
        At most `1 + MAX_ANNOTATED` requests, for changed failed runs only (`details`). GitHub
        gives no counts: `tests_failed` is the number of distinct failure annotations found,
        the other counts stay None; no failure annotation leaves the run as it was."""
        if not self.settings.tests or run.status is not Status.FAILED or not run.sha:
            return run
        repo = self._repo(run.project)
        names: dict[str, None] = {}
        try:
            resp = await self.http.get(
                f"repos/{repo}/commits/{quote(run.sha, safe='')}/check-runs",
                params={"per_page": PER_PAGE, "filter": "latest"},
                target=run.project,
            )
            own = [int(job.job_id) for job in jobs if job.job_id.isdigit()]
            for check_run in github.parse_failing_check_runs(resp.body, own, MAX_ANNOTATED):
                resp = await self.http.get(
                    f"repos/{repo}/check-runs/{check_run}/annotations",
                    params={"per_page": PER_PAGE},
                    target=run.project,
                )
                names.update(dict.fromkeys(github.parse_failing_annotations(resp.body)))
        except (AuthFailed, NotFound) as problem:
            # A token without the Checks permission (403) must not stop the run and its jobs
            # from being stored, poll after poll: the run keeps no tests, and it is logged.
            if self._checks_refused is None:
                log.warning(
                    "GitHub source %s: check runs not readable (%s); tests: true needs the "
                    "token's Checks (read) permission: failing tests are not read",
                    self.source,
                    problem,
                )
            self._checks_refused = str(problem)
            return run
        if not names:
            return run
        failing = tuple(list(names)[:MAX_FAILING_TESTS])
        return replace(run, tests_failed=len(names), tests_failing=failing)


def _next_link(headers: Mapping[str, str]) -> str | None:
    """The `rel="next"` URL of an RFC 8288 `Link` header."""
    for part in headers.get("link", "").split(","):
        section = part.split(";")
        if len(section) < 2:
            continue
        if any(p.strip() in ('rel="next"', "rel=next") for p in section[1:]):
            return section[0].strip().strip("<>")
    return None

"""Jenkins polling: one `tree=` request per job with a bounded `builds{0,N}` range, folders and
multibranch projects walked recursively, Pipeline stages through `wfapi` when present.

Jenkins has no conditional requests and no "changed since" filter, so each poll is one request
that returns the newest N builds; the scheduler asks the store which of them changed and only
those cost a `wfapi/describe` request. A body byte-identical to the previous poll's (its hash
is kept as the target's `etag`, which Jenkins itself never sends) is not decoded at all: the
poll is a "not modified".

A multibranch project is one target: its branch jobs come back in the same request, each
branch is a ref, and a run id is `<branch job name>/<build number>` (build numbers repeat
across branches).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import quote, unquote

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
from ciwatch.errors import BadPayload, NotFound
from ciwatch.http import HttpClient
from ciwatch.providers import jenkins
from ciwatch.providers.base import PollResult
from ciwatch.providers.common import body_tag
from ciwatch.providers.jenkins import JenkinsSource
from ciwatch.providers.watch import exclude_project, ref_wanted

BUILD_FIELDS = (
    "number,url,result,building,timestamp,duration,"
    "actions[causes[userId,userName,shortDescription],"
    "lastBuiltRevision[SHA1,branch[name]],queuingDurationMillis]"
)
QUEUE_FIELDS = "inQueue,nextBuildNumber,queueItem[id,inQueueSince,why]"
MULTIBRANCH = "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject"
PIPELINE = "org.jenkinsci.plugins.workflow.job.WorkflowJob"
DISCOVERY_DEPTH = 6
# The builds one commits-since-green request reads (newest first): a green build further back
# leaves the older commits out (the range is marked cut).
RANGE_BUILDS = 50


def job_path(full_name: str) -> str:
    """`team/app/main` → `job/team/job/app/job/main` (each segment URL-encoded once)."""
    return "/".join(f"job/{quote(part, safe='')}" for part in full_name.split("/") if part)


def _nested_jobs(depth: int) -> str:
    inner = "name,_class"
    for _ in range(depth):
        inner = f"name,_class,jobs[{inner}]"
    return f"jobs[{inner}]"


class JenkinsProvider:
    kind = "jenkins"

    def __init__(self, settings: JenkinsSource, http: HttpClient, clock: Clock) -> None:
        self.settings = settings
        self.source = settings.name
        self.http = http
        self.clock = clock
        # _class per project, learnt from polls: decides whether wfapi stages exist.
        self.classes: dict[str, str | None] = {}
        self._seen: set[str] = set()

    async def close(self) -> None:
        await self.http.close()

    async def discover(self) -> list[Target]:
        names: dict[str, None] = dict.fromkeys(self.settings.jobs)
        for folder in self.settings.folders:
            resp = await self.http.get(
                f"{job_path(folder)}/api/json",
                params={"tree": "name," + _nested_jobs(DISCOVERY_DEPTH)},
                target=f"folder {folder}",
            )
            top = jenkins.parse_job(self.source, resp.body)
            for name in _leaf_targets(folder, top.jobs):
                names.setdefault(name)
        return [
            Target(self.source, self.kind, name)
            for name in names
            if not exclude_project(self.settings, name)
        ]

    async def poll(self, target: Target, state: TargetState | None) -> PollResult:
        first = target.project not in self._seen and state is None
        size = max(self.settings.backfill if first else self.settings.builds, 1)
        builds = f"builds[{BUILD_FIELDS}]{{0,{size}}},{QUEUE_FIELDS}"
        tree = f"_class,name,{builds},jobs[name,_class,{builds}]"
        resp = await self.http.get(
            f"{job_path(target.project)}/api/json", params={"tree": tree}, target=target.project
        )
        tag = body_tag(resp.body)
        previous = state or TargetState(self.source, target.project)
        if state is not None and state.etag == tag:
            self._seen.add(target.project)
            return PollResult([], previous, not_modified=True, requests=1)
        job = jenkins.parse_job(self.source, resp.body)
        self.classes[target.project] = job.class_
        self._seen.add(target.project)
        runs: list[Run] = []
        if job.jobs and (job.class_ == MULTIBRANCH or not job.builds):
            for branch in job.jobs:
                ref = unquote(branch.name)
                for run in self._runs_of(target.project, branch):
                    runs.append(replace(run, run_id=f"{branch.name}/{run.run_id}", ref=ref))
        else:
            runs = self._runs_of(target.project, job)
        kept = [r for r in runs if ref_wanted(self.settings, r.ref)]
        # Saved only once these runs are stored, so an identical body later means stored.
        return PollResult(kept, replace(previous, etag=tag), requests=1)

    def _runs_of(self, project: str, job: jenkins.JenkinsJob) -> list[Run]:
        """The job's builds, plus the build waiting in its queue (as a queued run)."""
        runs = [jenkins.build_to_run(self.source, project, build) for build in job.builds]
        waiting = jenkins.queued_run(self.source, project, job)
        if waiting is not None and waiting.run_id not in {run.run_id for run in runs}:
            newest = runs[0] if runs else None
            runs.append(replace(waiting, ref=newest.ref if newest else None))
        return runs

    def _job_of(self, project: str, run_id: str) -> str:
        """The path of the job a build belongs to (a multibranch build's: its branch job)."""
        if "/" in run_id:
            return f"{job_path(project)}/job/{quote(run_id.rsplit('/', 1)[0], safe='')}"
        return job_path(project)

    def _build_path(self, project: str, run_id: str) -> str:
        return f"{self._job_of(project, run_id)}/{run_id.rsplit('/', 1)[-1]}"

    async def run(self, project: str, run_id: str) -> Run:
        """One build read from the API (for a webhook naming a build never polled): this
        provider is a `RunReader`."""
        resp = await self.http.get(
            f"{self._build_path(project, run_id)}/api/json",
            params={"tree": BUILD_FIELDS},
            target=project,
        )
        run = jenkins.parse_build(self.source, project, resp.body)
        if "/" in run_id:
            branch = run_id.rsplit("/", 1)[0]
            run = replace(run, run_id=run_id, ref=unquote(branch))
        return run

    async def commits_between(self, green: Run, failing: Run) -> CommitRange:
        """The change sets of the builds after `green` up to `failing` (`CommitRangeReader`):
        Jenkins compares no SHAs, so one `tree=` request over the job's newest `RANGE_BUILDS`
        builds, filtered by number."""
        after, upto = _build_number(green), _build_number(failing)
        if after is None or upto is None or after >= upto:
            raise BadPayload(f"builds {green.run_id} and {failing.run_id}: no range between")
        resp = await self.http.get(
            f"{self._job_of(failing.project, failing.run_id)}/api/json",
            params={"tree": jenkins.range_tree(RANGE_BUILDS)},
            target=failing.project,
        )
        return jenkins.parse_build_range(
            resp.body, after, upto, asked=RANGE_BUILDS, limit=MAX_RANGE_COMMITS
        )

    async def details(self, run: Run) -> tuple[Run, list[Job]]:
        if run.status is Status.QUEUED:
            return run, []  # still in the queue: build `nextBuildNumber` does not exist yet
        run = await self._extras(run)
        cls = self.classes.get(run.project)
        if "/" in run.run_id or cls == PIPELINE:
            path = self._build_path(run.project, run.run_id)
        else:
            return run, []  # freestyle and other jobs have no stages
        try:
            resp = await self.http.get(f"{path}/wfapi/describe", target=run.project)
        except NotFound:
            return run, []  # Pipeline Stage View plugin not installed
        return run, jenkins.parse_stages(self.source, run.project, run.run_id, resp.body)

    async def _extras(self, run: Run) -> Run:
        """The commit of a failed build (`changeSets`, `culprits`) and, with `tests: true`, the
        test report of a finished build. Called for changed runs only: never per poll."""
        path = self._build_path(run.project, run.run_id)
        changes: dict[str, Any] = {}
        if run.status is Status.FAILED and run.commit_title is None:
            resp = await self.http.get(
                f"{path}/api/json", params={"tree": jenkins.COMMIT_TREE}, target=run.project
            )
            changes.update(jenkins.parse_commit(resp.body, run.sha))
        if self.settings.tests and run.status.terminal:
            try:
                resp = await self.http.get(
                    f"{path}/testReport/api/json",
                    params={"tree": jenkins.TEST_TREE},
                    target=run.project,
                )
            except NotFound:
                pass  # the build published no JUnit report
            else:
                changes.update(jenkins.parse_test_report(resp.body, MAX_FAILING_TESTS))
        return replace(run, **changes) if changes else run


def _build_number(run: Run) -> int | None:
    """A build's number: `number`, else the last segment of its run id (`branch/17`)."""
    if run.number is not None:
        return run.number
    tail = run.run_id.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _leaf_targets(prefix: str, jobs: list[jenkins.JenkinsJob]) -> list[str]:
    """Jobs and multibranch projects under a folder, recursively (folders themselves are not
    targets; a multibranch project is one target whose branches are refs)."""
    found: list[str] = []
    for job in jobs:
        name = f"{prefix}/{job.name}"
        if job.class_ == MULTIBRANCH or not job.is_folder:
            found.append(name)
        else:
            found.extend(_leaf_targets(name, job.jobs))
    return found

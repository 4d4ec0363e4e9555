"""Azure Pipelines polling: pipelines (build definitions) discovered per project, builds read
incrementally per pipeline, jobs from the build's timeline.

Discovery lists `GET {org}/{project}/_apis/build/definitions` for every configured project
(following `x-ms-continuationtoken`), keeps the pipelines whose folder path and name pass
`pipelines`, and drops targets matched by `exclude_projects`.

A poll of one pipeline is `GET {org}/{project}/_apis/build/builds?definitions={id}`:

- the first poll reads the newest `backfill` builds (`queryOrder=queueTimeDescending`, `$top`);
- later polls ask only for builds queued since the cursor (`minTime`, with
  `queryOrder=queueTimeAscending` so `minTime` filters on the queue time), a page of
  `PAGE` at a time, following the `x-ms-continuationtoken` response header. The cursor is the
  queue time of the oldest build seen that had not completed (every build that can still change
  was queued at or after it), else of the newest build seen; it moves only forward, and one
  second of overlap keeps a build queued exactly at the cursor.

Azure DevOps sends no ETag on these lists, so a body byte-identical to the previous poll's (its
hash is kept as the target's `etag`) is a "not modified" and is not decoded.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import datetime, timedelta
from urllib.parse import quote

from ciwatch.clock import Clock
from ciwatch.config.models import CollectionSettings
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
from ciwatch.errors import NotFound
from ciwatch.http import HttpClient, RequestRecorder
from ciwatch.providers import azure
from ciwatch.providers.base import PollResult, matches
from ciwatch.providers.client import source_client
from ciwatch.providers.common import body_tag
from ciwatch.providers.watch import exclude_project, ref_wanted

PAGE = 100
OVERLAP = timedelta(seconds=1)
CHANGES_TOP = 10  # changes asked for a failed build's commit (the built one is among them)
DEFINITION = "definition"  # TargetState.extra key: the pipeline's definition id
# The changes one commits-since-green request asks for: the total is exact up to this many.
RANGE_TOP = 100


def pat_headers(token: str | None) -> dict[str, str]:
    """A personal access token as HTTP Basic with an empty user name (Microsoft's documented
    way: "use any value for the user name and the token as the password")."""
    if not token:
        return {}
    return {"Authorization": "Basic " + base64.b64encode(f":{token}".encode()).decode("ascii")}


def make_provider(
    settings: azure.AzureSource,
    collection: CollectionSettings,
    clock: Clock,
    recorder: RequestRecorder | None,
) -> AzureProvider:
    """The poller of one `type: azure` source, with its HTTP client."""
    http = source_client(settings, collection, clock, recorder, headers=pat_headers(settings.token))
    return AzureProvider(settings, http, clock)


class AzureProvider:
    kind = azure.KIND

    def __init__(self, settings: azure.AzureSource, http: HttpClient, clock: Clock) -> None:
        self.settings = settings
        self.source = settings.name
        self.http = http
        self.clock = clock
        # target → (Azure project, definition id), learnt by discovery.
        self.definitions: dict[str, tuple[str, int]] = {}

    async def close(self) -> None:
        await self.http.close()

    def _path(self, project: str, rest: str) -> str:
        """`{organization}/{project}/_apis/build/{rest}`, below the source's `url`."""
        org = quote(self.settings.organization, safe="")
        return f"{org}/{quote(project, safe='')}/_apis/build/{rest}"

    def _params(self, **extra: str | int) -> dict[str, str | int]:
        return {"api-version": self.settings.api_version, **extra}

    async def _pipelines(self, project: str) -> tuple[dict[str, int], int]:
        """The project's wanted pipelines (target → definition id), and the requests made."""
        found: dict[str, int] = {}
        token: str | None = None
        requests = 0
        while True:
            params = self._params(**({"continuationToken": token} if token else {}))
            requests += 1
            resp = await self.http.get(
                self._path(project, "definitions"),
                params=params,
                target=f"project {project}",
            )
            for definition in azure.parse_definitions(resp.body):
                path = azure.pipeline_path(definition.name, definition.path)
                if self.settings.pipelines and not matches(path, self.settings.pipelines):
                    continue
                found[azure.target_name(project, definition.name, definition.path)] = definition.id
            token = resp.headers.get("x-ms-continuationtoken")
            if not token:
                return found, requests

    async def discover(self) -> list[Target]:
        targets: list[Target] = []
        for project in self.settings.projects:
            for name, definition in (await self._pipelines(project))[0].items():
                if exclude_project(self.settings, name):
                    continue
                self.definitions[name] = (project, definition)
                targets.append(Target(self.source, self.kind, name))
        return targets

    async def _definition(self, target: Target, state: TargetState | None) -> tuple[str, int, int]:
        """The target's project and definition id, and the requests it took to learn them."""
        known = self.definitions.get(target.project)
        if known is not None:
            return (*known, 0)
        project = target.project.split("/", 1)[0]
        saved = state.extra.get(DEFINITION) if state else None
        if saved is not None and saved.isdigit():
            return project, int(saved), 0
        found, requests = await self._pipelines(project)
        if target.project not in found:
            raise NotFound(f"no pipeline {target.project!r} in Azure DevOps", target=target.project)
        self.definitions[target.project] = (project, found[target.project])
        return project, found[target.project], requests

    async def poll(self, target: Target, state: TargetState | None) -> PollResult:
        project, definition, requests = await self._definition(target, state)
        previous = state or TargetState(self.source, target.project)
        cursor = _parse_cursor(previous.cursor)
        path = self._path(project, "builds")
        builds: list[azure.AzureBuild] = []
        bodies: list[bytes] = []
        if cursor is None:
            top = max(1, min(self.settings.backfill, 1000))
            params = self._params(
                definitions=definition, queryOrder="queueTimeDescending", **{"$top": top}
            )
            resp = await self.http.get(path, params=params, target=target.project)
            requests += 1
            bodies.append(resp.body)
            builds = azure.parse_builds(resp.body)
        else:
            since = (cursor - OVERLAP).isoformat().replace("+00:00", "Z")
            token: str | None = None
            while True:
                params = self._params(
                    definitions=definition,
                    queryOrder="queueTimeAscending",
                    minTime=since,
                    **{"$top": PAGE},
                )
                if token:
                    params["continuationToken"] = token
                resp = await self.http.get(path, params=params, target=target.project)
                requests += 1
                bodies.append(resp.body)
                token = resp.headers.get("x-ms-continuationtoken")
                if not token and len(bodies) == 1 and previous.etag == body_tag(*bodies):
                    return PollResult([], previous, not_modified=True, requests=requests)
                builds.extend(azure.parse_builds(resp.body))
                if not token:
                    break
        runs = [azure.build_to_run(self.source, target.project, build) for build in builds]
        kept = [run for run in runs if ref_wanted(self.settings, run.ref)]
        extra = {**previous.extra, DEFINITION: str(definition)}
        new_state = replace(
            previous,
            cursor=_next_cursor(cursor, runs),
            etag=body_tag(*bodies) if cursor is not None else None,
            extra=extra,
        )
        return PollResult(kept, new_state, requests=requests)

    async def build(self, project: str, build_id: int) -> Run | None:
        """`GET {project}/_apis/build/builds/{id}` (`project`: a name or the GUID a service hook
        gives): the build as a run of its pipeline, or None when it names no pipeline."""
        resp = await self.http.get(
            self._path(project, f"builds/{build_id}"),
            params=self._params(),
            target=f"build {build_id}",
        )
        build = azure.parse_build(resp.body)
        target = azure.build_target(build, None)
        return None if target is None else azure.build_to_run(self.source, target, build)

    async def details(self, run: Run) -> tuple[Run, list[Job]]:
        project = run.project.split("/", 1)[0]
        jobs: list[Job] = []
        try:
            resp = await self.http.get(
                self._path(project, f"builds/{quote(run.run_id, safe='')}/timeline"),
                params=self._params(),
                target=run.project,
            )
        except NotFound:
            pass  # a build still in the queue has no timeline yet
        else:
            # Azure answers 204 No Content before the timeline exists.
            if resp.body.strip():
                jobs = azure.parse_timeline(self.source, run.project, run.run_id, resp.body)
        return await self._commit(await self._tests(run, project), project), jobs

    async def _commit(self, run: Run, project: str) -> Run:
        """The commit of a changed failed build (the Build resource carries only its SHA):
        `GET {project}/_apis/build/builds/{id}/changes?$top=10&includeSourceChange=true`, the
        change whose id is the built SHA, else the first. One request, for changed failed
        builds only (`details`), unless the run already has its commit."""
        if run.status is not Status.FAILED or run.commit_title is not None or not run.sha:
            return run
        try:
            resp = await self.http.get(
                self._path(project, f"builds/{quote(run.run_id, safe='')}/changes"),
                params={**self._params(), "$top": CHANGES_TOP, "includeSourceChange": "true"},
                target=run.project,
            )
        except NotFound:
            return run  # the build is gone (deleted, retention): no commit, the run as it was
        fields = azure.parse_build_changes(resp.body, run.sha)
        return replace(run, **fields) if fields["commit_title"] is not None else run

    async def commits_between(self, green: Run, failing: Run) -> CommitRange:
        """ "Builds - Get Changes Between Builds" (`CommitRangeReader`, a preview API): one
        `GET {project}/_apis/build/changes?fromBuildId=<green>&toBuildId=<failing>`, at most
        `RANGE_TOP` changes."""
        project = failing.project.split("/", 1)[0]
        resp = await self.http.get(
            self._path(project, "changes"),
            params={
                "api-version": preview(self.settings.api_version),
                "fromBuildId": green.run_id,
                "toBuildId": failing.run_id,
                "$top": RANGE_TOP,
            },
            target=failing.project,
        )
        return azure.parse_changes(resp.body, green=green.sha, limit=MAX_RANGE_COMMITS)

    async def _tests(self, run: Run, project: str) -> Run:
        """With `tests: true`, the test results of a finished build: its test runs' counts
        summed (`GET _apis/test/runs?buildUri=...`) and, when some failed, the first failed
        results' names (`GET _apis/test/Runs/{id}/results?outcomes=Failed`, a preview API).
        Called for changed runs only (`details`): never per poll. A build without test runs
        leaves the counts None."""
        if not self.settings.tests or not run.status.terminal:
            return run
        org = quote(self.settings.organization, safe="")
        base = f"{org}/{quote(project, safe='')}/_apis/test"
        resp = await self.http.get(
            f"{base}/runs",
            params=self._params(buildUri=azure.build_uri(run.run_id)),
            target=run.project,
        )
        counts, failing_runs = azure.parse_test_runs(resp.body)
        if counts["tests_total"] is None:
            return run
        names: list[str] = []
        for test_run in failing_runs:
            if len(names) >= MAX_FAILING_TESTS:
                break
            resp = await self.http.get(
                f"{base}/Runs/{test_run}/results",
                params={
                    "api-version": preview(self.settings.api_version),
                    "outcomes": "Failed",
                    "$top": MAX_FAILING_TESTS - len(names),
                },
                target=run.project,
            )
            names.extend(azure.parse_failing_results(resp.body, MAX_FAILING_TESTS - len(names)))
        return replace(run, **counts, tests_failing=tuple(names))


def preview(version: str) -> str:
    """The `api-version` of a preview API (Results - List is one: `7.1-preview.6`): the
    source's version with `-preview` (the newest preview of it)."""
    return version if "-preview" in version else f"{version}-preview"


def _parse_cursor(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except ValueError:
        return None


def _next_cursor(cursor: datetime | None, runs: list[Run]) -> str | None:
    """The queue time of the oldest unfinished run, else of the newest run; never earlier than
    the cursor it replaces."""
    times = [run.created_at for run in runs if run.created_at is not None]
    if not times:
        return cursor.isoformat() if cursor else None
    active = [
        run.created_at for run in runs if run.created_at is not None and not run.status.terminal
    ]
    chosen = min(active) if active else max(times)
    if cursor is not None and chosen < cursor:
        chosen = cursor
    return chosen.isoformat()

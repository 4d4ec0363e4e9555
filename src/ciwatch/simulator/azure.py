"""The Azure DevOps Build REST API subset ciwatch uses, under `{server}/azure`.

`/{organization}/{project}/_apis/build/definitions`, `/{organization}/{project}/_apis/build/builds`
(`definitions`, `minTime`, `queryOrder`, `statusFilter`, `$top`, continuation tokens in the
`x-ms-continuationtoken` header), `/{organization}/{project}/_apis/build/builds/{id}` and
`/{organization}/{project}/_apis/build/builds/{id}/timeline`, and the Test API's
`/{organization}/{project}/_apis/test/runs?buildUri=vstfs:///Build/Build/{id}` (one test run per
job that reported cases, see simulator/reports.py) and
`/{organization}/{project}/_apis/test/Runs/{runId}/results` (`outcomes`, `$top`, `$skip`; a
preview API: its `api-version` must end in `-preview`);
`{project}` is the project's name
or its id (a GUID, as service hooks give it). Any organization name is served. A personal
access token is the Basic password (any user name).

The pipelines are the scenario's projects of provider `azure`, written `<project>/<pipeline>`
or `<project>/<folder>/<pipeline>`; a build id is `(n + 1) * stride + index` like the other
simulated ids. Shapes follow Microsoft's `Build` and `TimelineRecord` models (providers/azure.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from ciwatch.simulator import reports
from ciwatch.simulator.context import Context, basic_credentials, known
from ciwatch.simulator.httputil import Handler, int_param, json_response
from ciwatch.simulator.plans import FOREVER, Attempt, JobPlan, RunPlan
from ciwatch.simulator.timeline import Timeline
from ciwatch.simulator.world import stride_for

PREFIX = "/azure"
DEFAULT_AZURE_TOKEN = "azure-simulator-pat"  # noqa: S105 - opens nothing but the simulator
_MAX_TOP = 1000
_RESULTS = {  # the scenario's result words → BuildResult
    "success": "succeeded",
    "failed": "failed",
    "timed_out": "failed",
    "canceled": "canceled",
    "skipped": "canceled",
    "unstable": "partiallySucceeded",
}
_TASK_RESULTS = {  # → TaskResult of a timeline record
    "success": "succeeded",
    "failed": "failed",
    "timed_out": "failed",
    "canceled": "canceled",
    "skipped": "skipped",
    "unstable": "succeededWithIssues",
}
_REASONS = {
    "push": "individualCI",
    "manual": "manual",
    "schedule": "schedule",
    "merge_request": "pullRequest",
}
_OUTCOMES = {"success": "Passed", "failed": "Failed", "skipped": "NotExecuted"}  # TestOutcome
_BUILD_URI = "vstfs:///Build/Build/"
_RUNS_PER_BUILD = 1000  # a test run id: build id * this + its place among the reporting jobs
_WORST = ("failed", "succeededWithIssues", "canceled", "succeeded", "skipped")


def _guid(key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ciwatch-simulator:{key}"))


@dataclass
class AzurePipeline:
    index: int
    id: int  # the definition id
    project: str
    folder: str  # "" at the root
    name: str
    timeline: Timeline

    @property
    def path(self) -> str:
        return "\\" + self.folder.replace("/", "\\")


class AzureWorld:
    """The scenario's `azure` projects as pipelines, by project and by definition id."""

    def __init__(self, ctx: Context) -> None:
        scenario = ctx.scenario
        self.pipelines: list[AzurePipeline] = []
        for spec in scenario.projects:
            if spec.provider != "azure":
                continue
            if "/" not in spec.path.strip("/"):
                raise ValueError(f"azure path {spec.path!r}: write <project>/<pipeline>")
            project, *folders, name = spec.path.strip("/").split("/")
            key = f"azure:{spec.path}"
            retention = spec.retention or scenario.retention
            # The World's own timeline builder: scripted runs, then generated ones.
            timeline = ctx.world._timeline(spec, key, list(spec.runs), retention)
            index = len(self.pipelines)
            definition = spec.id if spec.id is not None else index + 1
            folder = "/".join(folders)
            self.pipelines.append(AzurePipeline(index, definition, project, folder, name, timeline))
        self.stride = stride_for(len(self.pipelines))
        self.projects = {p.project.casefold(): p.project for p in self.pipelines}
        self.project_ids = {_guid(f"project/{name}"): name for name in self.projects.values()}

    def project(self, name_or_id: str) -> str | None:
        return self.projects.get(name_or_id.casefold()) or self.project_ids.get(name_or_id.lower())

    def build_id(self, pipeline: AzurePipeline, n: int) -> int:
        return (n + 1) * self.stride + pipeline.index

    def decode(self, build_id: int) -> tuple[AzurePipeline, int] | None:
        index, n = build_id % self.stride, build_id // self.stride - 1
        if index >= len(self.pipelines) or n < 0:
            return None
        return self.pipelines[index], n


def _error(status: int, message: str, type_key: str) -> web.Response:
    body = {"$id": "1", "innerException": None, "message": message, "typeKey": type_key}
    return json_response(body, status=status)


class AzureApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.world = AzureWorld(ctx)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        base = "/{org}/{project}/_apis/build"
        app.router.add_get(f"{base}/definitions", self.definitions)
        app.router.add_get(f"{base}/builds", self.builds)
        app.router.add_get(f"{base}/builds/{{build_id:\\d+}}", self.build)
        app.router.add_get(f"{base}/builds/{{build_id:\\d+}}/timeline", self.timeline)
        app.router.add_get(f"{base}/builds/{{build_id:\\d+}}/changes", self.changes)
        app.router.add_get(f"{base}/changes", self.changes_between)
        tests = "/{org}/{project}/_apis/test"
        app.router.add_get(f"{tests}/runs", self.test_runs)
        app.router.add_get(f"{tests}/{{runs:[Rr]uns}}/{{run_id:\\d+}}/results", self.test_results)
        return app

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        credentials = basic_credentials(request)
        if not known(credentials[1] if credentials else None, (DEFAULT_AZURE_TOKEN,)):
            return _error(
                401,
                "TF400813: The user is not authorized to access this resource.",
                "UnauthorizedRequestException",
            )
        return await handler(request)

    def _project(self, request: web.Request) -> str:
        project = self.world.project(request.match_info["project"])
        if project is None:
            name = request.match_info["project"]
            raise web.HTTPNotFound(
                text=f'{{"message": "TF200016: The project {name} does not exist."}}',
                content_type="application/json",
            )
        return project

    # -- documents ----------------------------------------------------------------------------

    def _time(self, offset: int | None) -> str | None:
        if offset is None or offset >= FOREVER:
            return None
        moment = datetime.fromtimestamp(self.ctx.epoch_ms(offset) / 1000, UTC)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _project_ref(self, project: str) -> dict[str, Any]:
        return {"id": _guid(f"project/{project}"), "name": project, "state": "wellFormed"}

    def _definition(self, pipeline: AzurePipeline) -> dict[str, Any]:
        return {
            "id": pipeline.id,
            "name": pipeline.name,
            "path": pipeline.path,
            "type": "build",
            "queueStatus": "enabled",
            "revision": 1,
            "project": self._project_ref(pipeline.project),
        }

    def build_document(
        self, request: web.Request, pipeline: AzurePipeline, plan: RunPlan, now: int
    ) -> dict[str, Any]:
        attempt = plan.attempt_at(now)
        phase = attempt.phase(now)
        build_id = self.world.build_id(pipeline, plan.n)
        if phase == "queued":
            status, result = "notStarted", None
        elif phase == "running" or attempt.result == "manual":
            status, result = "inProgress", None
        else:
            status, result = "completed", _RESULTS.get(attempt.result, "failed")
        org = request.match_info["org"]
        base = f"{request.url.origin()}{PREFIX}/{org}/{pipeline.project}"
        return {
            "_links": {"web": {"href": f"{base}/_build/results?buildId={build_id}"}},
            "id": build_id,
            "buildNumber": f"{plan.n + 1}",
            "status": status,
            "result": result,
            "queueTime": self._time(attempt.queued),
            "startTime": self._time(attempt.started) if phase != "queued" else None,
            "finishTime": self._time(attempt.finished) if status == "completed" else None,
            "lastChangedDate": self._time(plan.updated(now)),
            "sourceBranch": f"refs/heads/{plan.ref}",
            "sourceVersion": plan.sha,
            "reason": _REASONS.get(plan.event, "manual"),
            "definition": self._definition(pipeline),
            "project": self._project_ref(pipeline.project),
            "requestedFor": {
                "displayName": plan.author,
                "uniqueName": f"{plan.author}@example.com",
            },
            "url": f"{base}/_apis/build/Builds/{build_id}",
        }

    # -- routes -------------------------------------------------------------------------------

    async def definitions(self, request: web.Request) -> web.Response:
        project = self._project(request)
        found = [self._definition(p) for p in self.world.pipelines if p.project == project]
        return self._page(request, found)

    async def builds(self, request: web.Request) -> web.Response:
        project = self._project(request)
        now = self.ctx.now()
        query = request.query
        wanted = {int(v) for v in query.get("definitions", "").split(",") if v.strip().isdigit()}
        order = query.get("queryOrder", "queueTimeDescending")
        field = "finishTime" if order.startswith("finishTime") else "queueTime"
        since = _parse(query.get("minTime"))
        status_filter = query.get("statusFilter")
        documents: list[dict[str, Any]] = []
        for pipeline in self.world.pipelines:
            if pipeline.project != project or (wanted and pipeline.id not in wanted):
                continue
            for n in pipeline.timeline.visible(now):
                document = self.build_document(request, pipeline, pipeline.timeline.plan(n), now)
                if status_filter and document["status"] != status_filter:
                    continue
                moment = _parse(document[field])
                if since is not None and (moment is None or moment < since):
                    continue
                documents.append(document)
        documents.sort(
            key=lambda d: (d[field] or "", d["id"]), reverse=order.endswith("Descending")
        )
        return self._page(request, documents)

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        top_text = request.query.get("$top", "")
        top = min(int(top_text), _MAX_TOP) if top_text.isdigit() and int(top_text) > 0 else _MAX_TOP
        token = request.query.get("continuationToken", "")
        start = int(token) if token.isdigit() else 0
        page = items[start : start + top]
        headers = {}
        if start + top < len(items):
            headers["x-ms-continuationtoken"] = str(start + top)
        return json_response({"count": len(page), "value": page}, headers=headers)

    def _find(self, request: web.Request) -> tuple[AzurePipeline, RunPlan] | None:
        project = self._project(request)
        found = self.world.decode(int(request.match_info["build_id"]))
        if found is None or found[0].project != project:
            return None
        pipeline, n = found
        if n not in pipeline.timeline.visible(self.ctx.now()):
            return None
        return pipeline, pipeline.timeline.plan(n)

    async def build(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if found is None:
            build_id = request.match_info["build_id"]
            return _error(
                404, f"The requested build {build_id} could not be found.", "BuildNotFoundException"
            )
        return json_response(self.build_document(request, *found, self.ctx.now()))

    async def changes_between(self, request: web.Request) -> web.Response:
        """ "Builds - Get Changes Between Builds" (a preview API): the commits of the runs after
        `fromBuildId` up to `toBuildId` (one pipeline), newest first, at most `$top`."""
        if "-preview" not in request.query.get("api-version", ""):
            return _error(400, "Get Changes Between Builds needs a -preview api-version.", "Api")
        project = self._project(request)
        ends = []
        for name in ("fromBuildId", "toBuildId"):
            raw = request.query.get(name, "")
            found = self.world.decode(int(raw)) if raw.isdigit() else None
            if found is None or found[0].project != project:
                return _error(404, f"The requested build {raw} could not be found.", "Build")
            ends.append(found)
        (pipeline, first), (other, last) = ends
        now = self.ctx.now()
        plans = None
        if pipeline is other:
            base, head = pipeline.timeline.plan(first).sha, pipeline.timeline.plan(last).sha
            plans = pipeline.timeline.commits_between(now, base, head)
        top = int_param(request, "$top", 100, 1, None)
        value = [
            {
                "id": plan.sha,
                "message": plan.message,
                "type": "TfsGit",
                "author": {
                    "displayName": plan.author.title(),
                    "uniqueName": f"{plan.author}@example.com",
                    "id": _guid(f"user/{plan.author}"),
                },
                "timestamp": self._time(plan.created - 30_000),
                "messageTruncated": False,
            }
            for plan in reversed(plans or [])
        ][:top]
        return json_response({"count": len(value), "value": value})

    async def timeline(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if found is None:
            return _error(404, "The build could not be found.", "BuildNotFoundException")
        pipeline, plan = found
        now = self.ctx.now()
        attempt = plan.attempt_at(now)
        if attempt.phase(now) == "queued":
            return web.Response(status=204)  # no timeline before the build starts
        build_id = self.world.build_id(pipeline, plan.n)
        return json_response(self._records(f"{build_id}", attempt, now))

    async def changes(self, request: web.Request) -> web.Response:
        """Builds - Get Build Changes: the build's commit (a `Change`: `id` the SHA, `message`,
        `author`), in the list envelope; `$top` honoured."""
        found = self._find(request)
        if found is None:
            return _error(404, "The build could not be found.", "BuildNotFoundException")
        pipeline, plan = found
        org = request.match_info["org"]
        base = f"{request.url.origin()}{PREFIX}/{org}/{pipeline.project}"
        change = {
            "id": plan.sha,
            "message": plan.message,
            "type": "commit",
            "author": {
                "displayName": plan.author.title(),
                "uniqueName": f"{plan.author}@example.com",
                "id": _guid(f"user/{plan.author}"),
            },
            "timestamp": self._time(plan.created - 30_000),
            "location": f"{base}/_apis/git/repositories/{pipeline.name}/commits/{plan.sha}",
            "displayUri": f"{base}/_git/{pipeline.name}/commit/{plan.sha}",
            "messageTruncated": False,
            "pusher": plan.author,
        }
        return self._page(request, [change])

    def _suites(self, project: str, build_id: int) -> list[list[reports.Case]]:
        """The test runs of a visible build of `project`: one per job that reported cases
        (simulator/reports.py), in job order; none while the build runs."""
        found = self.world.decode(build_id)
        now = self.ctx.now()
        if found is None or found[0].project != project:
            return []
        pipeline, n = found
        if n not in pipeline.timeline.visible(now):
            return []
        suites: dict[str, list[reports.Case]] = {}
        for case in reports.cases(pipeline.timeline.plan(n).attempt_at(now), now) or []:
            suites.setdefault(case.classname, []).append(case)
        return list(suites.values())

    async def test_runs(self, request: web.Request) -> web.Response:
        """`GET _apis/test/runs?buildUri=vstfs:///Build/Build/{id}`: Microsoft's `TestRun`."""
        project = self._project(request)
        uri = request.query.get("buildUri", "")
        build = uri.removeprefix(_BUILD_URI)
        if not uri.startswith(_BUILD_URI) or not build.isdigit():
            return json_response({"count": 0, "value": []})
        build_id = int(build)
        runs = []
        for k, group in enumerate(self._suites(project, build_id), start=1):
            total = reports.counts(group)
            runs.append(
                {
                    "id": build_id * _RUNS_PER_BUILD + k,
                    "name": group[0].classname,
                    "state": "Completed",
                    "isAutomated": True,
                    "build": {"id": str(build_id)},
                    "totalTests": total["total"],
                    "passedTests": total["success"],
                    "unanalyzedTests": total["failed"],
                    "notApplicableTests": total["skipped"],
                    "incompleteTests": 0,
                }
            )
        return json_response({"count": len(runs), "value": runs})

    async def test_results(self, request: web.Request) -> web.Response:
        """`GET _apis/test/Runs/{id}/results` (`outcomes`, `$top`, `$skip`): `TestCaseResult`."""
        project = self._project(request)
        if "-preview" not in request.query.get("api-version", ""):
            # Results - List is a preview API (7.1-preview.6): a version without it is refused.
            return _error(400, "Results - List needs a -preview api-version.", "ApiVersion")
        run_id = int(request.match_info["run_id"])
        build_id, k = divmod(run_id, _RUNS_PER_BUILD)
        suites = self._suites(project, build_id)
        if not 1 <= k <= len(suites):
            return _error(404, f"Test run {run_id} not found.", "TestObjectNotFoundException")
        wanted = {w.strip().lower() for w in request.query.get("outcomes", "").split(",")}
        wanted.discard("")
        results = []
        for i, case in enumerate(suites[k - 1], start=1):
            outcome = _OUTCOMES[case.status]
            if wanted and outcome.lower() not in wanted:
                continue
            results.append(
                {
                    "id": 100000 + i,
                    "outcome": outcome,
                    "state": "Completed",
                    "testCaseTitle": case.name,
                    "automatedTestName": f"{case.classname}.{case.name}",
                    "testRun": {"id": str(run_id)},
                }
            )
        skip_text, top_text = request.query.get("$skip", ""), request.query.get("$top", "")
        start = int(skip_text) if skip_text.isdigit() else 0
        top = int(top_text) if top_text.isdigit() else _MAX_TOP
        page = results[start : start + top]
        return json_response({"count": len(page), "value": page})

    def _records(self, key: str, attempt: Attempt, now: int) -> dict[str, Any]:
        records: list[dict[str, Any]] = []
        stages = list(dict.fromkeys(job.stage for job in attempt.jobs))
        for order, stage in enumerate(stages, start=1):
            stage_id = _guid(f"{key}/stage/{stage}")
            phase_id = _guid(f"{key}/phase/{stage}")
            members = [
                self._job(key, attempt, job, phase_id, now)
                for job in attempt.jobs
                if job.stage == stage
            ]
            state, result = _aggregate(members)
            common = {"state": state, "result": result, "attempt": attempt.number, "order": order}
            starts = [m["startTime"] for m in members if m["startTime"]]
            ends = [m["finishTime"] for m in members if m["finishTime"]]
            times = {
                "startTime": min(starts) if starts else None,
                "finishTime": max(ends) if ends and state == "completed" else None,
            }
            records.append(
                {
                    "id": stage_id,
                    "parentId": None,
                    "type": "Stage",
                    "name": stage,
                    **common,
                    **times,
                }
            )
            records.append(
                {
                    "id": phase_id,
                    "parentId": stage_id,
                    "type": "Phase",
                    "name": f"Job_{order}",
                    **common,
                    **times,
                }
            )
            records.extend(members)
        return {"records": records, "lastChangedBy": None, "id": _guid(f"{key}/timeline")}

    def _job(
        self, key: str, attempt: Attempt, job: JobPlan, parent: str, now: int
    ) -> dict[str, Any]:
        word, started, finished = job.status_at(attempt, now)
        if word == "waiting" or word == "manual":
            state, result = "pending", None
        elif word == "running":
            state, result = "inProgress", None
        else:
            state, result = "completed", _TASK_RESULTS.get(word, "failed")
        return {
            "id": _guid(f"{key}/job/{attempt.number}/{job.index}"),
            "parentId": parent,
            "type": "Job",
            "name": job.name,
            "state": state,
            "result": result,
            "startTime": self._time(started),
            "finishTime": self._time(finished),
            "lastModified": self._time(finished or started or attempt.started),
            "attempt": attempt.number,
            "order": job.index + 1,
            "workerName": "Hosted Agent" if started is not None else None,
        }


def _aggregate(members: list[dict[str, Any]]) -> tuple[str, str | None]:
    states = {m["state"] for m in members}
    if states == {"completed"}:
        results = {m["result"] for m in members}
        return "completed", next((w for w in _WORST if w in results), "succeeded")
    if states == {"pending"}:
        return "pending", None
    return "inProgress", None


def _parse(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# What simulator/app.py mounts at `/azure` (the provider spec names this module).
API = AzureApi

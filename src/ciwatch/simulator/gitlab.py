"""The GitLab REST API subset ciwatch uses, under `/gitlab/api/v4`.

Authentication by `PRIVATE-TOKEN` or `Authorization: Bearer`; every authenticated answer carries
`RateLimit-*` headers and a used-up quota answers 429 with `Retry-After`, as GitLab.com does.
Lists are paginated with `X-*` headers and a `Link` header (prev, next, first, last).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from ciwatch.simulator import gitlab_json as gj
from ciwatch.simulator.context import Context, bearer_token, known
from ciwatch.simulator.httputil import (
    BadParam,
    Handler,
    Missing,
    Page,
    int_param,
    json_response,
    page_links,
    page_of,
    page_runs,
    time_param,
)
from ciwatch.simulator.plans import RunPlan
from ciwatch.simulator.ratelimit import gitlab_headers
from ciwatch.simulator.world import GitLabGroup, GitLabProject

PREFIX = "/gitlab"
_SCOPES = {
    "running": {"running"},
    "pending": {"pending"},
    "finished": {"success", "failed", "canceled", "skipped"},
}


class GitLabApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.world = ctx.world
        self.limiter = ctx.limits.get("gitlab")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        route = app.router.add_get
        route("/api/v4/projects/{id}", self.project)
        route("/api/v4/projects/{id}/pipelines", self.pipelines)
        route("/api/v4/projects/{id}/pipelines/{pid}", self.pipeline)
        route("/api/v4/projects/{id}/pipelines/{pid}/jobs", self.pipeline_jobs)
        route("/api/v4/projects/{id}/pipelines/{pid}/test_report", self.test_report)
        route("/api/v4/projects/{id}/pipelines/{pid}/test_report_summary", self.test_summary)
        route("/api/v4/projects/{id}/repository/commits/{sha}", self.commit)
        route("/api/v4/projects/{id}/repository/compare", self.compare)
        route("/api/v4/groups/{id}/projects", self.group_projects)
        return app

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        token = request.headers.get("PRIVATE-TOKEN") or bearer_token(request, schemes=("bearer",))
        accepted = self.ctx.scenario.tokens.gitlab
        if accepted and not known(token, accepted):
            return json_response({"message": "401 Unauthorized"}, 401)
        headers: dict[str, str] = {}
        if self.limiter is not None:
            now_ms = self.ctx.now_epoch_ms()
            quota = self.limiter.spend(token or "", now_ms)
            if quota is None:
                quota = self.limiter.peek(token or "", now_ms)
                headers = gitlab_headers(quota)
                headers["Retry-After"] = str(max(quota.reset - now_ms // 1000, 1))
                return json_response({"message": "Retry later"}, 429, headers)
            headers = gitlab_headers(quota)
        try:
            response = await handler(request)
        except BadParam as problem:
            response = json_response({"error": str(problem)}, 400)
        except Missing as problem:
            response = json_response({"message": f"404 {problem}"}, 404)
        response.headers.update(headers)
        return response

    def urls(self, request: web.Request) -> gj.Urls:
        return gj.Urls(f"{request.url.origin()}{PREFIX}", self.ctx.start_ms)

    def find_project(self, request: web.Request) -> GitLabProject:
        key = request.match_info["id"]
        if key.isdigit():
            project = self.world.gitlab_by_id.get(int(key))
        else:
            project = self.world.gitlab_by_path.get(key.lower())
        if project is None:
            raise Missing("Project Not Found")
        return project

    def find_run(self, request: web.Request) -> tuple[GitLabProject, RunPlan]:
        project = self.find_project(request)
        raw = request.match_info["pid"]
        n = gj.run_index(self.world.gitlab_stride, project, int(raw)) if raw.isdigit() else None
        if n is None or n not in project.timeline.visible(self.ctx.now()):
            raise Missing("Not found")
        return project, project.timeline.plan(n)

    async def project(self, request: web.Request) -> web.Response:
        project = self.find_project(request)
        return json_response(self.project_payload(request, project))

    def project_payload(self, request: web.Request, project: GitLabProject) -> dict[str, Any]:
        window = project.timeline.visible(self.ctx.now())
        last = project.timeline.plan(window[-1]).created if window else None
        group = self.world.groups_by_path.get(project.namespace.lower())
        return gj.project_json(self.urls(request), project, group, last)

    async def pipelines(self, request: web.Request) -> web.Response:
        project = self.find_project(request)
        query = request.query
        order_by = query.get("order_by", "id")
        if order_by not in ("id", "updated_at"):
            raise BadParam("order_by does not have a valid value")
        sort = query.get("sort", "desc")
        if sort not in ("asc", "desc"):
            raise BadParam("sort does not have a valid value")
        now = self.ctx.now()
        after = time_param(request, "updated_after", self.ctx.start)
        before = time_param(request, "updated_before", self.ctx.start, round_up=True)
        page = page_runs(
            project.timeline,
            now,
            page=int_param(request, "page", 1, 1, None),
            per_page=int_param(request, "per_page", 20, 1, 100),
            newest_first=sort == "desc",
            keep=self.filter(query, now),
            after=after,
            before=before,
            by_updated=order_by == "updated_at",
        )
        urls, stride = self.urls(request), self.world.gitlab_stride
        body = [gj.pipeline_item(urls, stride, project, plan, now) for plan in page.items]
        return json_response(body, headers=paging_headers(request, page))

    def filter(self, query: Any, now: int) -> Callable[[RunPlan], bool] | None:
        ref, status, sha = query.get("ref"), query.get("status"), query.get("sha")
        source, scope = query.get("source"), query.get("scope")
        if scope is not None and scope not in (*_SCOPES, "branches", "tags"):
            raise BadParam("scope does not have a valid value")
        if not any((ref, status, sha, source, scope)):
            return None
        words = _SCOPES.get(scope or "")

        def keep(plan: RunPlan) -> bool:
            word = gj.status(plan, now)
            return (
                (ref is None or plan.ref == ref)
                and (status is None or word == status)
                and (sha is None or plan.sha == sha)
                and (source is None or gj.SOURCE.get(plan.event, "push") == source)
                and (words is None or word in words)
                and scope != "tags"
            )

        return keep

    async def pipeline(self, request: web.Request) -> web.Response:
        project, plan = self.find_run(request)
        urls, stride = self.urls(request), self.world.gitlab_stride
        return json_response(gj.pipeline_detail(urls, stride, project, plan, self.ctx.now()))

    async def pipeline_jobs(self, request: web.Request) -> web.Response:
        project, plan = self.find_run(request)
        retried = request.query.get("include_retried", "false").lower() == "true"
        urls, stride = self.urls(request), self.world.gitlab_stride
        rows = gj.jobs(urls, stride, project, plan, self.ctx.now(), retried=retried)
        scopes = set(request.query.getall("scope[]", [])) | set(request.query.getall("scope", []))
        if scopes:
            rows = [row for row in rows if row["status"] in scopes]
        return paged_list(request, rows)

    async def test_report(self, request: web.Request) -> web.Response:
        _project, plan = self.find_run(request)
        now = self.ctx.now()
        return json_response(gj.test_report(plan.attempt_at(now), now))

    async def test_summary(self, request: web.Request) -> web.Response:
        _project, plan = self.find_run(request)
        now = self.ctx.now()
        return json_response(gj.test_report_summary(plan.attempt_at(now), now))

    async def commit(self, request: web.Request) -> web.Response:
        """`GET /projects/:id/repository/commits/:sha`: the commit of a visible pipeline."""
        project = self.find_project(request)
        sha = request.match_info["sha"]
        timeline = project.timeline
        for n in reversed(timeline.visible(self.ctx.now())):
            plan = timeline.plan(n)
            if plan.sha == sha:
                return json_response(gj.commit_detail(self.urls(request), project, plan))
        raise Missing("404 Commit Not Found")

    async def compare(self, request: web.Request) -> web.Response:
        """`GET /projects/:id/repository/compare?from=&to=` (doc/api/repositories.md): the
        commits of the runs between the two SHAs on `to`'s ref, oldest first."""
        project = self.find_project(request)
        base, head = request.query.get("from"), request.query.get("to")
        if not base or not head:
            return json_response({"error": "from, to are missing"}, 400)
        plans = project.timeline.commits_between(self.ctx.now(), base, head)
        if plans is None:
            raise Missing("404 Ref Not Found")
        return json_response(gj.compare(self.urls(request), project, base, head, plans))

    async def group_projects(self, request: web.Request) -> web.Response:
        key = request.match_info["id"]
        group: GitLabGroup | None = (
            self.world.groups.get(int(key))
            if key.isdigit()
            else self.world.groups_by_path.get(key.lower())
        )
        if group is None:
            raise Missing("Group Not Found")
        subgroups = request.query.get("include_subgroups", "false").lower() == "true"
        members = [p for p in group.projects if subgroups or p.namespace == group.full_path]
        page = page_of(request, members, 20)
        body = [self.project_payload(request, p) for p in page.items]
        return json_response(body, headers=paging_headers(request, page))


def paged_list(request: web.Request, rows: list[dict[str, Any]]) -> web.Response:
    page = page_of(request, rows, 20)
    return json_response(page.items, headers=paging_headers(request, page))


def paging_headers(request: web.Request, page: Page[Any]) -> dict[str, str]:
    """GitLab's pagination headers, and a `Link` with prev, next, first and last."""
    url = request.url.update_query(per_page=str(page.per_page))
    return {
        "X-Page": str(page.page),
        "X-Per-Page": str(page.per_page),
        "X-Next-Page": str(page.page + 1) if page.page < page.pages else "",
        "X-Prev-Page": str(page.page - 1) if page.page > 1 else "",
        "X-Total": str(page.total),
        "X-Total-Pages": str(page.pages),
        "Link": page_links(url, page.page, page.pages),
    }


# What simulator/app.py mounts at `/gitlab` (the provider spec names this module).
API = GitLabApi

"""The GitHub REST API subset ciwatch uses, with `{server}/github` as the API base.

`Authorization: Bearer …` or `token …`. Every 200 carries a strong `ETag` over its body and a
matching `If-None-Match` gets a bodyless 304 that does not count against the quota; the
`x-ratelimit-*` headers report the quota and a used-up quota answers 403 with remaining 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ciwatch.simulator import github_json as gh
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
)
from ciwatch.simulator.plans import Attempt, JobPlan, RunPlan
from ciwatch.simulator.ratelimit import Quota, github_headers
from ciwatch.simulator.world import GitHubRepo

PREFIX = "/github"
DOCS = "https://docs.github.com/rest"
_STATUSES = {"queued", "in_progress", "completed", "requested", "waiting", "pending"}


def not_found() -> web.Response:
    return json_response({"message": "Not Found", "documentation_url": DOCS, "status": "404"}, 404)


def exhausted_body() -> dict[str, str]:
    return {
        "message": "API rate limit exceeded for user ID 1. (But here's the good news: "
        "Authenticated requests get a higher rate limit.)",
        "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api",
    }


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:40] + '"'


def matches(if_none_match: str, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


class GitHubApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.world = ctx.world
        self.limiter = ctx.limits.get("github")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        route = app.router.add_get
        runs = "/repos/{owner}/{repo}/actions/runs"
        route("/repos/{owner}/{repo}", self.repo)
        route(runs, self.runs)
        route(runs + "/{run_id}", self.run)
        route(runs + "/{run_id}/jobs", self.jobs)
        route(runs + "/{run_id}/attempts/{attempt}", self.run)
        route(runs + "/{run_id}/attempts/{attempt}/jobs", self.jobs)
        route("/repos/{owner}/{repo}/commits/{ref}/check-runs", self.check_runs)
        route("/repos/{owner}/{repo}/check-runs/{check_run_id}", self.check_run)
        route("/repos/{owner}/{repo}/check-runs/{check_run_id}/annotations", self.annotations)
        route("/repos/{owner}/{repo}/compare/{basehead}", self.compare)
        route("/orgs/{owner}/repos", self.owner_repos)
        route("/users/{owner}/repos", self.owner_repos)
        route("/rate_limit", self.rate_limit)
        return app

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        token = bearer_token(request, schemes=("bearer", "token"))
        accepted = self.ctx.scenario.tokens.github
        if accepted and not known(token, accepted):
            body = {"message": "Bad credentials", "documentation_url": DOCS, "status": "401"}
            return json_response(body, 401)
        now_ms = self.ctx.now_epoch_ms()
        quota = self.limiter.peek(token or "", now_ms) if self.limiter else None
        if quota is not None and quota.remaining <= 0:
            return json_response(exhausted_body(), 403, github_headers(quota))
        try:
            response = await handler(request)
        except BadParam as problem:
            response = json_response({"message": str(problem), "documentation_url": DOCS}, 422)
        except Missing:
            response = not_found()
        if request.path.endswith("/rate_limit"):
            return response
        if response.status == 200 and isinstance(response, web.Response) and response.body:
            etag = etag_of(bytes(response.body))  # type: ignore[arg-type]
            if matches(request.headers.get("If-None-Match", ""), etag):
                response = web.Response(status=304, headers={"ETag": etag})
            else:
                response.headers["ETag"] = etag
                response.headers["Cache-Control"] = "private, max-age=60, s-maxage=60"
        if quota is not None and self.limiter is not None and response.status != 304:
            quota = self.limiter.spend(token or "", now_ms) or quota
        if quota is not None:
            response.headers.update(github_headers(quota))
        return response

    def urls(self, request: web.Request) -> gh.Urls:
        return gh.Urls(f"{request.url.origin()}{PREFIX}", self.ctx.start_ms)

    def find_repo(self, request: web.Request) -> GitHubRepo:
        name = f"{request.match_info['owner']}/{request.match_info['repo']}".lower()
        repo = self.world.github_by_name.get(name)
        if repo is None:
            raise Missing("Not Found")
        return repo

    def find_run(self, request: web.Request) -> tuple[GitHubRepo, RunPlan, Attempt | None]:
        """The repo, the run, and the attempt the path names (None: it names none)."""
        repo = self.find_repo(request)
        raw = request.match_info["run_id"]
        n = gh.run_index(self.world.github_stride, repo, int(raw)) if raw.isdigit() else None
        now = self.ctx.now()
        if n is None or n not in repo.timeline.visible(now):
            raise Missing("Not Found")
        plan = repo.timeline.plan(n)
        raw = request.match_info.get("attempt", "")
        if not raw:
            return repo, plan, None
        if not raw.isdigit() or not 1 <= int(raw) <= plan.attempt_at(now).number:
            raise Missing("Not Found")
        return repo, plan, plan.attempts[int(raw) - 1]

    async def compare(self, request: web.Request) -> web.Response:
        """`GET /repos/{owner}/{repo}/compare/{base}...{head}` ("Compare two commits"): the
        commits of the runs between the two SHAs on `head`'s ref, oldest first; paged by
        `per_page`/`page` when either is given, else the first 250."""
        repo = self.find_repo(request)
        base, dots, head = request.match_info["basehead"].partition("...")
        if not dots or not base or not head:
            raise Missing("Not Found")
        plans = repo.timeline.commits_between(self.ctx.now(), base, head)
        if plans is None:
            raise Missing("No commit found for SHA: " + head)
        if "per_page" in request.query or "page" in request.query:
            shown = page_of(request, plans, 30).items
        else:
            shown = plans[:250]
        body = gh.comparison(self.urls(request), repo, base, head, plans, shown)
        return json_response(body)

    async def repo(self, request: web.Request) -> web.Response:
        repo = self.find_repo(request)
        return json_response(gh.listed_repository(self.urls(request), repo, self.ctx.start_ms))

    async def runs(self, request: web.Request) -> web.Response:
        repo = self.find_repo(request)
        now = self.ctx.now()
        per_page = int_param(request, "per_page", 30, 1, 100)
        page = page_runs(
            repo.timeline,
            now,
            page=int_param(request, "page", 1, 1, None),
            per_page=per_page,
            keep=self.filter(request, now),
        )
        urls, stride = self.urls(request), self.world.github_stride
        body = {
            "total_count": page.total,
            "workflow_runs": [gh.run_json(urls, stride, repo, p, now) for p in page.items],
        }
        return json_response(body, headers=link_headers(request, page))

    def filter(self, request: web.Request, now: int) -> Callable[[RunPlan], bool] | None:
        query = request.query
        branch, event, status = query.get("branch"), query.get("event"), query.get("status")
        sha, actor = query.get("head_sha"), query.get("actor")
        if status is not None and status not in _STATUSES | set(gh.CONCLUSION.values()):
            raise BadParam(f"status: {status!r} is not a valid status or conclusion")
        if not any((branch, event, status, sha, actor)):
            return None

        def keep(plan: RunPlan) -> bool:
            words = gh.status_words(plan.attempt_at(now), now)
            return (
                (branch is None or plan.ref == branch)
                and (event is None or gh.EVENT.get(plan.event, "push") == event)
                and (status is None or status in words)
                and (sha is None or plan.sha == sha)
                and (actor is None or plan.author == actor)
            )

        return keep

    async def run(self, request: web.Request) -> web.Response:
        repo, plan, attempt = self.find_run(request)
        urls, stride, now = self.urls(request), self.world.github_stride, self.ctx.now()
        number = attempt.number if attempt else None
        return json_response(
            gh.run_json(urls, stride, repo, plan, now, attempt_number=number, single=True)
        )

    async def jobs(self, request: web.Request) -> web.Response:
        repo, plan, attempt = self.find_run(request)
        now = self.ctx.now()
        current = plan.attempt_at(now)
        if attempt is not None:
            attempts = [attempt]
        elif request.query.get("filter", "latest") == "all":
            attempts = [a for a in plan.attempts if a.number <= current.number]
        else:
            attempts = [current]
        urls, stride = self.urls(request), self.world.github_stride
        rows: list[dict[str, Any]] = []
        for attempt in attempts:
            rows += gh.jobs_json(urls, stride, repo, plan, attempt, now)
        page = page_of(request, rows, 30)
        body = {"total_count": page.total, "jobs": page.items}
        return json_response(body, headers=link_headers(request, page))

    async def check_runs(self, request: web.Request) -> web.Response:
        """`GET .../commits/{ref}/check-runs`: the check runs of the jobs of every run on the
        commit (`ref`: a SHA, or a branch for its newest run's commit); `filter=latest` (the
        default) keeps the newest check run of each name, `all` every attempt's."""
        repo = self.find_repo(request)
        now = self.ctx.now()
        wanted = request.query.get("filter", "latest")
        if wanted not in ("latest", "all"):
            raise BadParam(f"filter: {wanted!r} is not one of latest, all")
        ref = request.match_info["ref"]
        plans = [repo.timeline.plan(n) for n in repo.timeline.visible(now)]
        branch = [p for p in plans if p.ref == ref]
        sha = branch[-1].sha if branch else ref
        urls, stride = self.urls(request), self.world.github_stride
        rows: dict[Any, dict[str, Any]] = {}
        for plan in (p for p in plans if p.sha == sha):
            current = plan.attempt_at(now)
            for attempt in (a for a in plan.attempts if a.number <= current.number):
                if wanted == "latest" and attempt is not current:
                    continue
                for job in attempt.jobs:
                    row = gh.check_run_json(urls, stride, repo, plan, attempt, job, now)
                    rows[row["name"] if wanted == "latest" else row["id"]] = row
        newest_first = sorted(rows.values(), key=lambda row: row["id"], reverse=True)
        page = page_of(request, newest_first, 30)
        body = {"total_count": page.total, "check_runs": page.items}
        return json_response(body, headers=link_headers(request, page))

    def find_job(self, request: web.Request) -> tuple[GitHubRepo, RunPlan, Attempt, JobPlan]:
        """The repo, run, attempt and job of the check run the path names."""
        repo = self.find_repo(request)
        raw = request.match_info["check_run_id"]
        if not raw.isdigit():
            raise Missing("Not Found")
        rid, number, index = gh.job_key(int(raw))
        n = gh.run_index(self.world.github_stride, repo, rid)
        now = self.ctx.now()
        if n is None or n not in repo.timeline.visible(now):
            raise Missing("Not Found")
        plan = repo.timeline.plan(n)
        if not 1 <= number <= plan.attempt_at(now).number:
            raise Missing("Not Found")
        attempt = plan.attempts[number - 1]
        job = next((j for j in attempt.jobs if j.index == index), None)
        if job is None:
            raise Missing("Not Found")
        return repo, plan, attempt, job

    async def check_run(self, request: web.Request) -> web.Response:
        repo, plan, attempt, job = self.find_job(request)
        urls, stride, now = self.urls(request), self.world.github_stride, self.ctx.now()
        return json_response(gh.check_run_json(urls, stride, repo, plan, attempt, job, now))

    async def annotations(self, request: web.Request) -> web.Response:
        """`GET .../check-runs/{check_run_id}/annotations`: a JSON array, paged."""
        repo, plan, attempt, job = self.find_job(request)
        rows = gh.annotations_json(self.urls(request), repo, plan, attempt, job, self.ctx.now())
        page = page_of(request, rows, 30)
        return json_response(page.items, headers=link_headers(request, page))

    async def owner_repos(self, request: web.Request) -> web.Response:
        repos = self.world.owners.get(request.match_info["owner"].lower())
        if repos is None:
            raise Missing("Not Found")
        page = page_of(request, repos, 30)
        urls = self.urls(request)
        body = [gh.listed_repository(urls, repo, self.ctx.start_ms) for repo in page.items]
        return json_response(body, headers=link_headers(request, page))

    async def rate_limit(self, request: web.Request) -> web.Response:
        """`GET /rate_limit`: the quota, without spending any of it."""
        token = bearer_token(request, schemes=("bearer", "token")) or ""
        if self.limiter is None:
            raise Missing("Not Found")
        quota = self.limiter.peek(token, self.ctx.now_epoch_ms())
        core = quota_json(quota)
        body = {"resources": {"core": core}, "rate": core}
        return json_response(body, headers=github_headers(quota))


def link_headers(request: web.Request, page: Page[Any]) -> dict[str, str]:
    """GitHub's `Link` header, only when there is more than one page."""
    if page.pages <= 1:
        return {}
    url = request.url.update_query(per_page=str(page.per_page))
    return {"Link": page_links(url, page.page, page.pages, always_first_last=False)}


def quota_json(quota: Quota) -> dict[str, Any]:
    return {
        "limit": quota.limit,
        "used": quota.used,
        "remaining": quota.remaining,
        "reset": quota.reset,
    }


# What simulator/app.py mounts at `/github` (the provider spec names this module).
API = GitHubApi

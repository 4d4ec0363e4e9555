"""The Jenkins remote API subset ciwatch uses, under `{server}/jenkins`.

`/api/json` (root), `/job/A/job/B/api/json` (folders, multibranch projects, jobs),
`/job/…/N/api/json` (builds; `lastBuild` and the other permalinks too), `/job/…/N/wfapi/describe`,
`/job/…/wfapi/runs`, `/job/…/wfapi/describe` and `/queue/api/json`, all honouring `tree=`.
HTTP basic authentication with a user name and API token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from ciwatch.simulator import jenkins_items as items
from ciwatch.simulator.context import Context, basic_credentials
from ciwatch.simulator.httputil import Handler, json_response
from ciwatch.simulator.jenkins_json import JenkinsView
from ciwatch.simulator.plans import RunPlan
from ciwatch.simulator.tree import FULL, Tree, parse_tree, prune
from ciwatch.simulator.world import JenkinsNode

PREFIX = "/jenkins"
VERSION = "2.462.3"
_PERMALINKS: dict[str, Callable[[str | None], bool]] = {
    "lastCompletedBuild": lambda result: True,
    "lastSuccessfulBuild": lambda result: result in ("SUCCESS", "UNSTABLE"),
    "lastStableBuild": lambda result: result == "SUCCESS",
    "lastFailedBuild": lambda result: result == "FAILURE",
    "lastUnstableBuild": lambda result: result == "UNSTABLE",
    "lastUnsuccessfulBuild": lambda result: result != "SUCCESS",
}
_PAGE = "<html><head><title>{title}</title></head><body><h2>{title}</h2><p>{text}</p></body></html>"


def html(status: int, title: str, text: str, headers: dict[str, str] | None = None) -> web.Response:
    body = _PAGE.format(title=title, text=text)
    return web.Response(status=status, text=body, content_type="text/html", headers=headers)


def not_found() -> web.Response:
    return html(404, "Not Found", "The requested resource was not found on this server.")


class JenkinsApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.world = ctx.world

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.guard])
        app.router.add_get("/{tail:.*}", self.dispatch)
        return app

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        accepted = dict(self.ctx.scenario.tokens.jenkins)
        credentials = basic_credentials(request)
        if accepted and (credentials is None or accepted.get(credentials[0]) != credentials[1]):
            who = credentials[0] if credentials else "anonymous"
            headers = {"WWW-Authenticate": 'Basic realm="Jenkins"', "X-Jenkins": VERSION}
            return html(401, "Unauthorized", f"Invalid password/token for user: {who}", headers)
        response = await handler(request)
        response.headers["X-Jenkins"] = VERSION
        return response

    def view(self, request: web.Request) -> JenkinsView:
        root = f"{request.url.origin()}{PREFIX}/"
        return JenkinsView(self.world, root, self.ctx.start_ms, self.ctx.now())

    async def dispatch(self, request: web.Request) -> web.Response:
        segments = [unquote(s) for s in request.rel_url.raw_path.split("/") if s][1:]
        names: list[str] = []
        while len(segments) >= 2 and segments[0] == "job":
            names.append(segments[1])
            segments = segments[2:]
        view = self.view(request)
        if not names:
            if segments == ["api", "json"]:
                return self.render(request, items.root(view), items.FOLDER_DEFAULT)
            if segments == ["queue", "api", "json"]:
                queue = {
                    "_class": "hudson.model.Queue",
                    "discoverableItems": [],
                    "items": view.all_queue_items(),
                }
                return self.render(request, queue, FULL)
            return not_found()
        node = self.world.jenkins_node(names)
        if node is None:
            return not_found()
        if segments and (segments[0].isdigit() or segments[0] in (*_PERMALINKS, "lastBuild")):
            plan = self.find_build(view, node, segments[0])
            if plan is None:
                return not_found()
            return self.build_endpoint(request, view, node, plan, segments[1:])
        return self.item_endpoint(request, view, node, segments)

    def item_endpoint(
        self, request: web.Request, view: JenkinsView, node: JenkinsNode, rest: list[str]
    ) -> web.Response:
        is_job = node.timeline is not None
        if rest == ["api", "json"]:
            default = items.JOB_DEFAULT if is_job else items.FOLDER_DEFAULT
            return self.render(request, items.item(view, node), default)
        if node.kind != "pipeline":
            return not_found()
        if rest in (["wfapi"], ["wfapi", "describe"]):
            return json_response(items.wf_job(view, node))
        if rest == ["wfapi", "runs"]:
            builds = view.started(node)
            since = request.query.get("since", "").lstrip("#")
            if since.isdigit():
                builds = [plan for plan in builds if plan.n + 1 > int(since)]
            return json_response([items.wf_run(view, node, plan) for plan in builds[:10]])
        return not_found()

    def build_endpoint(
        self,
        request: web.Request,
        view: JenkinsView,
        node: JenkinsNode,
        plan: RunPlan,
        rest: list[str],
    ) -> web.Response:
        if rest == ["api", "json"]:
            return self.render(request, view.build(node, plan), FULL)
        if rest in (["wfapi"], ["wfapi", "describe"]) and node.kind == "pipeline":
            return json_response(items.wf_run(view, node, plan))
        if rest == ["testReport", "api", "json"]:
            report = view.test_report(plan)
            return not_found() if report is None else self.render(request, report, FULL)
        return not_found()

    def find_build(self, view: JenkinsView, node: JenkinsNode, selector: str) -> RunPlan | None:
        if node.timeline is None:
            return None
        if selector == "lastBuild":
            newest = view.started(node, 0, 1)
            return newest[0] if newest else None
        if selector in _PERMALINKS:
            found = view.last(node, _PERMALINKS[selector])
            return found[0] if found else None
        n = int(selector) - 1
        if n not in node.timeline.visible(view.now) or n in view.waiting(node):
            return None
        return node.timeline.plan(n)

    def render(self, request: web.Request, data: dict[str, Any], default: Tree) -> web.Response:
        spec = request.query.get("tree")
        try:
            tree = parse_tree(spec) if spec else default
        except ValueError as problem:
            return html(400, "Bad Request", str(problem))
        return json_response(prune(data, tree))


# What simulator/app.py mounts at `/jenkins` (the provider spec names this module).
API = JenkinsApi

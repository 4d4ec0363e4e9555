"""Jenkins items (root, folders, multibranch projects, jobs) and the Pipeline Stage View
(`wfapi`) objects, on top of `JenkinsView`."""

from __future__ import annotations

from typing import Any

from ciwatch.simulator.jenkins_json import CLASSES, JenkinsView
from ciwatch.simulator.plans import Attempt, RunPlan
from ciwatch.simulator.tree import Lazy, LazyList, Tree, default_tree
from ciwatch.simulator.world import JenkinsNode

# What Jenkins shows of nested objects when no `tree` is given (depth 0).
_REF = "number,url"
JOB_DEFAULT: Tree = default_tree(
    builds=_REF,
    firstBuild=_REF,
    lastBuild=_REF,
    lastCompletedBuild=_REF,
    lastFailedBuild=_REF,
    lastStableBuild=_REF,
    lastSuccessfulBuild=_REF,
    lastUnstableBuild=_REF,
    lastUnsuccessfulBuild=_REF,
)
FOLDER_DEFAULT: Tree = default_tree(jobs="name,url,color")
_WF_STATUS = {
    "success": "SUCCESS",
    "failed": "FAILED",
    "canceled": "ABORTED",
    "timed_out": "ABORTED",
    "unstable": "UNSTABLE",
    "skipped": "NOT_EXECUTED",
}
_VIEW = {"_class": "hudson.model.AllView", "name": "all"}


def item(view: JenkinsView, node: JenkinsNode) -> dict[str, Any]:
    if node.kind in ("folder", "multibranch"):
        return folder(view, node)
    return job(view, node)


def root(view: JenkinsView) -> dict[str, Any]:
    node = view.world.jenkins_root
    return {
        "_class": "hudson.model.Hudson",
        "assignedLabels": [{"name": "built-in"}],
        "mode": "NORMAL",
        "nodeDescription": "the Jenkins controller's built-in node",
        "nodeName": "",
        "numExecutors": 2,
        "description": None,
        "jobs": Lazy(lambda: [item(view, child) for child in node.children.values()]),
        "overallLoad": {},
        "primaryView": {**_VIEW, "url": view.root},
        "quietDownReason": None,
        "quietingDown": False,
        "slaveAgentPort": -1,
        "unlabeledLoad": {"_class": "jenkins.model.UnlabeledLoadStatistics"},
        "url": view.root,
        "useCrumbs": True,
        "useSecurity": True,
        "views": [{**_VIEW, "url": view.root}],
    }


def _common(view: JenkinsView, node: JenkinsNode) -> dict[str, Any]:
    return {
        "_class": CLASSES[node.kind],
        "actions": [{"_class": "org.jenkinsci.plugins.displayurlapi.actions.JobDisplayAction"}],
        "description": "",
        "displayName": node.display,
        "displayNameOrNull": node.display if node.display != node.name else None,
        "fullDisplayName": node.full_display,
        "fullName": node.full_name,
        "name": node.name,
        "url": view.url(node),
    }


def folder(view: JenkinsView, node: JenkinsNode) -> dict[str, Any]:
    data = _common(view, node)
    data.update(
        healthReport=[],
        jobs=Lazy(lambda: [item(view, child) for child in node.children.values()]),
        primaryView={**_VIEW, "url": view.url(node)},
        views=[{**_VIEW, "url": view.url(node)}],
    )
    if node.kind == "multibranch":
        data["sources"] = [{}]
    return data


def job(view: JenkinsView, node: JenkinsNode) -> dict[str, Any]:
    def build_ref(wanted: Any) -> Lazy:
        def compute() -> dict[str, Any] | None:
            found = view.last(node, wanted)
            return view.build(node, found[0]) if found else None

        return Lazy(compute)

    def newest() -> dict[str, Any] | None:
        builds = view.started(node, 0, 1)
        return view.build(node, builds[0]) if builds else None

    def oldest() -> dict[str, Any] | None:
        builds = view.started(node)
        return view.build(node, builds[-1]) if builds else None

    def queue_item() -> dict[str, Any] | None:
        waiting = view.waiting(node)
        return view.queue_item(node, waiting[0]) if waiting else None

    waiting = view.waiting(node)
    assert node.timeline is not None
    data = _common(view, node)
    data.update(
        buildable=True,
        builds=LazyList(lambda a, b: [view.build(node, p) for p in view.started(node, a, b)]),
        color=Lazy(lambda: view.color(node)),
        firstBuild=Lazy(oldest),
        healthReport=Lazy(lambda: view.health(node)),
        inQueue=bool(waiting),
        keepDependencies=False,
        lastBuild=Lazy(newest),
        lastCompletedBuild=build_ref(lambda result: True),
        lastFailedBuild=build_ref(lambda result: result == "FAILURE"),
        lastStableBuild=build_ref(lambda result: result == "SUCCESS"),
        lastSuccessfulBuild=build_ref(lambda result: result in ("SUCCESS", "UNSTABLE")),
        lastUnstableBuild=build_ref(lambda result: result == "UNSTABLE"),
        lastUnsuccessfulBuild=build_ref(lambda result: result != "SUCCESS"),
        nextBuildNumber=(waiting[0] if waiting else node.timeline.count(view.now)) + 1,
        property=[],
        queueItem=Lazy(queue_item),
        concurrentBuild=False,
    )
    if node.kind == "freestyle":
        data.update(
            downstreamProjects=[], scm={"_class": "hudson.scm.NullSCM"}, upstreamProjects=[]
        )
    else:
        data["resumeBlocked"] = False
    return data


# -- Pipeline Stage View plugin ----------------------------------------------------------


def wf_job(view: JenkinsView, node: JenkinsNode) -> dict[str, Any]:
    return {
        "_links": {
            "self": {"href": view.href(node, "wfapi/describe")},
            "runs": {"href": view.href(node, "wfapi/runs")},
        },
        "name": node.name,
        "runCount": len(view.started(node)),
    }


def wf_run(view: JenkinsView, node: JenkinsNode, plan: RunPlan) -> dict[str, Any]:
    number = plan.n + 1
    attempt = plan.attempts[0]
    now = view.now
    if now < attempt.finished:
        status, end = "IN_PROGRESS", now
    elif attempt.result == "manual":
        status, end = "PAUSED_PENDING_INPUT", attempt.finished
    else:
        status, end = _WF_STATUS.get(attempt.result, "SUCCESS"), attempt.finished
    links: dict[str, Any] = {"self": {"href": view.href(node, f"{number}/wfapi/describe")}}
    if status == "PAUSED_PENDING_INPUT":
        links["pendingInputActions"] = {
            "href": view.href(node, f"{number}/wfapi/pendingInputActions")
        }
    elif status != "IN_PROGRESS":
        links["artifacts"] = {"href": view.href(node, f"{number}/wfapi/artifacts")}
    return {
        "_links": links,
        "id": str(number),
        "name": f"#{number}",
        "status": status,
        "startTimeMillis": view.epoch(attempt.started),
        "endTimeMillis": view.epoch(end),
        "durationMillis": end - attempt.started,
        "stages": stages(view, node, number, attempt),
    }


def stages(
    view: JenkinsView, node: JenkinsNode, number: int, attempt: Attempt
) -> list[dict[str, Any]]:
    now = view.now
    names = list(dict.fromkeys(job.stage for job in attempt.jobs))
    result: list[dict[str, Any]] = []
    for i, name in enumerate(names):
        members = [job for job in attempt.jobs if job.stage == name]
        begin = attempt.started + min(job.start for job in members)
        if now < begin:
            break
        words = [job.status_at(attempt, now)[0] for job in members]
        end = max(attempt.started + job.start + job.duration for job in members)
        status = _stage_status(words)
        node_id = str(5 + 3 * i)
        result.append(
            {
                "_links": {
                    "self": {
                        "href": view.href(node, f"{number}/execution/node/{node_id}/wfapi/describe")
                    }
                },
                "id": node_id,
                "name": name,
                "status": status,
                "startTimeMillis": view.epoch(begin),
                "durationMillis": (now if status == "IN_PROGRESS" else end) - begin,
            }
        )
    return result


def _stage_status(words: list[str]) -> str:
    for word, status in (
        ("running", "IN_PROGRESS"),
        ("manual", "PAUSED_PENDING_INPUT"),
        ("failed", "FAILED"),
        ("timed_out", "ABORTED"),
        ("canceled", "ABORTED"),
        ("unstable", "UNSTABLE"),
    ):
        if word in words:
            return status
    return "NOT_EXECUTED" if all(w == "skipped" for w in words) else "SUCCESS"

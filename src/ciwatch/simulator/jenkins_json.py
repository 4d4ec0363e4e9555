"""Jenkins JSON objects (shaped like tests/fixtures/jenkins/api), built from run plans.

Objects are full (every property) with `Lazy`/`LazyList` values for what is costly, so the
`tree=` filter (or the default depth-0 view) computes only what it shows. A build exists once it
has left the queue; until then it is a queue item.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from ciwatch.simulator import reports
from ciwatch.simulator.plans import FOREVER, RunPlan
from ciwatch.simulator.tree import Lazy
from ciwatch.simulator.world import JenkinsNode, World

CLASSES = {
    "pipeline": "org.jenkinsci.plugins.workflow.job.WorkflowJob",
    "freestyle": "hudson.model.FreeStyleProject",
    "folder": "com.cloudbees.hudson.plugins.folder.Folder",
    "multibranch": "org.jenkinsci.plugins.workflow.multibranch.WorkflowMultiBranchProject",
}
BUILD_CLASSES = {
    "pipeline": "org.jenkinsci.plugins.workflow.job.WorkflowRun",
    "freestyle": "hudson.model.FreeStyleBuild",
}
RESULT = {
    "success": "SUCCESS",
    "failed": "FAILURE",
    "canceled": "ABORTED",
    "skipped": "NOT_BUILT",
    "unstable": "UNSTABLE",
    "timed_out": "ABORTED",
}
COLOR = {
    "SUCCESS": "blue",
    "FAILURE": "red",
    "UNSTABLE": "yellow",
    "ABORTED": "aborted",
    "NOT_BUILT": "notbuilt",
}
STUCK_AFTER_MS = 600_000
_HEALTH = ((80, "80plus"), (60, "60to79"), (40, "40to59"), (20, "20to39"), (0, "00to19"))


class JenkinsView:
    """Everything one request can show, as of `now`; caches per job live as long as it."""

    def __init__(self, world: World, root: str, start_ms: int, now: int) -> None:
        self.world = world
        self.root = root  # "{server}/jenkins/"
        self.path_root = "/" + root.split("://", 1)[-1].split("/", 1)[1]  # "/jenkins/"
        self.start_ms = start_ms
        self.now = now
        self._started: dict[str, list[RunPlan]] = {}
        self._waiting: dict[str, list[int]] = {}

    # -- paths, times, states ------------------------------------------------------------

    def job_path(self, node: JenkinsNode) -> str:
        return "".join(f"job/{quote(name, safe='')}/" for name in node.path_segments)

    def url(self, node: JenkinsNode) -> str:
        return self.root + self.job_path(node)

    def href(self, node: JenkinsNode, rest: str) -> str:
        return f"{self.path_root}{self.job_path(node)}{rest}"

    def epoch(self, offset: int) -> int:
        return self.start_ms + offset

    def state(self, plan: RunPlan) -> tuple[bool, str | None]:
        """(building, result): an `input` step (result manual) waits for ever."""
        attempt = plan.attempts[0]
        if self.now < attempt.finished or attempt.result == "manual":
            return True, None
        return False, RESULT[attempt.result]

    def waiting(self, node: JenkinsNode) -> list[int]:
        if node.full_name not in self._waiting:
            assert node.timeline is not None
            self._waiting[node.full_name] = node.timeline.waiting(self.now)
        return self._waiting[node.full_name]

    def started(self, node: JenkinsNode, start: int = 0, stop: int | None = None) -> list[RunPlan]:
        """Builds (runs out of the queue), newest first, items `start` to `stop`."""
        cached = self._started.get(node.full_name)
        if cached is not None and stop is not None and stop <= len(cached):
            return cached[start:stop]
        timeline = node.timeline
        assert timeline is not None
        skip = set(self.waiting(node))
        found: list[RunPlan] = []
        for n in reversed(timeline.visible(self.now)):
            if n in skip:
                continue
            if stop is not None and len(found) >= stop:
                break
            found.append(timeline.plan(n))
        if stop is None:
            self._started[node.full_name] = found
        return found[start:]

    def queue_id(self, node: JenkinsNode, plan: RunPlan) -> int:
        return (plan.n + 1) * self.world.jenkins_stride + node.index

    # -- builds ---------------------------------------------------------------------------

    def build(self, node: JenkinsNode, plan: RunPlan) -> dict[str, Any]:
        number = plan.n + 1
        attempt = plan.attempts[0]
        building, result = self.state(plan)
        span = attempt.finished - attempt.started
        executor = (
            "hudson.model.Executor" if node.kind == "freestyle" else "hudson.model.OneOffExecutor"
        )
        data: dict[str, Any] = {
            "_class": BUILD_CLASSES[node.kind],
            "actions": Lazy(lambda: self.actions(node, plan)),
            "artifacts": [],
            "building": building,
            "description": None,
            "displayName": f"#{number}",
            "duration": 0 if building else span,
            "estimatedDuration": span if span < FOREVER - attempt.started else -1,
            "executor": {"_class": executor} if building else None,
            "fullDisplayName": f"{node.full_display} #{number}",
            "id": str(number),
            "keepLog": False,
            "number": number,
            "queueId": self.queue_id(node, plan),
            "result": result,
            "timestamp": self.epoch(attempt.started),
            "url": f"{self.url(node)}{number}/",
        }
        # The git plugin's change set: the built commit (`GitChangeSet`: `commitId`, `msg`,
        # `author.fullName`, `authorEmail`), as `changeSet` (freestyle) or `changeSets` (Pipeline).
        changes = {
            "_class": "hudson.plugins.git.GitChangeSetList",
            "items": [self.change(plan)],
            "kind": "git",
        }
        if node.kind == "freestyle":
            data["builtOn"] = ""
            data["changeSet"] = changes
        else:
            data["changeSets"] = [changes]
            data["inProgress"] = building
        data["culprits"] = (
            [{"absoluteUrl": f"{self.root}user/{plan.author}", "fullName": plan.author.title()}]
            if result in ("FAILURE", "UNSTABLE")
            else []
        )
        return data

    def change(self, plan: RunPlan) -> dict[str, Any]:
        return {
            "_class": "hudson.plugins.git.GitChangeSet",
            "affectedPaths": ["README.md"],
            "commitId": plan.sha,
            "timestamp": self.epoch(plan.created) - 30_000,
            "author": {
                "absoluteUrl": f"{self.root}user/{plan.author}",
                "fullName": plan.author.title(),
            },
            "authorEmail": f"{plan.author}@example.com",
            "comment": plan.message + "\n",
            "id": plan.sha,
            "msg": plan.message,
        }

    def test_report(self, plan: RunPlan) -> dict[str, Any] | None:
        """`{build}/testReport/api/json` (`hudson.tasks.junit.TestResult`), None (a 404) until
        the build finished and published its report."""
        found = reports.cases(plan.attempts[0], self.now)
        if found is None:
            return None
        total = reports.counts(found)
        word = {"success": "PASSED", "failed": "FAILED", "skipped": "SKIPPED"}
        suites: dict[str, list[reports.Case]] = {}
        for case in found:
            suites.setdefault(case.classname, []).append(case)
        return {
            "_class": "hudson.tasks.junit.TestResult",
            "duration": 0.0,
            "empty": not found,
            "failCount": total["failed"],
            "passCount": total["success"],
            "skipCount": total["skipped"],
            "suites": [
                {
                    "name": name,
                    "cases": [
                        {"className": c.classname, "name": c.name, "status": word[c.status]}
                        for c in group
                    ],
                }
                for name, group in suites.items()
            ],
        }

    def causes(self, node: JenkinsNode, plan: RunPlan) -> list[dict[str, Any]]:
        user = {
            "_class": "hudson.model.Cause$UserIdCause",
            "shortDescription": f"Started by user {plan.author.title()}",
            "userId": plan.author,
            "userName": plan.author.title(),
        }
        if plan.event == "replay" and node.timeline is not None:
            replayed = node.timeline.scripted[: plan.n]
            original = max(p.n for p in replayed if p.sha == plan.sha)
            kind = ("org.jenkinsci.plugins.workflow.cps.replay.ReplayCause", "Replayed")
            if node.kind == "freestyle":
                kind = ("com.sonyericsson.rebuild.RebuildCause", "Rebuilds build")
            return [{"_class": kind[0], "shortDescription": f"{kind[1]} #{original + 1}"}, user]
        if plan.event == "manual":
            return [user]
        if plan.event == "schedule":
            return [
                {
                    "_class": "hudson.triggers.TimerTrigger$TimerTriggerCause",
                    "shortDescription": "Started by timer",
                }
            ]
        if node.in_multibranch:
            return [
                {
                    "_class": "jenkins.branch.BranchIndexingCause",
                    "shortDescription": "Branch indexing",
                }
            ]
        return [
            {
                "_class": "hudson.triggers.SCMTrigger$SCMTriggerCause",
                "shortDescription": "Started by an SCM change",
            }
        ]

    def actions(self, node: JenkinsNode, plan: RunPlan) -> list[dict[str, Any]]:
        branch = plan.ref if node.in_multibranch else f"refs/remotes/origin/{plan.ref}"
        revision = {"SHA1": plan.sha, "branch": [{"SHA1": plan.sha, "name": branch}]}
        built = {
            "_class": "hudson.plugins.git.util.Build",
            "buildNumber": plan.n + 1,
            "buildResult": None,
            "marked": revision,
            "revision": revision,
        }
        remote = f"https://git.example.com/{node.full_name.split('/')[0]}.git"
        attempt = plan.attempts[0]
        waited = attempt.started - attempt.queued
        return [
            {"_class": "hudson.model.CauseAction", "causes": self.causes(node, plan)},
            {
                "_class": "hudson.plugins.git.util.BuildData",
                "buildsByBranchName": {branch: built},
                "lastBuiltRevision": revision,
                "remoteUrls": [remote],
                "scmName": "",
            },
            {  # the Metrics plugin's time-in-queue figures
                "_class": "jenkins.metrics.impl.TimeInQueueAction",
                "blockedDurationMillis": 0,
                "buildableDurationMillis": waited,
                "queuingDurationMillis": waited,
                "waitingDurationMillis": 0,
            },
        ]

    # -- queue --------------------------------------------------------------------------

    def queue_item(self, node: JenkinsNode, n: int) -> dict[str, Any]:
        assert node.timeline is not None
        plan = node.timeline.plan(n)
        queued = plan.created
        newest = self.started(node, 0, 1)
        busy = bool(newest) and self.state(newest[0])[0] and node.kind == "freestyle"
        why = "Waiting for next available executor"
        if busy:
            why = f"Build #{newest[0].n + 1} is already in progress"
        qid = self.queue_id(node, plan)
        return {
            "_class": "hudson.model.Queue$" + ("BlockedItem" if busy else "BuildableItem"),
            "actions": [{"_class": "hudson.model.CauseAction", "causes": self.causes(node, plan)}],
            "blocked": busy,
            "buildable": not busy,
            "id": qid,
            "inQueueSince": self.epoch(queued),
            "params": "",
            "stuck": self.now - queued > STUCK_AFTER_MS,
            "task": {
                "_class": CLASSES[node.kind],
                "name": node.name,
                "url": self.url(node),
                "color": Lazy(lambda: self.color(node)),
            },
            "url": f"queue/item/{qid}/",
            "why": why,
            "buildableStartMilliseconds": self.epoch(queued),
        }

    def color(self, node: JenkinsNode) -> str:
        newest = self.started(node, 0, 1)
        done = self.last(node, lambda result: result is not None)
        base = COLOR[done[1]] if done is not None and done[1] else "notbuilt"
        return base + "_anime" if newest and self.state(newest[0])[0] else base

    def last(self, node: JenkinsNode, wanted: Any) -> tuple[RunPlan, str | None] | None:
        """The newest build whose result satisfies `wanted(result)`."""
        for plan in self.started(node):
            building, result = self.state(plan)
            if not building and wanted(result):
                return plan, result
        return None

    def health(self, node: JenkinsNode) -> list[dict[str, Any]]:
        results = [self.state(p)[1] for p in self.started(node)]
        recent = [r for r in results if r is not None][:5]
        if not recent:
            return []
        failed = sum(r != "SUCCESS" for r in recent)
        score = 100 - 100 * failed // len(recent)
        icon = next(name for floor, name in _HEALTH if score >= floor)
        text = (
            f"{failed} out of the last {len(recent)} builds failed."
            if failed
            else "No recent builds failed."
        )
        return [
            {
                "description": f"Build stability: {text}",
                "iconClassName": f"icon-health-{icon}",
                "iconUrl": f"health-{icon}.png",
                "score": score,
            }
        ]

    def all_queue_items(self) -> list[dict[str, Any]]:
        return [
            self.queue_item(job, n) for job in self.world.jenkins_jobs for n in self.waiting(job)
        ]

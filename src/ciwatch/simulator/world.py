"""The scenario turned into what the three APIs serve: GitLab projects and groups, GitHub repos
and owners, the Jenkins job tree; each runnable thing with its timeline.

Ids are arithmetic so they can be computed and decoded without tables: a GitLab pipeline or
GitHub run id is `(n + 1) * stride + index` (n: the run's place in its project, index: the
project's place in its provider, stride: a power of ten above the project count).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

from ciwatch.simulator.plans import FOREVER, RunPlan, build_attempts, derive_result, ms, sha_for
from ciwatch.simulator.scenario import PROVIDERS, JobSpec, ProjectSpec, RunSpec, Scenario
from ciwatch.simulator.timeline import AUTHORS, MESSAGES, Generator, Timeline, number_plans


@dataclass
class GitLabProject:
    index: int
    id: int
    path: str
    refs: tuple[str, ...]
    timeline: Timeline
    namespace_id: int

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def namespace(self) -> str:
        return self.path.rsplit("/", 1)[0] if "/" in self.path else ""


@dataclass
class GitLabGroup:
    id: int
    full_path: str
    parent_id: int | None
    projects: list[GitLabProject] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.full_path.rsplit("/", 1)[-1]


@dataclass
class GitHubRepo:
    index: int
    id: int
    owner: str
    name: str
    refs: tuple[str, ...]
    workflow: str
    timeline: Timeline

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def workflow_id(self) -> int:
        return self.id * 10 + 1


@dataclass
class JenkinsNode:
    """A folder, multibranch project or job; `name` is Jenkins's (branch names URL-encoded)."""

    name: str
    kind: str  # folder | multibranch | pipeline | freestyle
    full_name: str
    display: str
    full_display: str  # Jenkins joins display names with " » "
    children: dict[str, JenkinsNode] = field(default_factory=dict)
    timeline: Timeline | None = None
    ref: str | None = None
    in_multibranch: bool = False
    index: int = 0

    @property
    def path_segments(self) -> list[str]:
        return self.full_name.split("/") if self.full_name else []


def stride_for(count: int) -> int:
    return int(10 ** len(str(max(count, 1))))


class World:
    def __init__(self, scenario: Scenario) -> None:
        self.seed = scenario.seed
        specs = {p: [s for s in scenario.projects if s.provider == p] for p in PROVIDERS}
        self.gitlab: list[GitLabProject] = []
        self.groups: dict[int, GitLabGroup] = {}
        self.groups_by_path: dict[str, GitLabGroup] = {}
        self.github: list[GitHubRepo] = []
        self.github_by_name: dict[str, GitHubRepo] = {}
        self.owners: dict[str, list[GitHubRepo]] = {}
        self.jenkins_root = JenkinsNode("", "root", "", "Jenkins", "")
        self.jenkins_jobs: list[JenkinsNode] = []
        self._build_gitlab(specs["gitlab"], scenario.retention)
        self._build_github(specs["github"], scenario.retention)
        for spec in specs["jenkins"]:
            self._add_jenkins(spec, spec.retention or scenario.retention)
        self.gitlab_by_id = {p.id: p for p in self.gitlab}
        self.gitlab_by_path = {p.path.lower(): p for p in self.gitlab}
        self.gitlab_stride = stride_for(len(self.gitlab))
        self.github_stride = stride_for(len(self.github))
        self.jenkins_stride = stride_for(len(self.jenkins_jobs))

    def _timeline(
        self,
        spec: ProjectSpec,
        key: str,
        runs: list[RunSpec],
        retention: int,
        branch: str | None = None,
    ) -> Timeline:
        jenkins = spec.provider == "jenkins"
        plans = _scripted(spec, key, runs, replay=jenkins)
        generator = None
        if spec.generate is not None:
            gen_spec = spec.generate
            if branch is not None:
                gen_spec = dataclasses.replace(gen_spec, refs=(branch,))
            if jenkins:
                # A Jenkins re-run is a new build: only scripted runs can have one.
                gen_spec = dataclasses.replace(gen_spec, rerun=None)
            generator = Generator(gen_spec, spec.refs, spec.jobs, key)
        return Timeline(key, plans, generator, retention, self.seed)

    def _build_gitlab(self, specs: list[ProjectSpec], retention: int) -> None:
        used = {s.id for s in specs if s.id is not None}
        auto = _auto_ids(1, used)
        for index, spec in enumerate(specs):
            namespace = self._group_for(spec.path.rsplit("/", 1)[0]) if "/" in spec.path else None
            key = f"gitlab:{spec.path}"
            timeline = self._timeline(spec, key, list(spec.runs), spec.retention or retention)
            project_id = spec.id if spec.id is not None else next(auto)
            ns_id = namespace.id if namespace else 1
            project = GitLabProject(index, project_id, spec.path, spec.refs, timeline, ns_id)
            self.gitlab.append(project)
            group = namespace
            while group is not None:
                group.projects.append(project)
                group = self.groups.get(group.parent_id) if group.parent_id else None

    def _group_for(self, full_path: str) -> GitLabGroup:
        found = self.groups_by_path.get(full_path.lower())
        if found is not None:
            return found
        parent = self._group_for(full_path.rsplit("/", 1)[0]) if "/" in full_path else None
        group = GitLabGroup(100 + len(self.groups), full_path, parent.id if parent else None)
        self.groups[group.id] = group
        self.groups_by_path[full_path.lower()] = group
        return group

    def _build_github(self, specs: list[ProjectSpec], retention: int) -> None:
        used = {s.id for s in specs if s.id is not None}
        auto = _auto_ids(500_001, used)
        for index, spec in enumerate(specs):
            owner, name = spec.path.split("/", 1)
            timeline = self._timeline(
                spec, f"github:{spec.path}", list(spec.runs), spec.retention or retention
            )
            repo_id = spec.id if spec.id is not None else next(auto)
            repo = GitHubRepo(index, repo_id, owner, name, spec.refs, spec.workflow, timeline)
            self.github.append(repo)
            self.github_by_name[repo.full_name.lower()] = repo
            self.owners.setdefault(owner.lower(), []).append(repo)

    def _add_jenkins(self, spec: ProjectSpec, retention: int) -> None:
        parent = self.jenkins_root
        *folders, leaf = spec.path.split("/")
        for folder in folders:
            node = parent.children.get(folder)
            if node is None:
                node = _child(parent, folder, "folder", folder)
                parent.children[folder] = node
            parent = node
        if spec.kind != "multibranch":
            job = _child(parent, leaf, spec.kind, leaf, ref=spec.refs[0])
            job.timeline = self._timeline(
                spec, f"jenkins:{job.full_name}", list(spec.runs), retention
            )
            self._register_job(parent, job)
            return
        project = _child(parent, leaf, "multibranch", leaf)
        parent.children[leaf] = project
        for ref in spec.refs:
            branch = _child(project, quote(ref, safe=""), "pipeline", ref, ref=ref)
            branch.in_multibranch = True
            runs = [r for r in spec.runs if (r.ref or spec.refs[0]) == ref]
            key = f"jenkins:{project.full_name}#{ref}"
            branch.timeline = self._timeline(spec, key, runs, retention, branch=ref)
            self._register_job(project, branch)

    def _register_job(self, parent: JenkinsNode, job: JenkinsNode) -> None:
        job.index = len(self.jenkins_jobs)
        parent.children[job.name] = job
        self.jenkins_jobs.append(job)

    def jenkins_node(self, names: list[str]) -> JenkinsNode | None:
        node = self.jenkins_root
        for name in names:
            child = node.children.get(name)
            if child is None:
                return None
            node = child
        return node


def _child(
    parent: JenkinsNode, name: str, kind: str, display: str, ref: str | None = None
) -> JenkinsNode:
    full_name = f"{parent.full_name}/{name}" if parent.full_name else name
    full_display = f"{parent.full_display} » {display}" if parent.full_display else display
    return JenkinsNode(name, kind, full_name, display, full_display, ref=ref)


def _auto_ids(start: int, used: set[int]) -> Iterator[int]:
    value = start
    while True:
        if value not in used:
            yield value
        value += 1


def _scripted(spec: ProjectSpec, key: str, runs: list[RunSpec], *, replay: bool) -> list[RunPlan]:
    plans: list[RunPlan] = []
    for i, run in enumerate(runs):
        jobs: tuple[JobSpec, ...] = run.jobs or spec.jobs
        result = run.result or (derive_result(run.jobs) if run.jobs else "success")
        duration = ms(run.duration) if run.duration is not None else None
        rerun = None if replay else run.rerun
        attempts = build_attempts(ms(run.at), ms(run.queue), duration, result, jobs, rerun)
        ref = run.ref or spec.refs[0]
        sha = sha_for(f"{key}/scripted/{i}")
        author = run.author or AUTHORS[i % len(AUTHORS)]
        message = run.message or MESSAGES[i % len(MESSAGES)]
        plans.append(RunPlan(0, ref, sha, run.event, author, message, attempts))
        first = attempts[0]
        if replay and run.rerun is not None and first.finished < FOREVER:
            again = run.rerun
            span = ms(again.duration) if again.duration is not None else None
            if span is None:
                span = first.finished - first.started
            created = first.finished + ms(again.after)
            templates = tuple(JobSpec(j.name, j.stage) for j in jobs)
            replayed = build_attempts(created, ms(again.queue), span, again.result, templates, None)
            plans.append(RunPlan(0, ref, sha, "replay", author, message, replayed))
    return number_plans(plans)

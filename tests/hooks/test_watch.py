"""Webhooks honour the source's filters (`providers.watch`): a delivery for a project, ref or
workflow the source does not watch is answered 202 "ignored" naming why, counted as `ignored`
and not stored; `webhooks_accept_unwatched` stores it anyway. Against a real server and store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ciwatch.clock import FakeClock
from ciwatch.config import Settings
from ciwatch.domain import RunKey
from ciwatch.providers import watch
from ciwatch.runtime import Runtime
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import Store

from .conftest import NOW, SECRETS, Server, build_app, serving
from .payloads import fixture, github_headers, gitlab_headers, jenkins_headers


def filtered(accept_unwatched: bool = False) -> Settings:
    common: dict[str, Any] = {"webhooks_accept_unwatched": accept_unwatched}
    return Settings(
        database="sqlite:///unused.db",
        sources=[
            {
                "name": "gl",
                "type": "gitlab",
                "url": "http://127.0.0.1:1/gitlab",
                "groups": ["gitlab-org"],
                "projects": ["solo/app"],
                "exclude_projects": ["gitlab-org/legacy*"],
                "refs": ["master", "release/*"],
                "exclude_refs": ["release/old*"],
                "webhook_secret": SECRETS["gl"],
                **common,
            },
            {
                "name": "gh",
                "type": "github",
                "url": "http://127.0.0.1:1/github",
                "orgs": ["octo-org"],
                "repos": ["Codertocat/Hello-World"],
                "workflows": ["CI*", "CodeQL"],
                "webhook_secret": SECRETS["gh"],
                **common,
            },
            {
                "name": "jk",
                "type": "jenkins",
                "url": "http://127.0.0.1:1/jenkins",
                "folders": ["team"],
                "jobs": ["asgard"],
                "exclude_refs": ["wip*"],
                "webhook_secret": SECRETS["jk"],
                **common,
            },
        ],
    )


async def _server(store: Store, settings: Settings) -> AsyncIterator[Server]:
    runtime = Runtime(settings, store, FakeClock(NOW), CollectionMetrics())
    app = build_app(runtime)
    async with serving(app) as url, aiohttp.ClientSession() as http:
        server = Server(url, runtime, http, app)
        yield server
        await server.settle()


@pytest.fixture
async def watching(store: Store) -> AsyncIterator[Server]:
    async for server in _server(store, filtered()):
        yield server


@pytest.fixture
async def accepting(store: Store) -> AsyncIterator[Server]:
    async for server in _server(store, filtered(accept_unwatched=True)):
        yield server


def pipeline(project: str, ref: str = "master", run_id: int = 31) -> bytes:
    data = json.loads(fixture("gitlab/webhooks/pipeline-hook.json"))
    data["project"]["path_with_namespace"] = project
    data["object_attributes"].update(ref=ref, id=run_id)
    return json.dumps(data).encode()


def gitlab_job(project: str, ref: str) -> bytes:
    data = json.loads(fixture("gitlab/webhooks/job-hook.json"))
    data["ref"] = ref
    data.setdefault("project", {})["path_with_namespace"] = project
    return json.dumps(data).encode()


def workflow_run(repo: str, workflow: str, branch: str = "master") -> bytes:
    data = json.loads(fixture("github/webhooks/workflow_run.completed.json"))
    data["repository"]["full_name"] = repo
    data["workflow_run"].update(name=workflow, head_branch=branch)
    if data.get("workflow"):
        data["workflow"]["name"] = workflow
    return json.dumps(data).encode()


def workflow_job(repo: str, workflow: str | None) -> bytes:
    data = json.loads(fixture("github/webhooks/workflow_job.completed.json"))
    data["repository"]["full_name"] = repo
    if workflow is None:
        del data["workflow_job"]["workflow_name"]
    else:
        data["workflow_job"]["workflow_name"] = workflow
    return json.dumps(data).encode()


def notification(path: str, number: int = 18, branch: str = "origin/master") -> bytes:
    data = json.loads(fixture("jenkins/webhooks/notification-plugin.completed.json"))
    data["url"] = path
    data["build"].update(number=number, url=f"{path}{number}/", full_url=None)
    data["build"]["scm"]["branch"] = branch
    return json.dumps(data).encode()


async def gl(server: Server, body: bytes, event: str = "Pipeline Hook", key: str = "k") -> Any:
    status, answer = await server.post("/hooks/gitlab/gl", body, gitlab_headers(event, key=key))
    assert status == 202, answer
    return answer


async def gh(server: Server, body: bytes, event: str, delivery: str) -> Any:
    headers = github_headers(body, event, delivery=delivery)
    status, answer = await server.post("/hooks/github/gh", body, headers)
    assert status == 202, answer
    return answer


async def jk(server: Server, body: bytes, key: str) -> Any:
    status, answer = await server.post("/hooks/jenkins/jk", body, jenkins_headers(key))
    assert status == 202, answer
    return answer


async def test_gitlab_group_source_stores_only_what_it_watches(watching: Server) -> None:
    store = watching.runtime.store
    # Under the group (any depth), listed, on a watched ref: stored.
    for n, project in enumerate(("gitlab-org/gitlab-test", "gitlab-org/sub/tool", "solo/app")):
        answer = await gl(watching, pipeline(project, run_id=100 + n), key=f"ok{n}")
        assert answer["status"] == "accepted", answer
        assert await store.get_run(RunKey("gl", project, str(100 + n))) is not None
    answer = await gl(watching, pipeline("Gitlab-Org/Case", run_id=110), key="case")
    assert answer["status"] == "accepted", "GitLab paths are compared without regard to case"

    cases = [
        (pipeline("other/app", run_id=1), "project 'other/app' is not watched by source 'gl'"),
        (pipeline("gitlab-org-x/app", run_id=2), "project 'gitlab-org-x/app' is not watched"),
        (pipeline("gitlab-org/legacy-api", run_id=3), "excluded by exclude_projects"),
        (pipeline("gitlab-org/gitlab-test", "feature/x", 4), "ref 'feature/x' is not watched"),
        (pipeline("gitlab-org/gitlab-test", "release/old-1", 5), "ref 'release/old-1'"),
    ]
    for n, (body, reason) in enumerate(cases):
        answer = await gl(watching, body, key=f"no{n}")
        assert answer["status"] == "ignored", answer
        assert reason in answer["reason"], answer
        assert await store.get_run(RunKey("gl", *_project_and_id(body))) is None
    assert "groups: gitlab-org" in (await gl(watching, cases[0][0], key="again"))["reason"]
    assert watching.runtime.metrics.webhooks[("gl", "ignored")] == len(cases) + 1
    assert watching.runtime.metrics.webhooks[("gl", "accepted")] == 4

    # A Job Hook carries its ref beside the job.
    answer = await gl(watching, gitlab_job("gitlab-org/gitlab-test", "feature/y"), "Job Hook", "j1")
    assert (answer["status"], "ref 'feature/y'" in answer["reason"]) == ("ignored", True)
    assert await store.jobs_for(RunKey("gl", "gitlab-org/gitlab-test", "2366")) == []
    answer = await gl(watching, gitlab_job("gitlab-org/gitlab-test", "master"), "Job Hook", "j2")
    assert answer["status"] == "accepted", answer
    assert len(await store.jobs_for(RunKey("gl", "gitlab-org/gitlab-test", "2366"))) == 1


def _project_and_id(body: bytes) -> tuple[str, str]:
    data = json.loads(body)
    return data["project"]["path_with_namespace"], str(data["object_attributes"]["id"])


async def test_github_org_source_filters_repos_and_workflows(watching: Server) -> None:
    store = watching.runtime.store
    answer = await gh(watching, workflow_run("octo-org/octo-repo", "CI build"), "workflow_run", "1")
    assert answer["status"] == "accepted", answer
    assert answer["run"] == {"project": "octo-org/octo-repo", "run_id": "289782451"}
    answer = await gh(watching, workflow_run("OCTO-ORG/other", "CI"), "workflow_run", "2")
    assert answer["status"] == "accepted", "an organisation covers its repos, in any case"

    cases = [
        (workflow_run("octo-org/octo-repo", "Lint"), "workflow 'Lint' is not watched"),
        (workflow_run("someone/else", "CI"), "project 'someone/else' is not watched"),
        (workflow_run("octo-org/a/b", "CI"), "project 'octo-org/a/b' is not watched"),
        (workflow_job("Codertocat/Hello-World", "Release"), "workflow 'Release'"),
        (workflow_job("someone/else", "CodeQL"), "project 'someone/else'"),
    ]
    for n, (body, reason) in enumerate(cases):
        event = "workflow_run" if b'"workflow_run"' in body else "workflow_job"
        answer = await gh(watching, body, event, f"no{n}")
        assert answer["status"] == "ignored", answer
        assert reason in answer["reason"], answer
    assert await store.get_run(RunKey("gh", "someone/else", "289782451")) is None
    assert watching.runtime.metrics.webhooks[("gh", "ignored")] == len(cases)

    # A listed repo; a job without `workflow_name` (older GitHub Enterprise) is not judged by it.
    answer = await gh(
        watching, workflow_job("Codertocat/Hello-World", "CodeQL"), "workflow_job", "j"
    )
    assert answer["status"] == "accepted", answer
    answer = await gh(watching, workflow_job("Codertocat/Hello-World", None), "workflow_job", "j2")
    assert answer["status"] == "accepted", answer


async def test_jenkins_folder_source_filters_jobs_and_refs(watching: Server) -> None:
    store = watching.runtime.store
    answer = await jk(watching, notification("job/team/job/app/"), "a")
    assert answer["status"] == "accepted", answer
    assert await store.get_run(RunKey("jk", "team/app", "18")) is not None
    # A listed job covers the jobs in it (a multibranch project's branch jobs).
    answer = await jk(watching, notification("job/asgard/job/main/", 3), "b")
    assert answer["status"] == "accepted", answer

    answer = await jk(watching, notification("job/other/", 5), "c")
    assert answer["status"] == "ignored"
    assert (
        "project 'other' is not watched by source 'jk' (jobs: asgard; folders: team)"
        in (answer["reason"])
    )
    answer = await jk(watching, notification("job/Team/job/app/", 6), "d")
    assert answer["status"] == "ignored", "Jenkins names are exact"
    answer = await jk(watching, notification("job/team/job/app/", 7, "origin/wip-1"), "e")
    assert answer["status"] == "ignored"
    assert "ref 'wip-1' is not watched by source 'jk' (exclude_refs: wip*)" in answer["reason"]
    for project, number in (("other", "5"), ("Team/app", "6"), ("team/app", "7")):
        assert await store.get_run(RunKey("jk", project, number)) is None
    assert watching.runtime.metrics.webhooks[("jk", "ignored")] == 3


async def test_webhooks_accept_unwatched_stores_everything(accepting: Server) -> None:
    store = accepting.runtime.store
    answer = await gl(accepting, pipeline("other/app", "feature/x", 7), key="x")
    assert answer["status"] == "accepted", answer
    assert await store.get_run(RunKey("gl", "other/app", "7")) is not None
    answer = await gh(accepting, workflow_run("someone/else", "Lint"), "workflow_run", "x")
    assert answer["status"] == "accepted", answer
    answer = await jk(accepting, notification("job/other/", 9, "origin/wip"), "x")
    assert answer["status"] == "accepted", answer
    assert not any(result == "ignored" for _, result in accepting.runtime.metrics.webhooks)


def test_the_poller_and_the_receiver_share_each_decision() -> None:
    """The globs are applied by the same functions the pollers call (`exclude_project`,
    `ref_wanted`, `workflow_wanted`), so a ref or workflow a poll drops is one a webhook
    ignores."""
    gitlab, github, _ = filtered().sources
    for ref in ("master", "release/1", "release/old-2", "feature", None):
        ignored = watch.unwatched(gitlab, "gitlab-org/app", ref) is not None
        assert ignored is not watch.ref_wanted(gitlab, ref)
    for workflow in ("CI", "CI nightly", "CodeQL", "Lint", None):
        ignored = watch.unwatched(github, "octo-org/r", "main", workflow) is not None
        assert ignored is not watch.workflow_wanted(github, workflow)
    for project in ("gitlab-org/legacy", "gitlab-org/legacy-x", "gitlab-org/app"):
        ignored = watch.unwatched(gitlab, project) is not None
        assert ignored is watch.exclude_project(gitlab, project)

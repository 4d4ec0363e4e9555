"""The simulated Jenkins: folders, multibranch, jobs, builds, `tree=`, queue, wfapi, auth."""

from __future__ import annotations

import pytest

from .harness import JENKINS_AUTH, Harness

APP = "job/team/job/app"
NIGHTLY = "job/team/job/tools/job/nightly"
BUILD_TREE = (
    "builds[number,result,timestamp,duration,building,queueId,url,"
    "actions[causes[userId,userName,shortDescription],lastBuiltRevision[SHA1,branch[name]]]]"
)


async def test_root_lists_top_level_items_like_jenkins(basic: Harness) -> None:
    root = (await basic.jenkins("api/json")).json()
    assert root["_class"] == "hudson.model.Hudson"
    assert [(j["name"], j["_class"].rsplit(".", 1)[1]) for j in root["jobs"]] == [
        ("smoke", "WorkflowJob"),
        ("team", "Folder"),
    ]
    smoke, team = root["jobs"]
    assert set(smoke) == {"_class", "name", "url", "color"}
    assert set(team) == {"_class", "name", "url"}  # folders have no colour
    assert team["url"] == f"{basic.running.jenkins_url}/job/team/"


async def test_nested_tree_walks_folders_and_multibranch(basic: Harness) -> None:
    tree = "jobs[name,url,_class,jobs[name,url,_class,jobs[name,_class]]]"
    root = (await basic.jenkins("api/json", tree=tree)).json()
    team = root["jobs"][1]
    children = {j["name"]: j for j in team["jobs"]}
    assert set(children) == {"app", "tools", "gateway"}
    assert set(children["app"]) == {"_class", "name", "url"}  # a job has no `jobs`
    assert [j["name"] for j in children["tools"]["jobs"]] == ["nightly"]
    gateway = children["gateway"]
    assert gateway["_class"].endswith("WorkflowMultiBranchProject")
    assert [(j["name"], j["_class"]) for j in gateway["jobs"]] == [
        ("main", "org.jenkinsci.plugins.workflow.job.WorkflowJob"),
        ("feature%2Flogin", "org.jenkinsci.plugins.workflow.job.WorkflowJob"),
    ]


async def test_build_ranges_in_tree(basic: Harness) -> None:
    async def numbers(spec: str) -> list[int]:
        job = (await basic.jenkins(f"{APP}/api/json", tree=f"builds[number]{spec}")).json()
        return [b["number"] for b in job["builds"]]

    everything = await numbers("")
    assert everything == [4, 3, 2, 1]  # #5 is still in the queue
    assert await numbers("{0,2}") == [4, 3]
    assert await numbers("{1,3}") == [3, 2]
    assert await numbers("{,1}") == [4]
    assert await numbers("{2}") == [2]
    assert await numbers("{2,}") == [2, 1]
    assert await numbers("{9,20}") == []


async def test_the_pollers_tree_keeps_only_what_it_names(basic: Harness) -> None:
    job = (await basic.jenkins(f"{APP}/api/json", tree=f"_class,name,{BUILD_TREE}{{0,20}}")).json()
    assert set(job) == {"_class", "name", "builds"}
    build = job["builds"][0]
    assert set(build) == {"_class", "number", "result", "timestamp", "duration", "building",
                          "queueId", "url", "actions"}  # fmt: skip
    causes, revision, metrics = build["actions"]
    assert set(causes) == {"_class", "causes"}
    user = {"_class": "hudson.model.Cause$UserIdCause", "userId": "carol", "userName": "Carol"}
    assert causes["causes"] == [{**user, "shortDescription": "Started by user Carol"}]
    assert set(revision) == {"_class", "lastBuiltRevision"}
    assert set(revision["lastBuiltRevision"]) == {"SHA1", "branch"}
    assert revision["lastBuiltRevision"]["branch"] == [{"name": "refs/remotes/origin/main"}]
    assert metrics == {"_class": "jenkins.metrics.impl.TimeInQueueAction"}


async def test_tree_wildcard_and_leaf_objects(basic: Harness) -> None:
    job = (await basic.jenkins(f"{APP}/api/json", tree="*")).json()
    assert job["lastBuild"] == {"_class": "org.jenkinsci.plugins.workflow.job.WorkflowRun"}
    assert job["name"] == "app" and job["nextBuildNumber"] == 5
    bad = await basic.jenkins(f"{APP}/api/json", tree="builds[number")
    assert bad.status == 400


async def test_builds_and_permalinks(basic: Harness) -> None:
    build = (await basic.jenkins(f"{APP}/2/api/json")).json()
    assert (build["number"], build["result"], build["building"]) == (2, "FAILURE", False)
    assert build["id"] == "2" and build["fullDisplayName"] == "team » app #2"
    assert build["culprits"][0]["fullName"]
    replay = (await basic.jenkins(f"{APP}/3/api/json")).json()
    assert replay["result"] == "SUCCESS"
    assert replay["actions"][0]["causes"][0]["shortDescription"] == "Replayed #2"
    paused = (await basic.jenkins(f"{APP}/lastBuild/api/json")).json()
    assert (paused["number"], paused["building"], paused["result"]) == (4, True, None)
    failed = (await basic.jenkins(f"{APP}/lastFailedBuild/api/json")).json()
    assert failed["number"] == 2
    assert (await basic.jenkins(f"{APP}/lastSuccessfulBuild/api/json")).json()["number"] == 3
    assert (await basic.jenkins(f"{APP}/lastUnstableBuild/api/json")).status == 404
    assert (await basic.jenkins(f"{APP}/99/api/json")).status == 404


async def test_a_queued_build_leaves_the_queue_and_builds(basic: Harness) -> None:
    queue = (await basic.jenkins("queue/api/json")).json()["items"]
    item = next(i for i in queue if i["task"]["name"] == "app")
    assert (item["blocked"], item["buildable"], item["stuck"]) == (False, True, False)
    assert item["inQueueSince"] == int(basic.clock.now().timestamp() * 1000) - 60_000
    assert (await basic.jenkins(f"{APP}/5/api/json")).status == 404
    job = (await basic.jenkins(f"{APP}/api/json")).json()
    assert job["inQueue"] is True and job["queueItem"]["id"] == item["id"]
    basic.clock.advance(61)
    build = (await basic.jenkins(f"{APP}/5/api/json")).json()
    assert (build["building"], build["result"], build["duration"]) == (True, None, 0)
    assert build["queueId"] == item["id"]
    assert build["timestamp"] == int(basic.clock.now().timestamp() * 1000) - 1000
    queue = (await basic.jenkins("queue/api/json")).json()["items"]
    assert all(i["task"]["name"] != "app" for i in queue)
    basic.clock.advance(180)
    done = (await basic.jenkins(f"{APP}/5/api/json")).json()
    assert (done["building"], done["result"], done["duration"]) == (False, "SUCCESS", 180_000)


async def test_a_freestyle_job_waits_behind_its_running_build(basic: Harness) -> None:
    queue = (await basic.jenkins("queue/api/json")).json()["items"]
    item = next(i for i in queue if i["task"]["name"] == "nightly")
    assert item["blocked"] and item["why"] == "Build #3 is already in progress"
    job = (await basic.jenkins(f"{NIGHTLY}/api/json")).json()
    assert job["_class"] == "hudson.model.FreeStyleProject"
    assert job["color"] == "yellow_anime"  # last completed: unstable; one building
    assert job["lastUnstableBuild"]["number"] == 2
    assert job["healthReport"][0]["score"] == 50
    basic.clock.advance(20 * 60)
    assert (await basic.jenkins("queue/api/json")).json()["items"] == []


async def test_multibranch_branch_jobs(basic: Harness) -> None:
    project = (await basic.jenkins("job/team/job/gateway/api/json")).json()
    assert project["_class"].endswith("WorkflowMultiBranchProject")
    assert [j["name"] for j in project["jobs"]] == ["main", "feature%2Flogin"]
    branch_url = project["jobs"][1]["url"]
    assert branch_url.endswith("/job/gateway/job/feature%252Flogin/")
    reply = await basic.get(f"{branch_url}api/json", {"Authorization": JENKINS_AUTH})
    branch = reply.json()
    assert (branch["displayName"], branch["fullName"]) == (
        "feature/login",
        "team/gateway/feature%2Flogin",
    )
    build = (await basic.get(f"{branch_url}1/api/json", {"Authorization": JENKINS_AUTH})).json()
    assert build["result"] == "FAILURE"
    revision = build["actions"][1]["lastBuiltRevision"]
    assert revision["branch"][0]["name"] == "feature/login"
    assert build["actions"][0]["causes"][0]["shortDescription"] == "Branch indexing"


async def test_wfapi_stages_of_running_and_paused_builds(basic: Harness) -> None:
    paused = (await basic.jenkins(f"{APP}/4/wfapi/describe")).json()
    assert paused["status"] == "PAUSED_PENDING_INPUT"
    assert [(s["name"], s["status"]) for s in paused["stages"]] == [
        ("Build", "SUCCESS"),
        ("Test", "SUCCESS"),
        ("Deploy", "PAUSED_PENDING_INPUT"),
    ]
    failed = (await basic.jenkins(f"{APP}/2/wfapi/describe")).json()
    assert [(s["name"], s["status"]) for s in failed["stages"]] == [
        ("Build", "SUCCESS"),
        ("Test", "FAILED"),
        ("Deploy", "NOT_EXECUTED"),
    ]
    basic.clock.advance(61 + 70)  # #5 started at 60 s; its first stage lasts 60 s
    running = (await basic.jenkins(f"{APP}/5/wfapi/describe")).json()
    assert running["status"] == "IN_PROGRESS"
    assert [(s["name"], s["status"]) for s in running["stages"]] == [
        ("Build", "SUCCESS"),
        ("Test", "IN_PROGRESS"),
    ]
    runs = (await basic.jenkins(f"{APP}/wfapi/runs")).json()
    assert [r["name"] for r in runs] == ["#5", "#4", "#3", "#2", "#1"]
    since = (await basic.jenkins(f"{APP}/wfapi/runs", since="#3")).json()
    assert [r["name"] for r in since] == ["#5", "#4"]
    described = (await basic.jenkins(f"{APP}/wfapi/describe")).json()
    assert described["runCount"] == 5
    assert (await basic.jenkins(f"{NIGHTLY}/1/wfapi/describe")).status == 404


@pytest.mark.parametrize(
    "auth", [None, "Basic " + "Y2ktYm90Ondyb25n", "Bearer jenkins-basic-token"]
)  # ci-bot:wrong
async def test_requests_without_the_api_token_are_401(basic: Harness, auth: str | None) -> None:
    reply = await basic.jenkins("api/json", auth=auth)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="Jenkins"'


async def test_unknown_paths_are_404(basic: Harness) -> None:
    assert (await basic.jenkins("job/nothing/api/json")).status == 404
    assert (await basic.jenkins(f"{APP}/api/xml")).status == 404
    assert (await basic.jenkins("job/team/wfapi/runs")).status == 404

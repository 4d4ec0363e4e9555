"""Scenario files and the built-in scenarios: the example loads, bad input names its key, the
demo is lively, and ten thousand generated targets stay light."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from ciwatch.clock import FakeClock
from ciwatch.providers.registry import SIMULATED
from ciwatch.simulator import (
    Simulator,
    demo_scenario,
    generated_scenario,
    load_scenario,
    scenario_from_dict,
)
from ciwatch.simulator.azure import DEFAULT_AZURE_TOKEN
from ciwatch.simulator.timeline import Generator
from ciwatch.timeutil import parse_time

from .harness import BASIC, Harness, fixture, serve
from .shape import shape_diff

GITLAB = {"provider": "gitlab", "path": "g/p"}


def test_the_example_file_loads_completely() -> None:
    scenario = load_scenario(BASIC)
    assert scenario.name == "basic" and scenario.seed == 42 and scenario.retention == 50
    assert {p.provider for p in scenario.projects} == {"gitlab", "github", "jenkins"}
    api = scenario.projects[0]
    assert (api.path, api.id, api.refs) == ("platform/backend/api", 101, ("main", "develop"))
    assert api.runs[1].rerun is not None and api.runs[1].jobs[1].result == "failed"
    assert api.generate is not None and api.generate.every == 600
    assert scenario.tokens.jenkins == (("ci-bot", "jenkins-basic-token"),)
    assert scenario.rate_limits["github"].limit == 100
    assert [(f.kind, f.count, f.after) for f in scenario.faults] == [
        ("status", 2, 7200.0),
        ("slow", None, 10800.0),
    ]
    assert scenario.projects[4].runs == () and scenario.projects[5].path == "smoke"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"projects": [GITLAB], "colour": 1}, r"^colour: unknown key"),
        ({"projects": []}, r"^projects: at least one"),
        ("just text", r"expected a mapping"),
        ({"projects": [{"provider": "gitlab"}]}, r"^projects\[0\]\.path: required"),
        ({"projects": [{"provider": "svn", "path": "a"}]}, r"^projects\[0\]\.provider: 'svn'"),
        ({"projects": [{"provider": "github", "path": "a/b/c"}]},
         r"projects\[0\]\.path: .*owner/repo"),
        ({"projects": [{"provider": "gitlab", "path": "solo"}]},
         r"projects\[0\]\.path: .*group/project"),
        ({"projects": [GITLAB, GITLAB]}, r"^projects\[1\]\.path: 'g/p' appears twice"),
        ({"projects": [{**GITLAB, "kind": "freestyle"}]}, r"projects\[0\]\.kind: only Jenkins"),
        ({"projects": [{**GITLAB, "runs": [{"at": 0, "result": "green"}]}]},
         r"^projects\[0\]\.runs\[0\]\.result: 'green' is not one of success"),
        ({"projects": [{**GITLAB, "runs": [{"at": 0, "queue": "soon"}]}]},
         r"^projects\[0\]\.runs\[0\]\.queue: 'soon' is not a duration"),
        ({"projects": [{**GITLAB, "runs": [{"at": 0, "queue": "-5m"}]}]},
         r"^projects\[0\]\.runs\[0\]\.queue: '-5m' is not a duration"),
        ({"projects": [{**GITLAB, "runs": [{"queue": 1}]}]},
         r"^projects\[0\]\.runs\[0\]\.at: required"),
        ({"projects": [{**GITLAB, "runs": [{"at": 0, "ref": "dev"}]}]},
         r"^projects\[0\]\.runs\[0\]\.ref: 'dev' is not one of main"),
        ({"projects": [{**GITLAB, "runs": [{"at": 0, "jobs": [{"stage": "x"}]}]}]},
         r"^projects\[0\]\.runs\[0\]\.jobs\[0\]\.name: required"),
        ({"projects": [{**GITLAB, "generate": {"every": 0}}]}, r"^projects\[0\]\.generate\.every"),
        ({"projects": [{**GITLAB, "generate": {"every": 60, "results": {"ok": 1}}}]},
         r"^projects\[0\]\.generate\.results: 'ok'"),
        ({"projects": [{**GITLAB, "generate": {"every": 60, "duration": ["5m", "1m"]}}]},
         r"^projects\[0\]\.generate\.duration: .*larger"),
        ({"projects": [GITLAB], "faults": [{"kind": "fire"}]}, r"^faults\[0\]\.kind: 'fire'"),
        ({"projects": [GITLAB], "faults": [{"kind": "status", "probability": 3}]},
         r"^faults\[0\]\.probability"),
        ({"projects": [GITLAB], "faults": [{"kind": "status", "status": 42}]},
         r"^faults\[0\]\.status: 42 is not an HTTP status"),
        ({"projects": [GITLAB], "tokens": {"gitlab": "one"}}, r"^tokens\.gitlab: expected a list"),
        ({"projects": [GITLAB], "rate_limits": {"github": {"limit": 0, "window": "1h"}}},
         r"^rate_limits\.github\.limit"),
    ],
)  # fmt: skip
def test_bad_input_names_the_key(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scenario_from_dict(data)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("projects: [\n")
    with pytest.raises(ValueError, match=r"broken\.yaml: not valid YAML"):
        load_scenario(broken)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("projects:\n  - {provider: gitlab, path: g/p, colour: red}\n")
    with pytest.raises(ValueError, match=r"wrong\.yaml: projects\[0\]\.colour: unknown key"):
        load_scenario(wrong)


def test_durations_in_every_spelling() -> None:
    runs = [
        {"at": at, "duration": d} for at, d in [(-7200, "1h30m"), ("-2h", 90), ("1.5m", "250ms")]
    ]
    scenario = scenario_from_dict({"projects": [{**GITLAB, "runs": runs}]})
    assert [(r.at, r.duration) for r in scenario.projects[0].runs] == [
        (-7200.0, 5400.0),
        (-7200.0, 90.0),
        (90.0, 0.25),
    ]
    forever = scenario_from_dict(
        {"projects": [{**GITLAB, "runs": [{"at": 0, "duration": "forever"}]}]}
    )
    assert forever.projects[0].runs[0].duration == float("inf")


@pytest.fixture
async def demo(clock: FakeClock) -> Any:
    async for harness in serve(demo_scenario(), clock):
        yield harness


def _ago(h: Harness, stamp: str) -> float:
    moment = parse_time(stamp)
    assert moment is not None
    return (h.clock.now() - moment).total_seconds()


async def test_the_demo_is_lively(demo: Harness) -> None:
    scenario = demo.sim.scenario
    assert len(scenario.projects) >= 8
    assert {p.provider for p in scenario.projects} == set(SIMULATED)  # every simulated kind
    gl = {"PRIVATE-TOKEN": "glpat-simulator"}
    base = f"{demo.running.gitlab_url}/api/v4/projects"
    api = (
        await demo.get(
            f"{base}/platform%2Fbackend%2Fapi/pipelines?ref=main&sort=asc&per_page=100", gl
        )
    ).json()
    # Two weeks of history first (builtin.history), with red periods and recoveries.
    assert 13 * 86400 < _ago(demo, api[0]["created_at"]) < 14 * 86400
    decided = [p for p in api if p["status"] in ("success", "failed")]
    assert {p["status"] for p in decided} == {"success", "failed"}
    recent = [p["status"] for p in decided if _ago(demo, p["created_at"]) < 3 * 3600]
    assert "failed" in recent and recent[recent.index("failed") + 1] == "success"  # recovered
    stuck = (
        await demo.get(f"{base}/platform%2Finfra%2Fterraform/pipelines?status=running", gl)
    ).json()
    detail = (
        await demo.get(f"{base}/platform%2Finfra%2Fterraform/pipelines/{stuck[0]['id']}", gl)
    ).json()
    assert _ago(demo, detail["started_at"]) > 3600  # stuck: running for over an hour
    gh = {"Authorization": "Bearer ghp_simulator"}
    docs = f"{demo.running.github_url}/repos/octo-org/docs/actions/runs?status=queued"
    queued = (await demo.get(docs, gh)).json()["workflow_runs"]
    assert any(_ago(demo, run["created_at"]) > 15 * 60 for run in queued)  # a long queue
    jk = {
        "Authorization": "Basic YWRtaW46c2ltdWxhdG9yLWFwaS10b2tlbg=="
    }  # admin:simulator-api-token
    items = (await demo.get(f"{demo.running.jenkins_url}/queue/api/json", jk)).json()["items"]
    assert any(i["task"]["name"] == "deploy" and i["stuck"] for i in items)
    pat = base64.b64encode(f":{DEFAULT_AZURE_TOKEN}".encode()).decode()
    builds = f"{demo.running.azure_url}/fabrikam/Fabrikam/_apis/build/builds?api-version=7.1"
    azure = (await demo.get(builds, {"Authorization": f"Basic {pat}"})).json()["value"]
    assert {b["result"] for b in azure if b["status"] == "completed"} >= {"succeeded", "failed"}
    before = (await demo.get(f"{base}/platform%2Fbackend%2Fapi/pipelines", gl)).headers["X-Total"]
    demo.clock.advance(3600)
    after = (await demo.get(f"{base}/platform%2Fbackend%2Fapi/pipelines", gl)).headers["X-Total"]
    assert int(after) > int(before)  # runs keep arriving
    demo.clock.advance(7 * 24 * 3600)
    week = (await demo.get(f"{base}/platform%2Fbackend%2Fapi/pipelines", gl)).headers["X-Total"]
    assert int(week) == scenario.retention  # bounded


def test_generated_scenario_spreads_targets_over_providers() -> None:
    scenario = generated_scenario(10_000, seed=3)
    counts = {
        p: sum(s.provider == p for s in scenario.projects) for p in ("gitlab", "github", "jenkins")
    }
    assert counts == {"gitlab": 3334, "github": 3333, "jenkins": 3333}
    assert len({(s.provider, s.path) for s in scenario.projects}) == 10_000
    assert all(s.generate is not None for s in scenario.projects)
    kinds = {s.kind for s in scenario.projects if s.provider == "jenkins"}
    assert kinds == {"pipeline", "freestyle", "multibranch"}
    with pytest.raises(ValueError, match="targets"):
        generated_scenario(0)


async def test_ten_thousand_targets_answer_a_page_touching_only_that_page(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    computed: list[int] = []
    plan = Generator.plan

    def counting(self: Generator, k: int, n: int, seed: int) -> Any:
        computed.append(k)
        return plan(self, k, n, seed)

    monkeypatch.setattr(Generator, "plan", counting)
    scenario = generated_scenario(10_000)
    async for h in serve(scenario, clock):
        assert computed == []  # building the world computes no run
        gl = await h.gitlab("projects/gen%2Fteam-020%2Fapp-06000/pipelines", per_page=5)
        assert gl.status == 200 and len(gl.json()) == 5 and gl.headers["X-Total"] == "20"
        assert len(computed) == 5
        computed.clear()
        gh = await h.github("repos/gen-org-020/app-06001/actions/runs", per_page=5)
        assert len(gh.json()["workflow_runs"]) == 5 and len(computed) == 5
        computed.clear()
        job = await h.jenkins(
            "job/gen/job/team-020/job/app-06002/api/json", tree="builds[number,result]{0,5}"
        )
        assert len(job.json()["builds"]) == 5 and len(computed) <= 5 + 2  # + runs still queued
        computed.clear()
        cursor = gl.json()[0]["updated_at"]
        changed = await h.gitlab(
            "projects/gen%2Fteam-020%2Fapp-06000/pipelines",
            order_by="updated_at",
            updated_after=cursor,
        )
        assert changed.status == 200 and len(computed) <= 5
        group = await h.gitlab("groups/gen/projects", include_subgroups="true", per_page=100)
        assert group.headers["X-Total"] == "3334" and len(group.json()) == 100
        repos = await h.github("orgs/gen-org-000/repos", per_page=100)
        assert len(repos.json()) == 100
        folder = await h.jenkins("job/gen/api/json", tree="jobs[name]")
        assert len(folder.json()["jobs"]) == 34


async def test_generated_targets_keep_the_fixture_shapes(clock: FakeClock) -> None:
    async for h in serve(generated_scenario(12, seed=5), clock):
        runs = (await h.github("repos/gen-org-000/app-00001/actions/runs")).json()
        allowed = {"$.workflow_runs[].previous_attempt_url: extra"}
        assert shape_diff(fixture("github/api/workflow-runs-list.json"), runs) <= allowed
        pipelines = (await h.gitlab("projects/gen%2Fteam-000%2Fapp-00000/pipelines")).json()
        assert shape_diff(fixture("gitlab/api/pipelines-list.json"), pipelines) == set()


async def test_a_seed_fixes_everything(clock: FakeClock) -> None:
    async def snapshot(seed: int) -> Any:
        async for h in serve(generated_scenario(6, seed=seed), FakeClock(clock.now())):
            gl = await h.gitlab("projects/gen%2Fteam-000%2Fapp-00000/pipelines")
            gh = await h.github("repos/gen-org-000/app-00001/actions/runs")
            return [gl.status, _strip_ports(gl.body), gh.status, _strip_ports(gh.body)]
        return None

    assert await snapshot(1) == await snapshot(1)
    assert await snapshot(1) != await snapshot(2)


def _strip_ports(body: bytes) -> bytes:
    return re.sub(rb"127\.0\.0\.1:\d+", b"HOST", body)


def test_a_simulator_builds_without_a_clock() -> None:
    sim = Simulator(demo_scenario())
    assert sim.ctx.now() >= 0

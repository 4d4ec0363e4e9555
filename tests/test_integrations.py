"""integrations/ reports with sh and curl only (issue 12): the GitHub composite action, the GitLab
CI template and the Jenkins snippet and shared-library step, each run as its CI would run it (its
shell part, with that CI's variables) against a live `ciwatch serve` over SQLite; the stored run
is then read back from the API. Plus static checks of the YAML and of the Groovy quoting."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from factories import free_port

ROOT = Path(__file__).parents[1]
INTEGRATIONS = ROOT / "integrations"
SCRIPT = INTEGRATIONS / "report.sh"
ACTION = INTEGRATIONS / "github" / "action.yml"
GITLAB = INTEGRATIONS / "gitlab" / "ciwatch.gitlab-ci.yml"
JENKINS = INTEGRATIONS / "jenkins"
SNIPPET = JENKINS / "Jenkinsfile.snippet"
LIBRARY = JENKINS / "vars" / "ciwatchReport.groovy"
# A token with a quote, a backslash and a space: it goes through curl's config file syntax.
TOKEN = 'tok "en" \\ 42'


def need(tool: str) -> str:
    """The tool's path; a missing tool skips the test, or fails it under CI=true."""
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Live:
    url: str
    log: Path

    def run(self, project: str, run_id: str, source: str = "push") -> dict[str, Any]:
        """The stored run, read back through GET /api/v1/runs."""
        query = urllib.parse.urlencode({"project": project, "source": source})
        with urllib.request.urlopen(f"{self.url}/api/v1/runs?{query}", timeout=10) as resp:  # noqa: S310
            runs = json.load(resp)["runs"]
        found = [run for run in runs if run["run_id"] == run_id]
        assert found, f"no run {project} #{run_id} stored: {runs}\n{self.log.read_text()}"
        run: dict[str, Any] = found[0]
        return run

    def count(self) -> int:
        with urllib.request.urlopen(f"{self.url}/api/v1/runs?limit=500", timeout=10) as resp:  # noqa: S310
            return len(json.load(resp)["runs"])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """`ciwatch serve` as a real process (this interpreter and PYTHONPATH) over SQLite, with a
    report_token; stopped at the end."""
    need("curl")
    home = tmp_path_factory.mktemp("serve")
    config = home / "ciwatch.yaml"
    database = f"sqlite:///{home / 'ci.db'}"
    config.write_text(
        f"database: {json.dumps(database)}\n"
        f"server: {{listen: '127.0.0.1:{free_port()}', report_token: {json.dumps(TOKEN)}}}\n"
        "sources: []\n"
    )
    log = home / "serve.log"
    with log.open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "ciwatch", "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        banner = process.stdout.readline() if ready else ""
        assert banner.startswith("ciwatch serving http://"), banner + log.read_text()
        yield Live(banner.split()[2].rstrip("/"), log)
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def ci_env(live: Live | None, **variables: str) -> dict[str, str]:
    """A CI job's environment: only the given variables (none of this machine's own CI ones)."""
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    if live is not None:
        env |= {"CIWATCH_SERVER": live.url, "CIWATCH_REPORT_TOKEN": TOKEN}
    return env | variables


def run_shell(
    shell: str, script: str, env: dict[str, str], cwd: Path | None = None, *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [need(shell), "-c", script, shell, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# GitHub Actions ---------------------------------------------------------------------------------

GITHUB = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_REPOSITORY": "octo/app",
    "GITHUB_RUN_ID": "9001",
    "GITHUB_RUN_NUMBER": "42",
    "GITHUB_RUN_ATTEMPT": "2",
    "GITHUB_WORKFLOW": "CI",
    "GITHUB_REF_NAME": "main",
    "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
    "GITHUB_EVENT_NAME": "push",
    "GITHUB_ACTOR": "mona",
    "GITHUB_SERVER_URL": "https://github.example.com",
}


def action_step(inputs: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The composite action's one step: its script and its env, with `${{ inputs.x }}` filled
    in from `inputs` and the defaults, as the runner does."""
    action = yaml.safe_load(ACTION.read_text())
    given = {name: spec.get("default", "") for name, spec in action["inputs"].items()} | inputs
    (step,) = action["runs"]["steps"]

    def fill(text: str) -> str:
        return re.sub(r"\$\{\{\s*inputs\.([\w-]+)\s*\}\}", lambda m: given[m.group(1)], text)

    return step["run"], {name: fill(str(value)) for name, value in step["env"].items()}


@pytest.mark.parametrize(
    ("job_status", "status", "extra", "ref"),
    [
        ("failure", "failed", {}, "main"),
        ("success", "success", {"GITHUB_HEAD_REF": "feature/x"}, "feature/x"),
        ("cancelled", "canceled", {}, "main"),
    ],
)
def test_github_action_reports_the_run(
    live: Live, tmp_path: Path, job_status: str, status: str, extra: dict[str, str], ref: str
) -> None:
    run_id = f"9001{job_status}"
    script, step_env = action_step(
        {"server": live.url, "token": TOKEN, "status": job_status, "project": ""}
    )
    env = ci_env(None, **(GITHUB | extra | {"GITHUB_RUN_ID": run_id})) | step_env
    env["GITHUB_ACTION_PATH"] = str(ACTION.parent)
    # The runner's `shell: bash`: bash --noprofile --norc -eo pipefail {0}
    file = tmp_path / "step.sh"
    file.write_text(script)
    result = subprocess.run(
        [need("bash"), "--noprofile", "--norc", "-eo", "pipefail", str(file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    run = live.run("octo/app", run_id)
    assert run["status"] == status
    assert run["provider_status"] == job_status
    assert run["ref"] == ref
    assert run["sha"] == GITHUB["GITHUB_SHA"]
    assert run["url"] == f"https://github.example.com/octo/app/actions/runs/{run_id}"
    assert (run["number"], run["attempt"]) == (42, 2)
    assert (run["workflow"], run["event"], run["author"]) == ("CI", "push", "mona")


def test_github_action_is_a_composite_action_of_shell_and_curl() -> None:
    action = yaml.safe_load(ACTION.read_text())
    assert action["runs"]["using"] == "composite"
    required = {k for k, v in action["inputs"].items() if v.get("required")}
    assert required == {"server", "token", "status"}
    (step,) = action["runs"]["steps"]
    assert step["shell"] == "bash"
    # Inputs reach the script as variables: none is pasted into its text.
    assert "${{" not in step["run"]
    assert step["env"]["CIWATCH_REPORT_TOKEN"] == "${{ inputs.token }}"
    assert "pip" not in ACTION.read_text()
    example = yaml.safe_load((ACTION.parent / "example-workflow.yml").read_text())
    last = example["jobs"]["test"]["steps"][-1]
    assert last["if"] == "always()"
    assert last["with"]["status"] == "${{ job.status }}"
    assert last["uses"].endswith("integrations/github@main")


# GitLab CI --------------------------------------------------------------------------------------

GITLAB_VARS = {
    "GITLAB_CI": "true",
    "CI_PROJECT_PATH": "group/sub/app",
    "CI_PIPELINE_IID": "17",
    "CI_PIPELINE_NAME": "Nightly",
    "CI_COMMIT_REF_NAME": "release/1.2",
    "CI_COMMIT_SHA": "fedcba9876543210fedcba9876543210fedcba98",
    "CI_PIPELINE_SOURCE": "schedule",
    "GITLAB_USER_LOGIN": "ada",
    "CI_PIPELINE_URL": "https://gitlab.example.com/group/sub/app/-/pipelines/5005",
    "CI_PIPELINE_CREATED_AT": "2026-02-01T10:00:00Z",
}


def gitlab_after_script() -> str:
    template = yaml.safe_load(GITLAB.read_text())
    (script,) = template[".ciwatch-report"]["after_script"]
    assert isinstance(script, str)
    return script


@pytest.mark.parametrize("shell", ["sh", "bash"])
@pytest.mark.parametrize(
    ("job_status", "status"),
    [("success", "success"), ("failed", "failed"), ("canceled", "canceled")],
)
def test_gitlab_template_reports_the_pipeline(
    live: Live, shell: str, job_status: str, status: str
) -> None:
    pipeline = f"5005{shell}{job_status}"
    env = ci_env(live, **GITLAB_VARS, CI_PIPELINE_ID=pipeline, CI_JOB_STATUS=job_status)
    result = run_shell(shell, gitlab_after_script(), env)
    assert result.returncode == 0, result.stderr
    assert "failed" not in result.stdout, result.stdout + result.stderr
    run = live.run("group/sub/app", pipeline)
    assert run["status"] == status
    assert run["provider_status"] == job_status
    assert run["ref"] == "release/1.2"
    assert run["sha"] == GITLAB_VARS["CI_COMMIT_SHA"]
    assert run["url"] == GITLAB_VARS["CI_PIPELINE_URL"]
    assert (run["number"], run["workflow"], run["event"], run["author"]) == (
        17,
        "Nightly",
        "schedule",
        "ada",
    )
    assert run["created_at"] == "2026-02-01T10:00:00Z"


def test_gitlab_report_failure_never_fails_the_job(live: Live) -> None:
    env = ci_env(live, **GITLAB_VARS, CI_PIPELINE_ID="5006", CI_JOB_STATUS="success")
    env["CIWATCH_REPORT_TOKEN"] = "wrong"
    before = live.count()
    result = run_shell("sh", gitlab_after_script(), env)
    assert result.returncode == 0
    assert "HTTP 401" in result.stderr
    assert "the report failed (exit 2); the job's result stands" in result.stdout
    assert live.count() == before


def test_gitlab_template_is_includable_and_inlines_report_sh() -> None:
    template = yaml.safe_load(GITLAB.read_text())
    # Only hidden keys: including the template adds no job by itself.
    assert all(key.startswith(".") for key in template)
    script = gitlab_after_script()
    body = SCRIPT.read_text().split("set -eu\n", 1)[1]
    assert body in script, "the GitLab template's after_script is not integrations/report.sh"
    assert 'set -- "${CI_JOB_STATUS:-}"' in script
    assert subprocess.run([need("sh"), "-n", "-c", script], check=False).returncode == 0


# Jenkins ----------------------------------------------------------------------------------------

JENKINS_VARS = {
    "JENKINS_URL": "https://jenkins.example.com/",
    "JOB_NAME": "folder/app",
    "GIT_BRANCH": "origin/main",
    "GIT_COMMIT": "00112233445566778899aabbccddeeff00112233",
}


def sh_steps(groovy: str) -> list[str]:
    """The text of every `sh '...'` / `sh "..."` step (comments dropped)."""
    code = "\n".join(line for line in groovy.splitlines() if not line.strip().startswith("//"))
    return [m.group(2) for m in re.finditer(r"\bsh\s*\(?\s*(['\"])((?:\\.|(?!\1).)*)\1", code)]


def single_quoted_interpolations(groovy: str) -> list[str]:
    """`${...}` inside single-quoted Groovy strings: Groovy leaves them for the shell, which
    then fails on `${currentBuild.currentResult}` (Bad substitution)."""
    code = "\n".join(line for line in groovy.splitlines() if not line.strip().startswith("//"))
    strings = re.findall(r"'''(.*?)'''|'((?:\\.|[^'\\\n])*)'", code, flags=re.DOTALL)
    return [text for pair in strings for text in pair if "${" in text]


def test_groovy_quoting_check_catches_the_old_bug() -> None:
    old = """sh 'python3 -m ciwatch report --status "${currentBuild.currentResult}"'"""
    assert single_quoted_interpolations(old)
    # ... and the shell indeed cannot take what Groovy left in it.
    result = run_shell("sh", sh_steps(old)[0].replace("python3", "echo"), ci_env(None))
    assert result.returncode != 0
    assert "substitution" in result.stderr.lower()


@pytest.mark.parametrize("groovy", [SNIPPET, LIBRARY], ids=lambda p: p.name)
def test_jenkins_groovy_leaves_no_interpolation_in_single_quotes(groovy: Path) -> None:
    text = groovy.read_text()
    assert single_quoted_interpolations(text) == []
    steps = sh_steps(text)
    assert steps, "no sh step found"
    assert all("${" not in step for step in steps)
    # The result reaches the shell as an environment variable filled in by Groovy.
    status = re.search(r'"CIWATCH_STATUS=\$\{([^}]*)\}"', text)
    assert status is not None
    assert "currentBuild.currentResult" in (
        status.group(1) + text[: status.start()].split("def call", 1)[-1]
    )
    assert "pip install" not in text


def test_jenkins_library_resource_is_report_sh() -> None:
    resource = JENKINS / "resources" / "ciwatch" / "report.sh"
    assert resource.read_bytes() == SCRIPT.read_bytes()
    assert "libraryResource('ciwatch/report.sh')" in LIBRARY.read_text()


@pytest.mark.parametrize(
    ("result", "status"),
    [
        ("SUCCESS", "success"),
        ("UNSTABLE", "failed"),
        ("FAILURE", "failed"),
        ("ABORTED", "canceled"),
    ],
)
def test_jenkins_snippet_reports_the_build(
    live: Live, tmp_path: Path, result: str, status: str
) -> None:
    # The workspace holds ci/ciwatch-report.sh (report.sh committed in the job's repository),
    # withEnv gives CIWATCH_STATUS, withCredentials the token; Jenkins runs the step with sh -xe.
    (tmp_path / "ci").mkdir()
    shutil.copy(SCRIPT, tmp_path / "ci" / "ciwatch-report.sh")
    number = str(300 + ["SUCCESS", "UNSTABLE", "FAILURE", "ABORTED"].index(result))
    env = ci_env(
        live,
        **JENKINS_VARS,
        BUILD_NUMBER=number,
        BUILD_URL=f"https://jenkins.example.com/job/folder/job/app/{number}/",
        CIWATCH_STATUS=result,
    )
    (step,) = sh_steps(SNIPPET.read_text().rsplit("post {", 1)[1])
    done = run_shell("sh", "set -xe\n" + step, env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert TOKEN not in done.stderr
    run = live.run("folder/app", number)
    assert (run["status"], run["provider_status"]) == (status, result)
    assert run["ref"] == "main"
    assert run["sha"] == JENKINS_VARS["GIT_COMMIT"]
    assert run["url"] == env["BUILD_URL"]
    assert run["number"] == int(number)


def test_jenkins_library_step_reports_the_build(live: Live, tmp_path: Path) -> None:
    # What ciwatchReport() does: writeFile the library resource, then its sh step under withEnv.
    text = LIBRARY.read_text()
    name = re.search(r"String script = '([^']+)'", text)
    assert name is not None
    shutil.copy(JENKINS / "resources" / "ciwatch" / "report.sh", tmp_path / name.group(1))
    env = ci_env(
        live,
        **JENKINS_VARS,
        BUILD_NUMBER="410",
        BUILD_URL="https://jenkins.example.com/job/folder/job/app/410/",
        BRANCH_NAME="feature/lib",
        CIWATCH_STATUS="NOT_BUILT",
        CIWATCH_SOURCE="jenkins-push",
        CIWATCH_SCRIPT=name.group(1),
    )
    (step,) = sh_steps(text)
    done = run_shell("sh", "set -xe\n" + step, env, tmp_path)
    assert done.returncode == 0, done.stderr
    run = live.run("folder/app", "410", source="jenkins-push")
    assert (run["status"], run["ref"], run["url"]) == ("skipped", "feature/lib", env["BUILD_URL"])


# Hostile values, exit codes ---------------------------------------------------------------------

HOSTILE = {
    "project": "team/app \"quoted\" & x=y+z 'single'",
    "ref": "feat/ünïcødé-∆ a&b=c+d%20e #1 $HOME `id` \\n",
    "workflow": 'CI "nightly" & = ; rm -rf /',
    "author": 'o\'brien "the" = & author\nsecond line of the name 🚀',
    "url": "https://ci.example.com/run?a=1&b=2=3#frag%41",
}


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_hostile_values_arrive_as_they_are(live: Live, shell: str) -> None:
    run_id = f"hostile-{shell} & id=1"
    env = ci_env(
        live,
        GITHUB_ACTIONS="true",
        GITHUB_REPOSITORY=HOSTILE["project"],
        GITHUB_RUN_ID=run_id,
        GITHUB_HEAD_REF=HOSTILE["ref"],
        GITHUB_WORKFLOW=HOSTILE["workflow"],
        GITHUB_ACTOR=HOSTILE["author"],
        GITHUB_SHA="abc'def\"",
        CIWATCH_URL=HOSTILE["url"],
    )
    done = run_shell(shell, f'exec {shell} "$1" failure', env, None, str(SCRIPT))
    assert done.returncode == 0, done.stderr
    run = live.run(HOSTILE["project"], run_id)
    assert run["status"] == "failed"
    for field in ("project", "ref", "workflow", "author", "url"):
        assert run[field] == HOSTILE[field], field
    assert run["sha"] == "abc'def\""


def script_env(live: Live | None, **variables: str) -> dict[str, str]:
    return ci_env(live, CIWATCH_PROJECT="exit/codes", CIWATCH_RUN_ID="1", **variables)


def test_exit_codes_are_those_of_ciwatch_report(live: Live) -> None:
    def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
        return run_shell("sh", 'exec sh "$@"', env, None, str(SCRIPT), *args)

    before = live.count()
    wrong = run(script_env(live, CIWATCH_REPORT_TOKEN="nope"), "success")
    assert wrong.returncode == 2
    assert "HTTP 401" in wrong.stderr
    unknown = run(script_env(live), "green")
    assert unknown.returncode == 2
    assert "'green' is not a status" in unknown.stderr
    nowhere = ci_env(live, CIWATCH_RUN_ID="1")
    missing = run(nowhere, "success")
    assert (missing.returncode, "no project" in missing.stderr) == (2, True)
    assert live.count() == before
    down = script_env(
        None,
        CIWATCH_SERVER=f"http://127.0.0.1:{free_port()}",
        CIWATCH_REPORT_TOKEN=TOKEN,
        CIWATCH_RETRIES="1",
    )
    started = time.monotonic()
    unreachable = run(down, "success")
    assert unreachable.returncode == 3
    assert "cannot reach ciwatch" in unreachable.stderr
    assert time.monotonic() - started < 60
    ok = run(script_env(live, CIWATCH_STATUS="running"))
    assert ok.returncode == 0, ok.stderr
    assert live.run("exit/codes", "1")["status"] == "running"


def test_scripts_are_posix_and_need_no_python() -> None:
    for shell in ("sh", "bash"):
        checked = subprocess.run([need(shell), "-n", str(SCRIPT)], check=False)
        assert checked.returncode == 0
    for path in INTEGRATIONS.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "pip install" not in text, path
            assert not re.search(r"python3? -m", text), path

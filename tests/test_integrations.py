"""The GitHub Action and the Jenkins snippets call `ciwatch report` with options it has."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import yaml
from typer.testing import CliRunner

from ciwatch.cli import app

ROOT = Path(__file__).parents[1]
ACTION = ROOT / "integrations" / "github-action" / "action.yml"


def _report_options() -> set[str]:
    result = CliRunner().invoke(app, ["report", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    return set(re.findall(r"--[a-z][a-z-]+", result.output))


def _flags(command: str) -> set[str]:
    words = shlex.split(command.replace("\\\n", " "))
    start = words.index("report")
    return {w for w in words[start:] if w.startswith("--")}


def test_action_structure() -> None:
    action = yaml.safe_load(ACTION.read_text())
    assert action["runs"]["using"] == "composite"
    required = {k for k, v in action["inputs"].items() if v.get("required")}
    assert required == {"server", "token", "status"}
    steps = action["runs"]["steps"]
    assert all(step["shell"] == "bash" for step in steps)
    report = next(step for step in steps if "ciwatch report" in step["run"])
    assert report["env"]["CIWATCH_REPORT_TOKEN"] == "${{ inputs.token }}"
    assert report["env"]["CIWATCH_SERVER"] == "${{ inputs.server }}"
    assert _flags(report["run"]) <= _report_options()
    example = yaml.safe_load((ACTION.parent / "example-workflow.yml").read_text())
    step = example["jobs"]["test"]["steps"][-1]
    assert step["if"] == "always()"
    assert step["with"]["status"] == "${{ job.status }}"
    assert step["uses"].endswith("integrations/github-action@main")


def test_jenkins_snippets_use_real_options() -> None:
    snippet = (ROOT / "integrations" / "jenkins" / "Jenkinsfile.snippet").read_text()
    command = re.search(r"ciwatch report[^'\n]*", snippet)
    assert command is not None
    assert _flags(command.group(0)) <= _report_options()
    assert "post {" in snippet
    assert "always {" in snippet
    script = ROOT / "integrations" / "jenkins" / "ciwatch-report.sh"
    assert _flags(script.read_text().split("exec ", 1)[1].splitlines()[0]) <= _report_options()
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0

"""The built-in CI simulator: a real HTTP server speaking the GitLab, GitHub and Jenkins API
subsets ciwatch uses, with scripted run timelines, pagination, ETags, rate limits and faults.

    sim = Simulator(demo_scenario())
    async with await start_simulator(sim, port=8900) as running:
        print(running.gitlab_url, running.github_url, running.jenkins_url)

See docs/simulator.md.
"""

from ciwatch.simulator.app import RunningSimulator, Simulator, start_simulator
from ciwatch.simulator.builtin import demo_scenario, generated_scenario
from ciwatch.simulator.faults import Fault, FaultBook
from ciwatch.simulator.loader import load_scenario, scenario_from_dict
from ciwatch.simulator.scenario import (
    DEFAULT_GITHUB_TOKEN,
    DEFAULT_GITLAB_TOKEN,
    DEFAULT_JENKINS_TOKEN,
    DEFAULT_JENKINS_USER,
    GeneratorSpec,
    JobSpec,
    ProjectSpec,
    RateLimitSpec,
    RerunSpec,
    RunSpec,
    Scenario,
    Tokens,
)
from ciwatch.simulator.serve import choose_scenario, serve_until_cancelled, simulate

__all__ = [
    "DEFAULT_GITHUB_TOKEN",
    "DEFAULT_GITLAB_TOKEN",
    "DEFAULT_JENKINS_TOKEN",
    "DEFAULT_JENKINS_USER",
    "Fault",
    "FaultBook",
    "GeneratorSpec",
    "JobSpec",
    "ProjectSpec",
    "RateLimitSpec",
    "RerunSpec",
    "RunSpec",
    "RunningSimulator",
    "Scenario",
    "Simulator",
    "Tokens",
    "choose_scenario",
    "demo_scenario",
    "generated_scenario",
    "load_scenario",
    "scenario_from_dict",
    "serve_until_cancelled",
    "simulate",
    "start_simulator",
]

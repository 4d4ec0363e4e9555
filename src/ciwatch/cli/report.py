"""`ciwatch report`: report a run from any CI step to a ciwatch server."""

from __future__ import annotations

import asyncio
import json
import os
import random
from typing import Annotated, Any

import aiohttp
import typer

from ciwatch.cli.common import EXIT_RUNTIME, EXIT_USAGE, err, print_json
from ciwatch.reporting import build_report, detect_ci, parse_status

Opt = typer.Option


def report(
    status: Annotated[str, Opt(help="The run's status: success, failed, running, ...")],
    server: Annotated[str, Opt(envvar="CIWATCH_SERVER", help="ciwatch base URL.")],
    token: Annotated[
        str,
        Opt(envvar="CIWATCH_REPORT_TOKEN", help="The server's report_token.", show_default=False),
    ],
    project: Annotated[str | None, Opt(help="Project path (detected in CI).")] = None,
    run_id: Annotated[str | None, Opt("--run-id", help="Run id (detected in CI).")] = None,
    ref: Annotated[str | None, Opt(help="Branch or tag.")] = None,
    sha: Annotated[str | None, Opt(help="Commit SHA.")] = None,
    started_at: Annotated[str | None, Opt("--started-at", help="ISO 8601 time.")] = None,
    finished_at: Annotated[str | None, Opt("--finished-at", help="ISO 8601 time.")] = None,
    url: Annotated[str | None, Opt(help="Link to the run.")] = None,
    author: Annotated[str | None, Opt(help="Who triggered it.")] = None,
    source: Annotated[str | None, Opt(help="Source name [default: push].")] = None,
    number: Annotated[int | None, Opt(help="Run number.")] = None,
    workflow: Annotated[str | None, Opt(help="Workflow or pipeline name.")] = None,
    retries: Annotated[int, Opt(min=0, max=20, help="Retries while the server is down.")] = 4,
    timeout: Annotated[float, Opt(help="Seconds per attempt.")] = 10.0,
    json_out: Annotated[bool, Opt("--json", help="Print the stored run as JSON.")] = False,
) -> None:
    """Report a run to a ciwatch server (POST /api/v1/report).

    Inside GitHub Actions, GitLab CI or Jenkins, the project, run id, number, ref, SHA, URL and
    author are read from the CI's own variables; options override them. Exit 0 when stored,
    2 when the server refuses the report (bad token or field), 3 when it stays unreachable."""
    try:
        word = parse_status(status)
    except ValueError as exc:
        err.print(f"--status: {exc}", markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    explicit = {
        "project": project,
        "run_id": run_id,
        "status": word.value,
        "ref": ref,
        "sha": sha,
        "started_at": started_at,
        "finished_at": finished_at,
        "url": url,
        "author": author,
        "source": source,
        "number": number,
        "workflow": workflow,
    }
    body = build_report(explicit, os.environ)
    missing = [name for name in ("project", "run_id") if not body.get(name)]
    if missing:
        ci, _ = detect_ci(os.environ)
        where = f" (running in {ci}, whose variables did not give it)" if ci else ""
        err.print(f"missing {', '.join('--' + m.replace('_', '-') for m in missing)}{where}")
        raise typer.Exit(EXIT_USAGE)
    endpoint = server.rstrip("/") + "/api/v1/report"
    code, answer = asyncio.run(_post(endpoint, token, body, retries=retries, seconds=timeout))
    if code == 0:
        err.print(f"cannot reach ciwatch at {endpoint} after {retries + 1} attempts: {answer}")
        raise typer.Exit(EXIT_RUNTIME)
    if code >= 400:
        detail = answer.get("error", answer) if isinstance(answer, dict) else answer
        err.print(f"ciwatch refused the report (HTTP {code}): {detail}", markup=False)
        raise typer.Exit(EXIT_USAGE if code < 500 else EXIT_RUNTIME)
    if json_out:
        print_json(answer)
    else:
        err.print(f"reported {body['project']} run {body['run_id']}: {word.value}", markup=False)


async def _post(
    endpoint: str, token: str, body: dict[str, Any], *, retries: int, seconds: float
) -> tuple[int, Any]:
    """(HTTP status, JSON answer), or (0, last error) when the server stayed unreachable.
    Connection errors, timeouts and 502/503/504 are retried with full-jitter backoff."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    last: Any = None
    client_timeout = aiohttp.ClientTimeout(total=seconds)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        for attempt in range(retries + 1):
            try:
                async with session.post(endpoint, data=json.dumps(body), headers=headers) as resp:
                    text = await resp.text()
                    try:
                        answer: Any = json.loads(text)
                    except ValueError:
                        answer = text[:200]
                    if resp.status not in (502, 503, 504):
                        return resp.status, answer
                    last = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = str(exc) or type(exc).__name__
            if attempt < retries:
                await asyncio.sleep(random.uniform(0, min(8.0, 0.5 * 2**attempt)))
    return 0, last

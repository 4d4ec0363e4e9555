"""The dashboard's page paths, built in one place: the source is one path segment (a `/` in it
is escaped), the project keeps its slashes (`{project:path}` in the routes)."""

from __future__ import annotations

from urllib.parse import quote


def project_path(source: str, project: str) -> str:
    """`/projects/{source}/{project}`, relative to the app's root."""
    return f"/projects/{quote(source, safe='')}/{quote(project, safe='/')}"


def run_path(source: str, project: str, run_id: str) -> str:
    """`/runs/{source}/{project}/{run_id}`: the same identifiers as `/api/v1/runs/...`."""
    return f"/runs/{quote(source, safe='')}/{quote(project, safe='/')}/{quote(run_id, safe='')}"

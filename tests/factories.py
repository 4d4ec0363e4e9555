"""Builders of domain objects for tests: `make_run(**overrides)`, `make_job(**overrides)`.

Import with `from factories import make_run` (pytest puts `tests/` on `sys.path` because of
`tests/conftest.py`). Defaults describe one successful GitLab pipeline on `main`; override what a
test is about and nothing else.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from ciwatch.domain import Job, Run, Status

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, on a private loop in a worker
    thread, so that the test's own event loop (running or not) is never touched."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now (for a server process told where to listen)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def at(seconds: float) -> datetime:
    """`T0` plus `seconds`: readable timestamps in tests."""
    return T0 + timedelta(seconds=seconds)


def make_run(**overrides: Any) -> Run:
    """A valid Run; keyword arguments replace any field."""
    values: dict[str, Any] = {
        "source": "gitlab-main",
        "provider": "gitlab",
        "project": "group/app",
        "run_id": "1001",
        "status": Status.SUCCESS,
        "updated_at": at(300),
        "number": 17,
        "workflow": "CI",
        "ref": "main",
        "sha": "a" * 40,
        "event": "push",
        "provider_status": "success",
        "created_at": T0,
        "started_at": at(10),
        "finished_at": at(300),
        "duration_seconds": 290.0,
        "queued_seconds": 10.0,
        "url": "https://gitlab.example.com/group/app/-/pipelines/1001",
        "author": "alice",
        "attempt": 1,
    }
    values.update(overrides)
    return Run(**values)


def make_job(**overrides: Any) -> Job:
    """A valid Job of the default `make_run()` run; keyword arguments replace any field."""
    values: dict[str, Any] = {
        "source": "gitlab-main",
        "project": "group/app",
        "run_id": "1001",
        "job_id": "5001",
        "name": "test",
        "status": Status.SUCCESS,
        "updated_at": at(200),
        "stage": "test",
        "provider_status": "success",
        "created_at": T0,
        "started_at": at(20),
        "finished_at": at(200),
        "duration_seconds": 180.0,
        "queued_seconds": 20.0,
        "runner": "runner-1",
        "allow_failure": False,
        "url": "https://gitlab.example.com/group/app/-/jobs/5001",
        "attempt": 1,
    }
    values.update(overrides)
    return Job(**values)

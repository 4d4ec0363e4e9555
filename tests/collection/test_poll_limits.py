"""A polled run outside the limits of `ciwatch.validation` is not stored, like a webhook's: an
API answering a far-future `updated_at` must not pin a run's status for ever (issue 11)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from ciwatch.domain import Job, Run, Status, Target, TargetState
from ciwatch.providers.base import PollResult
from ciwatch.scheduler import poll_target
from ciwatch.scheduler.tasks import KnownRuns
from ciwatch.store import SqlStore
from factories import at, make_run

NOW = at(100_000)


class OneAnswer:
    """A provider whose API answers the same runs on every poll (a test double of the API)."""

    kind = "gitlab"
    source = "gitlab-main"

    def __init__(self, runs: list[Run]) -> None:
        self.runs = runs
        self.details_calls = 0

    async def discover(self) -> list[Target]:
        return [Target(self.source, self.kind, "group/app")]

    async def poll(self, target: Target, state: TargetState | None) -> PollResult:
        return PollResult(self.runs, state or TargetState(self.source, target.project))

    async def details(self, run: Run) -> tuple[Run, list[Job]]:
        self.details_calls += 1
        return run, []

    async def close(self) -> None:
        return None


async def test_a_far_future_run_is_refused_and_the_others_are_stored(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    good = make_run(run_id="1", updated_at=at(50_000), status=Status.SUCCESS)
    pinned = make_run(
        run_id="2", updated_at=NOW + timedelta(days=3650), status=Status.FAILED, ref="main"
    )
    provider = OneAnswer([good, pinned])
    target = Target("gitlab-main", "gitlab", "group/app")
    known = KnownRuns()
    with caplog.at_level(logging.WARNING, logger="ciwatch.scheduler"):
        outcome = await poll_target(provider, store, target, now=NOW, known=known)
    assert outcome.ok
    assert await store.get_run(good.key) is not None
    assert await store.get_run(pinned.key) is None
    assert "run 2 of gitlab-main/group/app not stored: run.updated_at" in caplog.text
    # Refused once: the next poll of the same answer fetches nothing again.
    calls = provider.details_calls
    await poll_target(provider, store, target, now=NOW, known=known)
    assert provider.details_calls == calls

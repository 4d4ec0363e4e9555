"""The invariants of the model and the normalised status words (docs/architecture.md#the-model);
each CI system's status table is tested in tests/providers/test_status_tables.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ciwatch.domain import Job, Run, Status, Target, map_status, map_status_checked

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def test_push_uses_the_normalised_words() -> None:
    assert map_status("push", "failed") is Status.FAILED
    assert map_status("push", "Success") is Status.SUCCESS
    status, unknown = map_status_checked("push", "exploded")
    assert status is Status.RUNNING
    assert unknown is not None and unknown.word == "exploded"


def test_terminal_and_decisive() -> None:
    assert {s for s in Status if s.terminal} == {
        Status.SUCCESS,
        Status.FAILED,
        Status.CANCELED,
        Status.SKIPPED,
    }
    assert {s for s in Status if s.decisive} == {Status.SUCCESS, Status.FAILED}
    assert Status.QUEUED.rank < Status.RUNNING.rank < Status.SUCCESS.rank


def test_run_rejects_naive_and_non_utc_times() -> None:
    with pytest.raises(ValueError, match="updated_at"):
        Run("s", "gitlab", "p", "1", Status.RUNNING, datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="started_at"):
        Run(
            "s",
            "gitlab",
            "p",
            "1",
            Status.RUNNING,
            NOW,
            started_at=datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=2))),
        )
    # The domain checks a provider's shape; the kinds are the registry's (store/rows.py).
    for bad in ("", "Git Lab", "gitlab/x"):
        with pytest.raises(ValueError, match="provider"):
            Run("s", bad, "p", "1", Status.RUNNING, NOW)


def test_natural_keys() -> None:
    run = Run("gl", "gitlab", "g/app", "42", Status.SUCCESS, NOW, ref="main")
    assert run.key == ("gl", "g/app", "42")
    assert run.ref_key == ("gl", "g/app", "main")
    job = Job("gl", "g/app", "42", "7", "test", Status.FAILED, NOW)
    assert job.key == ("gl", "g/app", "42", "7")
    assert job.run_key == run.key
    assert Target("gl", "gitlab", "g/app").key == ("gl", "g/app")


def test_status_accepts_its_string_value() -> None:
    run = Run("s", "push", "p", "1", "failed", NOW)  # type: ignore[arg-type]
    assert run.status is Status.FAILED


def test_runs_are_frozen() -> None:
    run = Run("s", "push", "p", "1", Status.FAILED, NOW)
    with pytest.raises(AttributeError):
        run.status = Status.SUCCESS  # type: ignore[misc]

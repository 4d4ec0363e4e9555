"""The status mapping table of docs/architecture.md#the-model and the invariants of the model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ciwatch.domain import Job, Run, Status, Target, map_status, map_status_checked

NOW = datetime(2024, 1, 1, tzinfo=UTC)

# (provider, word, conclusion) -> status, row by row from the docs/architecture.md#the-model table.
TABLE = [
    ("gitlab", "created", None, Status.QUEUED),
    ("gitlab", "waiting_for_resource", None, Status.QUEUED),
    ("gitlab", "preparing", None, Status.QUEUED),
    ("gitlab", "pending", None, Status.QUEUED),
    ("gitlab", "scheduled", None, Status.QUEUED),
    ("gitlab", "running", None, Status.RUNNING),
    ("gitlab", "success", None, Status.SUCCESS),
    ("gitlab", "failed", None, Status.FAILED),
    ("gitlab", "canceled", None, Status.CANCELED),
    ("gitlab", "waiting_for_callback", None, Status.QUEUED),
    # Cancel requested, `after_script` still running: not final yet.
    ("gitlab", "canceling", None, Status.RUNNING),
    ("gitlab", "skipped", None, Status.SKIPPED),
    ("gitlab", "manual", None, Status.MANUAL),
    ("github", "queued", None, Status.QUEUED),
    ("github", "requested", None, Status.QUEUED),
    # An environment waiting for a reviewer: manual, never queued (no queued-too-long alert).
    ("github", "waiting", None, Status.MANUAL),
    ("github", "pending", None, Status.QUEUED),
    ("github", "in_progress", None, Status.RUNNING),
    ("github", "completed", "success", Status.SUCCESS),
    ("github", "completed", "neutral", Status.SUCCESS),
    ("github", "completed", "failure", Status.FAILED),
    ("github", "completed", "timed_out", Status.FAILED),
    ("github", "completed", "startup_failure", Status.FAILED),
    ("github", "completed", "cancelled", Status.CANCELED),
    ("github", "completed", "stale", Status.CANCELED),
    ("github", "completed", "skipped", Status.SKIPPED),
    ("github", "completed", "action_required", Status.MANUAL),
    ("jenkins", "in queue", None, Status.QUEUED),
    ("jenkins", "building", None, Status.RUNNING),
    ("jenkins", None, None, Status.RUNNING),
    ("jenkins", "SUCCESS", None, Status.SUCCESS),
    ("jenkins", "FAILURE", None, Status.FAILED),
    ("jenkins", "UNSTABLE", None, Status.FAILED),
    ("jenkins", "ABORTED", None, Status.CANCELED),
    ("jenkins", "NOT_BUILT", None, Status.SKIPPED),
]


@pytest.mark.parametrize(("provider", "word", "conclusion", "expected"), TABLE)
def test_mapping_table(
    provider: str, word: str | None, conclusion: str | None, expected: Status
) -> None:
    status, unknown = map_status_checked(provider, word, conclusion)
    assert status is expected
    assert unknown is None


@pytest.mark.parametrize(
    ("provider", "word", "conclusion", "expected"),
    [
        ("gitlab", "frobnicating", None, Status.RUNNING),
        ("github", "completed", "exploded", Status.FAILED),
        ("github", "teleporting", None, Status.RUNNING),
        ("jenkins", "WEIRD", None, Status.FAILED),
    ],
)
def test_unknown_words_map_to_a_safe_status_and_are_reported(
    provider: str, word: str, conclusion: str | None, expected: Status
) -> None:
    status, unknown = map_status_checked(provider, word, conclusion)
    assert status is expected
    assert unknown is not None and unknown.provider == provider
    assert word in unknown.word
    assert map_status(provider, word, conclusion) is expected


def test_push_uses_the_normalised_words() -> None:
    assert map_status("push", "failed") is Status.FAILED
    assert map_status("push", "Success") is Status.SUCCESS


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
    with pytest.raises(ValueError, match="provider"):
        Run("s", "gitlub", "p", "1", Status.RUNNING, NOW)


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

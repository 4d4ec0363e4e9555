"""Each CI system's status table (docs/architecture.md#the-model), through its registry entry
(`ProviderSpec.map_status`, defined in the provider's module)."""

from __future__ import annotations

import pytest

from ciwatch.domain import Status
from ciwatch.providers.registry import BY_KIND

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
    status, unknown = BY_KIND[provider].map_status(word, conclusion)
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
    status, unknown = BY_KIND[provider].map_status(word, conclusion)
    assert status is expected
    assert unknown is not None and unknown.provider == provider
    assert word in unknown.word

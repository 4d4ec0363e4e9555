"""The provider extension point: what the scheduler asks of GitLab, GitHub and Jenkins.

A provider is built per configured source, owns that source's `HttpClient`, and translates the
vendor's API into the domain model. Vendor field names never leave the provider modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Protocol, runtime_checkable

from ciwatch.domain import CommitRange, Job, Run, Target, TargetState


@dataclass(frozen=True, slots=True)
class PollResult:
    """What one poll of one target found.

    `runs` are the runs that may have changed (the scheduler asks the store); `state` is
    the target's state to save once the runs are stored (new cursor or ETag). `not_modified`
    says the provider confirmed nothing changed (a 304), `requests` counts API requests made.
    """

    runs: Sequence[Run]
    state: TargetState
    not_modified: bool = False
    requests: int = 0
    jobs: Sequence[Job] = field(default_factory=tuple)


class Provider(Protocol):
    """One configured source.

    Raises only `ProviderError` subclasses (`AuthFailed`, `NotFound`, `RateLimited`,
    `Unavailable`, `BadPayload`). `poll` must be safe to repeat: it never writes, and the cursor
    it returns is saved only after its runs are stored, so a crash re-polls rather than skips.
    """

    source: str
    kind: str

    async def discover(self) -> list[Target]:
        """Every target of the source: explicit projects plus expanded groups/orgs/folders,
        filtered by the include/exclude globs."""
        ...

    async def poll(self, target: Target, state: TargetState | None) -> PollResult:
        """Runs of `target` changed since `state` (None on first sight: a backfill)."""
        ...

    async def details(self, run: Run) -> tuple[Run, list[Job]]:
        """The full run and its jobs (or stages), for a run the store would change. Providers
        whose lists omit fields (GitLab: user, start, durations) read the run itself here."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class RunReader(Protocol):
    """A provider that reads one run by id (GitHub, Jenkins): what a webhook's follow-up uses
    for a run it has not stored yet, or whose payload lacked the run's own times."""

    async def run(self, project: str, run_id: str) -> Run:
        """The run `run_id` of `project` as the API has it (without its jobs)."""
        ...


@runtime_checkable
class CommitRangeReader(Protocol):
    """A provider that lists the commits between two runs of a ref (GitLab, GitHub,
    Jenkins, Azure): what a `broken` notice lists and mentions (issue 13). One request per call
    (GitHub: two for a range of more than 100 commits); the alert engine calls it once per
    break, with a short timeout."""

    async def commits_between(self, green: Run, failing: Run) -> CommitRange:
        """The commits after `green`'s up to `failing`'s (by SHA; Jenkins and Azure by build),
        newest first, bounded (`domain.MAX_RANGE_COMMITS`). Raises `ProviderError` like any
        other request."""
        ...


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether `name` matches any glob (`*` also crosses `/`, as operators expect of refs)."""
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def wanted(name: str | None, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Include globs (empty: everything) minus exclude globs."""
    value = name or ""
    if include and not matches(value, include):
        return False
    return not matches(value, exclude)

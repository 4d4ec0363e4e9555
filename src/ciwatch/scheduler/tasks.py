"""The poll task: one target, one poll, its runs and jobs stored, its health recorded.

Order matters for "nothing lost": jobs are stored first, then their runs, and the new cursor or
ETag only afterwards, so a crash in between re-polls (and re-fetches) instead of skipping. Jobs
are fetched only for runs the store would change. A poll looks up the runs it does not know in one
read, shared with the lookups of concurrent polls (`store/group.py`), and writes its runs with
their jobs in one transaction, shared the same way.

A run whose progress this process already saw stored costs no store read on the next poll:
each target remembers (as hashes) the runs of its previous poll. The store is forward-only, so
what was stored stays at least that far; the remembered set is the previous poll's runs only,
so it stays as small as the list window (Jenkins `builds`, GitHub `per_page`, GitLab overlap).
The set is saved with the target state as its `digest`, so that a new process (`poll --once`,
a restart) knows it too without reading the runs.

With a `TargetBook` the target state is read from and written to memory (`book.py`): an
unchanged poll (a 304, an empty GitLab page, an unchanged Jenkins body, runs all known) then
costs no store statement at all.
"""

from __future__ import annotations

import base64
import binascii
import logging
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from hashlib import blake2b

from ciwatch.domain import Job, Run, RunKey, Target, TargetState
from ciwatch.errors import (
    AuthFailed,
    BadPayload,
    InternalError,
    NotFound,
    ProviderError,
    RateLimited,
    StoreError,
)
from ciwatch.providers.base import Provider
from ciwatch.scheduler.book import TargetBook
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.state import progress_key
from ciwatch.store import Store
from ciwatch.supervisor import Supervisor
from ciwatch.validation import Invalid, job_problems, loggable, run_problems

log = logging.getLogger("ciwatch.scheduler")


@dataclass(frozen=True, slots=True)
class Cadence:
    """How often a source's targets are polled, in seconds."""

    interval: float = 60.0
    active_interval: float = 15.0


@dataclass(frozen=True, slots=True)
class PollOutcome:
    target: Target
    ok: bool
    changed: int = 0
    seen: int = 0
    active: bool = False
    not_modified: bool = False
    error: ProviderError | None = None
    first: bool = False

    @property
    def error_kind(self) -> str | None:
        return error_kind(self.error) if self.error is not None else None


def error_kind(exc: ProviderError) -> str:
    if isinstance(exc, RateLimited):
        return "rate_limited"
    if isinstance(exc, AuthFailed):
        return "auth"
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, BadPayload):
        return "bad_payload"
    if isinstance(exc, InternalError):
        return "internal"
    return "unavailable"


async def poll_target(
    provider: Provider,
    store: Store,
    target: Target,
    *,
    now: datetime,
    metrics: CollectionMetrics | None = None,
    active_runs: set[str] | None = None,
    known: KnownRuns | None = None,
    supervisor: Supervisor | None = None,
    book: TargetBook | None = None,
) -> PollOutcome:
    """Poll one target and store what changed. Provider errors are recorded on the target (its
    health and reason) and returned, never raised; store errors propagate.

    `known` (kept by the caller per target, updated in place) remembers which runs this process
    saw stored at which progress, so unchanged runs cost no store read on the next poll.
    `book` (the scheduler's in-memory target states) replaces the store's target-state read and
    write."""
    if book is not None:
        state = book.get(target.key)
    else:
        state = await store.get_target_state(target.source, target.project)
    try:
        result = await provider.poll(target, state)
        changed = await _store_runs(provider, store, result.runs, known, now)
        for run in result.runs:
            if active_runs is not None:
                if run.status.active:
                    active_runs.add(run.run_id)
                else:
                    active_runs.discard(run.run_id)
    except StoreError:
        raise
    except Exception as exc:
        if not isinstance(exc, ProviderError):
            # A bug (a parser meeting an answer it did not expect): logged with its traceback
            # and counted, and recorded on the target so that it is visible, not silent.
            if supervisor is not None:
                supervisor.item_failed("poll", f"target {target.source}/{target.project}", exc)
            else:
                log.exception("poll of %s/%s crashed", target.source, target.project)
            exc = InternalError(f"internal error: {type(exc).__name__}: {exc}"[:500])
        await _record_failure(store, target, state, exc, now, book)
        if metrics is not None:
            metrics.poll_error(target.source, error_kind(exc))
        return PollOutcome(target, ok=False, error=exc, first=state is None)
    healthy = replace(
        result.state,
        healthy=True,
        reason=None,
        last_polled_at=now,
        last_success_at=now,
        last_error_at=state.last_error_at if state else None,
        unhealthy_since=None,
        digest=known.encode() if known is not None else result.state.digest,
    )
    if state is not None and not state.healthy:
        log.info("target %s/%s healthy again", target.source, target.project)
    if book is not None:
        book.put(healthy)
    else:
        await store.save_target_state(healthy)
    if metrics is not None:
        metrics.poll_ok(target.source, now)
    return PollOutcome(
        target,
        ok=True,
        changed=changed,
        seen=len(result.runs),
        active=bool(active_runs),
        not_modified=result.not_modified,
        first=state is None,
    )


class KnownRuns:
    """The runs of a target's previous poll, each as a stable 8-byte hash of its id and
    progress, in a sorted array: a set of ints would take about ten times the memory (3 KB
    instead of 240 bytes for 20 runs; 30 MB instead of 3 MB at 10,000 targets). `encode` is
    the target state's `digest`; the hash is the same in every process (not `hash()`, which
    Python salts per process)."""

    __slots__ = ("_hashes",)

    def __init__(self) -> None:
        self._hashes = array("q")

    @classmethod
    def decode(cls, digest: str | None) -> KnownRuns:
        """The runs recorded in a stored digest (none for a missing or unreadable one: the next
        poll then reads its runs from the store, as a first poll would)."""
        known = cls()
        if digest and digest.startswith(_DIGEST_PREFIX):
            try:
                raw = base64.b64decode(digest[len(_DIGEST_PREFIX) :], validate=True)
                hashes = array("q", raw)
            except (ValueError, binascii.Error):
                return known
            if sys.byteorder != "little":
                hashes.byteswap()
            known._hashes = array("q", sorted(hashes))
        return known

    def encode(self) -> str:
        hashes = array("q", self._hashes)
        if sys.byteorder != "little":
            hashes.byteswap()
        return _DIGEST_PREFIX + base64.b64encode(hashes.tobytes()).decode("ascii")

    def __contains__(self, key: int) -> bool:
        i = bisect_left(self._hashes, key)
        return i < len(self._hashes) and self._hashes[i] == key

    def __len__(self) -> int:
        return len(self._hashes)

    def replace(self, keys: Iterable[int]) -> None:
        self._hashes = array("q", sorted(set(keys)))


_DIGEST_PREFIX = "r1:"


def _seen(run: Run, progress: tuple[int, datetime, int]) -> int:
    attempt, updated, rank = progress
    text = f"{run.run_id}\x1f{attempt}\x1f{updated.isoformat()}\x1f{rank}"
    return int.from_bytes(blake2b(text.encode(), digest_size=8).digest(), "little", signed=True)


async def _store_runs(
    provider: Provider,
    store: Store,
    runs: Sequence[Run],
    known: KnownRuns | None,
    now: datetime,
) -> int:
    """Store the runs that progressed, with their jobs; how many changed a stored run. A run
    (with its jobs) outside the limits of `ciwatch.validation` is not stored: the same limits
    as a webhook's, so a far-future `updated_at` from an API cannot pin a run's status either."""
    if not runs:
        return 0  # a 304 or an empty list: the runs known from before are still the ones shown
    seen: set[int] = set()
    unknown: list[Run] = []
    for run in runs:
        if known is not None:
            digest = _seen(run, progress_key(run))
            if digest in known:
                seen.add(digest)
                continue
        unknown.append(run)
    # One lookup for all of them, shared with the lookups of concurrent polls.
    stored = await store.get_runs([run.key for run in unknown]) if unknown else {}
    fresh: list[Run] = []
    for run in unknown:
        progress = progress_key(run)
        before = stored.get(run.key)
        if before is not None and progress <= progress_key(before):
            seen.add(_seen(run, progress))
            continue
        fresh.append(run)
    # Fetch every detail before writing anything: if a fetch fails nothing is stored, the cursor
    # is not advanced, and the next poll sees the runs as changed again.
    details = [await provider.details(run) for run in fresh]
    refused = _refused(details, now)
    if refused:
        # Remembered as seen at this progress: refused again only once it changes.
        seen.update(_seen(run, progress_key(run)) for run in fresh if run.key in refused)
        fresh = [run for run in fresh if run.key not in refused]
        details = [item for item in details if item[0].key not in refused]
    jobs = [job for _, found in details for job in found]
    # Runs and their jobs in one transaction: a run is never stored without the jobs it came
    # with, so the alert engine, woken by the run's change, sees its failing jobs.
    changed = await store.upsert_runs([full for full, _ in details], jobs) if details else 0
    if known is not None:
        # Stored now at least as far as the list showed them (unless details gave an older
        # answer: then the next poll reads the store, as without `known`).
        seen.update(
            _seen(run, progress_key(run))
            for run, (full, _) in zip(fresh, details, strict=True)
            if progress_key(run) <= progress_key(full)
        )
        known.replace(seen)
    return changed


def _refused(details: Sequence[tuple[Run, Sequence[Job]]], now: datetime) -> set[RunKey]:
    """The runs (with their jobs) outside the limits, each logged once with its bad fields."""
    refused: set[RunKey] = set()
    for run, found in details:
        problems = run_problems(run, now, "run.")
        for job in found:
            problems.extend(job_problems(job, now, "job."))
        if problems:
            refused.add(run.key)
            log.warning(
                "run %s of %s/%s not stored: %s",
                loggable(run.run_id),
                loggable(run.source),
                loggable(run.project),
                loggable(Invalid(problems)),
            )
    return refused


async def _record_failure(
    store: Store,
    target: Target,
    state: TargetState | None,
    exc: ProviderError,
    now: datetime,
    book: TargetBook | None = None,
) -> None:
    reason = str(exc)
    previous = state or TargetState(target.source, target.project)
    if previous.reason != reason:
        # Logged once per change of reason, not once per poll.
        log.warning("target %s/%s: %s", target.source, target.project, reason)
    since = previous.unhealthy_since if not previous.healthy else None
    failed = replace(
        previous,
        healthy=False,
        reason=reason,
        last_polled_at=now,
        last_error_at=now,
        unhealthy_since=since or now,
    )
    if book is not None:
        book.put(failed)
        return
    try:
        await store.save_target_state(failed)
    except StoreError:
        log.exception("could not record the failure of %s/%s", target.source, target.project)
        raise

"""The Store protocol: what the rest of ciwatch asks of the database, in domain words.

Errors: every method raises `ciwatch.errors.StoreError` (raised `from` the driver's error) when
the database is unreachable or a statement fails; its message names the database with any
password masked. Arguments that are wrong whatever the database holds raise ValueError
(`history` with a malformed cursor or `limit < 1`, naive datetimes).

Atomicity and idempotence: every write method is one transaction, so a failure leaves nothing
half-written. Run and job upserts are idempotent and order-independent (the forward-only merge
of `ciwatch.state`): applying the same updates again, or in another order, gives the same stored
rows. `save_target_state` is a plain upsert (last write wins); `upgrade` may run any number of
times; `prune` may be repeated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ciwatch.domain import Job, RefState, Run, RunKey, Status, TargetState
from ciwatch.filters import Match


@dataclass(frozen=True)
class RunPage:
    """One page of `Store.history`: runs newest first, and the cursor of the next page (None on
    the last page). The cursor is opaque; pass it back unchanged with the same filters."""

    runs: list[Run]
    next: str | None


class Store(Protocol):
    """Persistent runs, jobs, ref states and target sync state (docs/architecture.md#storage)."""

    async def upgrade(self) -> None:
        """Apply the schema migrations up to head. Idempotent; safe from several replicas."""

    async def schema_current(self) -> bool:
        """True when the schema is at the head migration (for `/readyz`)."""
        ...

    async def ping(self) -> None:
        """Return when the database answers; StoreError otherwise."""

    async def close(self) -> None:
        """Close every pooled connection. The store must not be used afterwards."""

    async def upsert_run(self, run: Run) -> bool:
        """Merge one run update (forward-only, `state.merge_run`) and refresh its ref state.

        Returns True when the stored run changed; False for a duplicate or an older update.
        """
        ...

    async def upsert_runs(self, runs: Sequence[Run], jobs: Sequence[Job] = ()) -> int:
        """Merge several run updates, and the job updates `jobs` with them, in one transaction;
        returns how many run updates changed a stored run (counting each update as if applied
        one after the other)."""
        ...

    async def upsert_jobs(self, jobs: Sequence[Job]) -> int:
        """Merge job updates (`state.merge_job`) in one transaction; returns how many changed."""
        ...

    async def get_run(self, key: RunKey) -> Run | None:
        """The stored run, or None."""
        ...

    async def jobs_for(self, key: RunKey) -> list[Job]:
        """The jobs of a run in creation order (then job id); empty when none are stored."""
        ...

    async def ref_states(
        self,
        *,
        source: str | Match | None = None,
        project: str | Match | None = None,
        ref: str | Match | None = None,
    ) -> list[RefState]:
        """The state of every project/ref (equal to `state.ref_state` over its runs), sorted by
        source, project and ref. Runs without a ref belong to ref "". A string filter is one
        exact value, a `Match` exact values and globs (`ciwatch.filters`)."""
        ...

    async def ref_states_page(
        self,
        *,
        source: str | Match | None = None,
        project: str | Match | None = None,
        ref: str | Match | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> tuple[list[RefState], str | None]:
        """`limit` of `ref_states()`, after `cursor` (the previous page's), and the next
        cursor, None on the last page; ValueError for a bad cursor or limit."""
        ...

    async def history(
        self,
        *,
        source: str | Match | None = None,
        project: str | Match | None = None,
        ref: str | Match | None = None,
        status: Status | Sequence[Status] | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """Runs matching every given filter, newest first (`state.ref_sort_key` order: creation
        time, then run id, descending), `limit` per page. `ref=""` selects runs without a ref;
        `since` keeps runs created at or after it. A malformed cursor raises ValueError."""
        ...

    async def prune(self, older_than: datetime) -> int:
        """Delete runs created before `older_than`, with their jobs; returns the runs deleted.

        Never deletes the newest run of a ref, its decisive run, nor the run its current
        success/failed streak started with, so every ref state stays the same.
        """
        ...

    async def get_target_state(self, source: str, project: str) -> TargetState | None:
        """The stored sync state of a target, or None."""
        ...

    async def save_target_state(self, state: TargetState) -> None:
        """Insert or replace the sync state of a target."""

    async def save_target_states(self, states: Sequence[TargetState]) -> None:
        """Insert or replace the sync states of targets, in one transaction."""

    async def target_states(self) -> list[TargetState]:
        """Every stored target state, sorted by source and project."""
        ...

    async def forget_targets(self, keys: Sequence[tuple[str, str]]) -> int:
        """Delete the target states of these (source, project) keys (targets no longer
        watched); returns how many were deleted. Their runs stay."""
        ...

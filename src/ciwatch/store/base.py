"""The store protocols: what the rest of ciwatch asks of the database, in domain words.

One small protocol per concern, each implemented by `SqlStore` (mypy checks it at the end of
`store/sql.py`; `tests/store/test_store_protocols.py` checks it at run time too):

- `RunStore`: runs, jobs, ref states and target sync state (the collection's and the pages');
- `AlertStore`: alert rows and evaluation reads, the transactional outbox, silences (the
  alert engine's, the delivery workers' and the alerts pages'), as `AlertRowStore`,
  `OutboxStore` and `SilenceStore`;
- `LeaseStore`: named leases with an expiry (partitioned polling, the write probe);
- `ReliabilityStore`: flaky jobs and time to recovery over a window of runs;
- `StatsStore`: the dashboard's pages, each read in one transaction;
- `Store`: all of them, what the composition root (`ciwatch.runtime`) holds.

Callers type against the protocol they need; outside `ciwatch.store` only the `/metrics`
snapshot still runs read units of work (`store/snapshot.py`). Query modules inside this
package work on `store/units.py`'s `SqlUnits`.

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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ciwatch.domain import CommitRange, Job, RefKey, RefState, Run, RunKey, Status, TargetState
from ciwatch.filters import Match

if TYPE_CHECKING:
    from ciwatch.alerting.rules import AlertRow
    from ciwatch.store.alert_views import AlertsOverview, AlertView
    from ciwatch.store.alerts import Change, EvaluationInputs, Pruned
    from ciwatch.store.changes import RefChanges
    from ciwatch.store.outbox import ChannelTrouble, OutboxRow
    from ciwatch.store.reliability import FlakyJob, RecoveryStats
    from ciwatch.store.silences import SilenceRow
    from ciwatch.store.stats import Filters, Overview, ProjectOverview, StatsCache


@dataclass(frozen=True)
class RunPage:
    """One page of `Store.history`: runs newest first, and the cursor of the next page (None on
    the last page). The cursor is opaque; pass it back unchanged with the same filters."""

    runs: list[Run]
    next: str | None


class TargetOverlay(Protocol):
    """A view of target states newer than the stored rows (the scheduler's `TargetBook`)."""

    def live(self) -> Mapping[tuple[str, str], TargetState]: ...

    def forget(self, keys: Iterable[tuple[str, str]]) -> None: ...


@runtime_checkable
class RunStore(Protocol):
    """Persistent runs, jobs, ref states and target sync state (docs/architecture.md#storage).

    `changes` publishes, after each committed run write of this process, the refs it changed
    (`store/changes.py`, for the alert engine). `overlay`, when set, is this process's newer
    view of target states: target reads return it where it is newer than the row."""

    changes: RefChanges
    overlay: TargetOverlay | None

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

    async def get_runs(self, keys: Sequence[RunKey]) -> dict[RunKey, Run]:
        """The stored runs among `keys`, by key (absent ones left out). Concurrent calls may
        share one read."""
        ...

    async def jobs_for(self, key: RunKey) -> list[Job]:
        """The jobs of a run in creation order (then job id); empty when none are stored."""
        ...

    async def newest_runs(self, refs: Sequence[RefKey], status: Status) -> dict[RefKey, Run]:
        """The newest run of each of `refs` whose status is `status` (as `history(ref=...,
        status=..., limit=1)` per ref), in one read; refs without one are left out."""
        ...

    async def set_commit_range(self, key: RunKey, found: CommitRange) -> bool:
        """Keep on the run `key` the commits since its ref's last green run (the alert engine,
        when that run broke the ref), replacing any kept before; False when no such run is
        stored. One statement; idempotent."""
        ...

    async def commit_range(self, key: RunKey) -> CommitRange | None:
        """The commits kept on the run `key` (`set_commit_range`), or None: also for a stored
        value that is not a range (logged), so no page fails on one."""
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


@runtime_checkable
class AlertRowStore(Protocol):
    """Alert rows (one per fingerprint, changed by compare-and-set with their outbox rows) and
    what an evaluation and the alerts pages read. `apply_changes` is one transaction: a change
    whose row is no longer the one it was decided from is skipped (another evaluator owns it),
    so replicas never notify twice."""

    async def load_alerts(self, *, firing_only: bool = False) -> list[AlertRow]:
        """Every stored alert (or only the firing ones), by fingerprint."""
        ...

    async def evaluation_inputs(
        self,
        now: datetime,
        *,
        running_before: datetime,
        queued_before: datetime,
        refs: Sequence[RefKey] | None = None,
    ) -> EvaluationInputs:
        """Ref states, their alerts, their runs queued or running past the thresholds and the
        silences in force at `now`, of every ref (or of `refs`), in one read."""
        ...

    async def failing_jobs_of(self, keys: Sequence[RunKey]) -> dict[RunKey, tuple[str, ...]]:
        """The failing jobs' names of each of the runs `keys`; a run without any is left out."""
        ...

    async def apply_changes(self, changes: Sequence[Change], now: datetime) -> list[Change]:
        """Apply alert changes with their outbox rows in one transaction; the changes applied."""
        ...

    async def alert_views(
        self, *, state: str | None = None, limit: int | None = None
    ) -> list[AlertView]:
        """Alerts, firing first, each with its newest notice per channel; ValueError for a
        `state` other than `firing` or `resolved`."""
        ...

    async def firing_count(self) -> int:
        """How many alerts are firing (one count)."""
        ...

    async def alerts_overview(self, *, firing_limit: int, history_limit: int) -> AlertsOverview:
        """Firing alerts (at most `firing_limit`, with the total) and the `history_limit` most
        recently resolved, with the runs they are about; one read."""
        ...

    async def prune_alerting(self, older_than: datetime) -> Pruned:
        """Delete outbox rows done, alerts resolved and silences ended before `older_than`
        (never a pending row, a firing alert or a silence in force); one transaction."""
        ...


@runtime_checkable
class OutboxStore(Protocol):
    """The outbox's deliveries: rows are claimed by one worker at a time (a lease), and an
    outcome is recorded only for rows the worker still holds."""

    async def claim_outbox(
        self, channel: str, worker: str, now: datetime, *, lease: timedelta, limit: int
    ) -> list[OutboxRow]:
        """Claim up to `limit` due rows of `channel` for `worker` until `now + lease`."""
        ...

    async def record_outbox(
        self,
        ids: Sequence[int],
        worker: str,
        now: datetime,
        *,
        outcome: str,
        error: str | None = None,
        retry_at: datetime | None = None,
    ) -> int:
        """Record `sent`, `failed` or `retry` (at `retry_at`) for the rows `worker` holds;
        the rows updated. ValueError for another outcome or a retry without `retry_at`."""
        ...

    async def outbox_rows(self, *, channel: str | None = None) -> list[OutboxRow]:
        """Every outbox row (of one channel), oldest first."""
        ...

    async def channel_troubles(self, channels: Sequence[str]) -> list[ChannelTrouble]:
        """Each of `channels` with failed or retried rows newer than its newest sent one."""
        ...


@runtime_checkable
class SilenceStore(Protocol):
    """Stored silences (matchers muting alerts until a time)."""

    async def add_silence(
        self,
        matchers: Mapping[str, str],
        starts_at: datetime,
        ends_at: datetime,
        *,
        created_by: str | None = None,
        comment: str | None = None,
    ) -> int:
        """Store a silence as given (checked by `alerting.silences.create_silence`); its id."""
        ...

    async def list_silences(self, *, active_at: datetime | None = None) -> list[SilenceRow]:
        """Every silence, or those in force at `active_at`, by id."""
        ...

    async def get_silence(self, silence_id: int) -> SilenceRow | None:
        """One silence by id, or None."""
        ...

    async def expire_silence(self, silence_id: int, now: datetime) -> SilenceRow | None:
        """End a silence at `now` (one already over stays as it is); None when unknown."""
        ...

    async def delete_silence(self, silence_id: int) -> bool:
        """Delete a silence; False when there was none with that id."""
        ...


@runtime_checkable
class AlertStore(AlertRowStore, OutboxStore, SilenceStore, Protocol):
    """Everything alerting keeps: alert rows, the outbox, silences."""


@runtime_checkable
class LeaseStore(Protocol):
    """Named leases (docs/architecture.md#several-replicas): a right one holder has until it
    expires; taking or renewing is one conditional statement, so two holders never hold one."""

    async def acquire_lease(self, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Take or renew `name` for `holder` until `now + ttl`; False while another holds it."""
        ...

    async def renew_leases(
        self, names: Sequence[str], holder: str, expires_at: datetime
    ) -> set[str]:
        """Renew the leases of `names` that `holder` still holds; the names renewed."""
        ...

    async def release_leases(self, holder: str, *, prefix: str = "") -> int:
        """Give up every lease of `holder` whose name starts with `prefix`; how many."""
        ...


@runtime_checkable
class ReliabilityStore(Protocol):
    """Flaky jobs and time to recovery over the runs created in a window (at most
    `reliability.MAX_WINDOW`), read through the window's index only."""

    async def flaky_jobs(
        self,
        *,
        now: datetime,
        window: timedelta,
        source: str | Match | None = None,
        project: str | Match | None = None,
        ref: str | Match | None = None,
        limit: int | None = None,
    ) -> list[FlakyJob]:
        """Jobs that failed and then passed on one SHA in the window, most flaky runs first."""
        ...

    async def recovery_stats(
        self,
        *,
        now: datetime,
        window: timedelta,
        source: str | Match | None = None,
        project: str | Match | None = None,
        ref: str | Match | None = None,
    ) -> dict[RefKey, RecoveryStats]:
        """Per ref with a decisive run in the window: its time to recovery and failure rate."""
        ...


@runtime_checkable
class StatsStore(Protocol):
    """The dashboard's pages (`store/stats.py`), each in one read transaction; past days'
    aggregates and the lists of sources and projects come from `cache` while fresh. The
    defaults (`...` here) are `stats.overview`'s and `stats.project_overview`'s."""

    async def overview(
        self,
        filters: Filters,
        *,
        now: datetime,
        board_limit: int = ...,
        board_offset: int = ...,
        recent_limit: int = ...,
        days: int = ...,
        with_recent: bool = ...,
        cache: StatsCache | None = ...,
        zone: tzinfo = ...,
    ) -> Overview:
        """The main dashboard: a page of the ref board, recent runs, daily aggregates, the
        unhealthy targets, the known sources and projects."""
        ...

    async def project_overview(
        self,
        source: str,
        project: str,
        *,
        now: datetime,
        ref: str | Match | None = ...,
        focus: str | None = ...,
        board_limit: int = ...,
        board_offset: int = ...,
        history_limit: int = ...,
        cursor: str | None = ...,
        days: int = ...,
        cache: StatsCache | None = ...,
        zone: tzinfo = ...,
    ) -> ProjectOverview:
        """A project's page: its refs, history (ValueError for a bad cursor) and aggregates."""
        ...


@runtime_checkable
class Store(RunStore, AlertStore, LeaseStore, ReliabilityStore, StatsStore, Protocol):
    """Every store protocol at once: what `Runtime.store` is, `SqlStore` on both engines."""


PROTOCOLS: tuple[type, ...] = (
    RunStore,
    AlertRowStore,
    OutboxStore,
    SilenceStore,
    AlertStore,
    LeaseStore,
    ReliabilityStore,
    StatsStore,
    Store,
)

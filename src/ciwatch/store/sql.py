"""`SqlStore`: every store protocol (`store/base.py`) on SQLite or PostgreSQL through SQLAlchemy
Core (async). Runs, jobs and targets are written here; the alerting, lease and reliability
methods hand their unit of work to the query module of their concern."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, tzinfo
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import delete, text, tuple_
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ciwatch.alerting.rules import AlertRow
from ciwatch.domain import CommitRange, Job, RefKey, RefState, Run, RunKey, Status, TargetState
from ciwatch.errors import StoreError
from ciwatch.filters import Match
from ciwatch.store import (
    alert_views,
    alerts,
    leases,
    migrate,
    outbox,
    reads,
    reliability,
    silences,
    stats,
    writes,
)
from ciwatch.store.alert_views import AlertsOverview, AlertView
from ciwatch.store.alerts import Change, EvaluationInputs, Pruned
from ciwatch.store.base import (
    AlertStore,
    LeaseStore,
    ReliabilityStore,
    RunPage,
    RunStore,
    StatsStore,
    Store,
    TargetOverlay,
)
from ciwatch.store.changes import RefChanges
from ciwatch.store.engine import (
    WRITE_OPTION,
    Endpoint,
    connect_error,
    create_engine,
    is_retryable,
    operation_error,
    parse_url,
)
from ciwatch.store.group import GroupCommit, GroupRead, Pending
from ciwatch.store.outbox import ChannelTrouble, OutboxRow
from ciwatch.store.reliability import FlakyJob, RecoveryStats
from ciwatch.store.rows import range_value, target_values
from ciwatch.store.silences import SilenceRow
from ciwatch.store.stats import DEFAULT_DAYS, Filters, Overview, ProjectOverview, StatsCache
from ciwatch.store.tables import targets
from ciwatch.store.units import SqlUnits
from ciwatch.store.upserts import target_upsert

log = logging.getLogger(__name__)
T = TypeVar("T")

# A write aborted by a PostgreSQL deadlock or serialization failure is retried this many times.
WRITE_ATTEMPTS = 5
_DB_ERRORS = (SQLAlchemyError, OSError)


def _item_caused(exc: Exception) -> bool:
    """Whether a failed batch of run writes may be one item's fault, so that each item is tried
    alone: a constraint or a value the database refused, or an error before the database. Not a
    connection, timeout or lock error, which every item would meet again."""
    if not isinstance(exc, StoreError):
        return True
    return isinstance(exc.__cause__, IntegrityError | DataError)


def open_store(url: str, *, echo: bool = False) -> SqlStore:
    """A store for a user-facing database URL (docs/architecture.md#configuration). No I/O: it
    connects on first use.

    Accepts `sqlite:///relative.db`, `sqlite:////absolute.db`, `postgresql://user@host:port/db`,
    `postgres://...` and `postgresql+asyncpg://...`. Raises ConfigError naming an unknown scheme.
    """
    return SqlStore(parse_url(url), echo=echo)


class SqlStore:
    """Every store protocol over an async SQLAlchemy engine (see `ciwatch.store.base`)."""

    def __init__(self, endpoint: Endpoint, *, echo: bool = False) -> None:
        self.endpoint = endpoint
        self.dialect = "sqlite" if endpoint.is_sqlite else "postgresql"
        self._engine: AsyncEngine = create_engine(endpoint, echo=echo)
        # SQLite runs one writer at a time anyway. Queueing this process's writers here, instead
        # of in SQLite's busy handler (which polls with sleeps of up to 100 ms), keeps concurrent
        # writes fast; writers in other processes still wait through `busy_timeout`.
        self._write_turn = asyncio.Lock() if endpoint.is_sqlite else None
        # The refs whose runs this process changed, for the alert engine (see `changes.py`).
        self.changes = RefChanges()
        # Concurrent run writes share a transaction (see `group.py`).
        self.group_commit = GroupCommit(self._write_batch, isolates=_item_caused)
        # Concurrent run lookups share a read (see `group.py`).
        self.group_read = GroupRead(self._read_runs)
        # The scheduler's in-memory target states (`scheduler/book.py`), newer than the rows
        # until its next flush: target reads in this process see them at once.
        self.overlay: TargetOverlay | None = None

    def __repr__(self) -> str:
        return f"SqlStore({self.endpoint.display!r})"

    # -- connections and transactions -------------------------------------------------------

    @asynccontextmanager
    async def _connect(self, *, write: bool) -> AsyncIterator[AsyncConnection]:
        try:
            conn = await self._engine.connect()
        except _DB_ERRORS as exc:
            raise connect_error(self.endpoint, exc) from exc
        try:
            if write:
                await conn.execution_options(**{WRITE_OPTION: True})
            yield conn
        finally:
            await conn.close()

    async def _read(self, what: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        async with self._connect(write=False) as conn:
            try:
                async with conn.begin():
                    return await work(conn)
            except _DB_ERRORS as exc:
                raise operation_error(self.endpoint, exc, what) from exc

    async def read(self, what: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run a read-only unit of work in one transaction; errors become `StoreError` naming
        `what`. For query modules beside this one (dashboard statistics, metrics snapshot)."""
        return await self._read(what, work)

    async def write(self, what: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """Run a unit of work in one write transaction (SQLite: BEGIN IMMEDIATE; retried on a
        PostgreSQL deadlock or serialization failure, so `work` must be safe to re-run); errors
        become `StoreError` naming `what`. For query modules beside this one (alerting)."""
        return await self._write(what, work)

    async def _write(self, what: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        if self._write_turn is None:
            return await self._write_once(what, work)
        async with self._write_turn:
            return await self._write_once(what, work)

    async def _write_once(self, what: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        for attempt in range(1, WRITE_ATTEMPTS + 1):
            async with self._connect(write=True) as conn:
                try:
                    async with conn.begin():
                        return await work(conn)
                except _DB_ERRORS as exc:
                    if attempt < WRITE_ATTEMPTS and is_retryable(exc):
                        log.info("store: retrying %s after %s", what, type(exc).__name__)
                        continue
                    raise operation_error(self.endpoint, exc, what) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    # -- schema ------------------------------------------------------------------------------

    async def upgrade(self) -> None:
        """Apply Alembic migrations up to head (idempotent)."""

        async def work(conn: AsyncConnection) -> None:
            await conn.run_sync(migrate.upgrade)

        await self._write("schema upgrade", work)

    async def schema_current(self) -> bool:
        """True when the database is at the head migration."""
        return await self._read("schema check", lambda conn: conn.run_sync(migrate.is_current))

    async def ping(self) -> None:
        """Raise StoreError unless the database answers."""

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(text("SELECT 1"))

        await self._read("ping", work)

    async def close(self) -> None:
        """Dispose of the connection pool."""
        await self._engine.dispose()

    # -- runs and jobs ----------------------------------------------------------------------

    async def upsert_run(self, run: Run) -> bool:
        """Merge one run update; True when the stored run changed."""
        return await self.upsert_runs([run]) > 0

    async def upsert_runs(self, runs: Sequence[Run], jobs: Sequence[Job] = ()) -> int:
        """Merge run updates, and job updates with them, in one transaction; the number of run
        updates that changed a stored run. Concurrent calls share a transaction (`group.py`)."""
        if not runs and not jobs:
            return 0
        return await self.group_commit.submit(runs, jobs)

    async def _write_batch(self, batch: Sequence[Pending]) -> list[int]:
        """Write the runs and jobs of `batch` in one transaction; each item's changed count."""
        # A retried transaction may add refs twice; the set is published only after commit.
        changed_refs: set[RefKey] = set()
        changed_keys: set[tuple[RunKey, int]] = set()

        async def work(conn: AsyncConnection) -> int:
            changed_keys.clear()
            jobs = [job for item in batch for job in item.jobs]
            if jobs:
                await writes.upsert_jobs(conn, self.dialect, jobs)
            runs = [run for item in batch for run in item.runs]
            if not runs:
                return 0
            return await writes.upsert_runs(conn, self.dialect, runs, changed_refs, changed_keys)

        changed = await self._write("run upsert", work)
        if changed:
            self.changes.publish(changed_refs)
        # Each change goes to the item whose update made it: the n-th update of a run, counting
        # the items' runs in order (`writes.upsert_runs` applies them in that order).
        seen: Counter[RunKey] = Counter()
        counts = []
        for item in batch:
            count = 0
            for run in item.runs:
                count += (run.key, seen[run.key]) in changed_keys
                seen[run.key] += 1
            counts.append(count)
        return counts

    async def upsert_jobs(self, jobs: Sequence[Job]) -> int:
        """Merge job updates in one transaction; the number that changed a stored job."""
        if not jobs:
            return 0
        return await self._write(
            "job upsert", lambda conn: writes.upsert_jobs(conn, self.dialect, jobs)
        )

    async def get_run(self, key: RunKey) -> Run | None:
        """The stored run, or None."""
        return await self._read("run lookup", lambda conn: reads.get_run(conn, RunKey(*key)))

    async def get_runs(self, keys: Sequence[RunKey]) -> dict[RunKey, Run]:
        """The stored runs among `keys`, by key. Concurrent calls share a read (`group.py`)."""
        if not keys:
            return {}
        return await self.group_read.submit(keys)

    async def _read_runs(self, keys: Sequence[RunKey]) -> dict[RunKey, Run]:
        return await self._read("run lookup", lambda conn: reads.get_runs(conn, keys))

    async def newest_runs(self, refs: Sequence[RefKey], status: Status) -> dict[RefKey, Run]:
        """The newest run with `status` of each of `refs`, in one read."""
        if not refs:
            return {}
        return await self._read(
            "newest runs", lambda conn: reads.newest_runs(conn, list(refs), status)
        )

    async def jobs_for(self, key: RunKey) -> list[Job]:
        """The jobs of a run, in creation order."""
        return await self._read("job lookup", lambda conn: reads.jobs_for(conn, RunKey(*key)))

    async def set_commit_range(self, key: RunKey, found: CommitRange) -> bool:
        """Keep the commits since green on the run `key`; False when it is not stored."""
        value = range_value(found)

        return await self._write(
            "commit range", lambda conn: writes.set_commit_range(conn, RunKey(*key), value)
        )

    async def commit_range(self, key: RunKey) -> CommitRange | None:
        """The commits kept on the run `key`, or None."""
        return await self._read("commit range", lambda conn: reads.commit_range(conn, RunKey(*key)))

    async def ref_states(
        self,
        *,
        source: str | Match | None = None,
        project: str | Match | None = None,
        ref: str | Match | None = None,
    ) -> list[RefState]:
        """The state of every project/ref, with its newest run."""
        return await self._read(
            "ref states", lambda conn: reads.ref_states_query(conn, source, project, ref=ref)
        )

    async def ref_states_page(
        self,
        *,
        source: str | Match | None = None,
        project: str | Match | None = None,
        ref: str | Match | None = None,
        limit: int,
        cursor: str | None = None,
    ) -> tuple[list[RefState], str | None]:
        """At most `limit` ref states in `ref_states()` order, after `cursor`, and the cursor of
        the next page (None on the last); ValueError for a bad cursor or limit."""
        if limit < 1:
            raise ValueError(f"projects limit must be at least 1, got {limit}")
        after = reads.decode_ref_cursor(cursor) if cursor is not None else None
        found = await self._read(
            "ref states",
            lambda conn: reads.ref_states_query(
                conn, source, project, ref=ref, after=after, limit=limit + 1
            ),
        )
        if len(found) <= limit:
            return found, None
        last = found[limit - 1]
        return found[:limit], reads.encode_ref_cursor(last.source, last.project, last.ref)

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
        """Runs newest first with keyset pagination; ValueError for a bad cursor or limit."""
        if limit < 1:
            raise ValueError(f"history limit must be at least 1, got {limit}")
        _require_aware(since, "since")
        after = reads.Position.decode(cursor) if cursor is not None else None
        query = reads.history_query(
            source=source,
            project=project,
            ref=ref,
            status=status,
            since=since,
            limit=limit + 1,
            after=after,
        )
        found, next_cursor = await self._read(
            "history", lambda conn: reads.history_page(conn, query, limit)
        )
        return RunPage(runs=found, next=next_cursor)

    async def prune(self, older_than: datetime) -> int:
        """Delete old runs and their jobs, keeping what every ref state points at."""
        _require_aware(older_than, "older_than")
        refs = await self._read(
            "prune", lambda conn: writes.refs_with_runs_before(conn, older_than)
        )
        deleted = 0
        step = writes.PRUNE_REFS_PER_TRANSACTION
        # Bounded transactions: a large prune must not hold every ref lock at once.
        for start in range(0, len(refs), step):
            deleted += await self._write(
                "prune", partial(self._prune_part, refs[start : start + step], older_than)
            )
        return deleted

    async def _prune_part(
        self, refs: Sequence[RefKey], older_than: datetime, conn: AsyncConnection
    ) -> int:
        return await writes.prune_refs(conn, self.dialect, refs, older_than)

    # -- targets -----------------------------------------------------------------------------

    async def get_target_state(self, source: str, project: str) -> TargetState | None:
        """The stored sync state of a target (or this process's newer view of it), or None."""
        stored = await self._read(
            "target lookup", lambda conn: reads.get_target_state(conn, source, project)
        )
        if self.overlay is None:
            return stored
        return _newer(stored, self.overlay.live().get((source, project)))

    async def save_target_state(self, state: TargetState) -> None:
        """Insert or replace the sync state of a target."""
        await self.save_target_states([state])

    async def save_target_states(self, states: Sequence[TargetState]) -> None:
        """Insert or replace the sync states of targets, in one transaction (no key twice)."""
        if not states:
            return
        statement = target_upsert(self.dialect)
        rows = [target_values(state) for state in states]

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(statement, rows)

        await self._write("target save", work)

    async def target_states(self) -> list[TargetState]:
        """Every stored target state (each overlaid by this process's newer view of it)."""
        stored = await self._read("target states", reads.target_states)
        if self.overlay is None:
            return stored
        live = self.overlay.live()
        merged = {state.key: _newer(state, live.get(state.key)) or state for state in stored}
        for key, state in live.items():
            merged.setdefault(key, state)
        return [merged[key] for key in sorted(merged)]

    async def forget_targets(self, keys: Sequence[tuple[str, str]]) -> int:
        """Delete the target states of these (source, project) keys; how many went."""
        if not keys:
            return 0
        wanted = list(dict.fromkeys(keys))
        if self.overlay is not None:
            self.overlay.forget(wanted)

        async def work(conn: AsyncConnection) -> int:
            deleted = 0
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                statement = delete(targets).where(
                    tuple_(targets.c.source, targets.c.project).in_(part)
                )
                deleted += (await conn.execute(statement)).rowcount
            return deleted

        return await self._write("target forget", work)

    # -- alerting: alert rows, outbox, silences (store/alerts.py, outbox.py, silences.py) ----

    async def load_alerts(self, *, firing_only: bool = False) -> list[AlertRow]:
        """Every stored alert (or only the firing ones), by fingerprint."""
        return await alerts.load_alerts(self, firing_only=firing_only)

    async def evaluation_inputs(
        self,
        now: datetime,
        *,
        running_before: datetime,
        queued_before: datetime,
        refs: Sequence[RefKey] | None = None,
    ) -> EvaluationInputs:
        """The inputs of an evaluation at `now`, read together."""
        return await alerts.evaluation_inputs(
            self, now, running_before=running_before, queued_before=queued_before, refs=refs
        )

    async def failing_jobs_of(self, keys: Sequence[RunKey]) -> dict[RunKey, tuple[str, ...]]:
        """The failing jobs' names of each of the runs `keys`."""
        return await alerts.failing_jobs_of(self, keys)

    async def apply_changes(self, changes: Sequence[Change], now: datetime) -> list[Change]:
        """Apply alert changes and queue their outbox rows, in one transaction."""
        return await alerts.apply_changes(self, changes, now)

    async def alert_views(
        self, *, state: str | None = None, limit: int | None = None
    ) -> list[AlertView]:
        """Alerts, firing first, each with its newest notice per channel."""
        return await alert_views.alert_views(self, state=state, limit=limit)

    async def firing_count(self) -> int:
        """How many alerts are firing."""
        return await alert_views.firing_count(self)

    async def alerts_overview(self, *, firing_limit: int, history_limit: int) -> AlertsOverview:
        """The alerts page's firing and resolved alerts, in one read."""
        return await alert_views.alerts_overview(
            self, firing_limit=firing_limit, history_limit=history_limit
        )

    async def prune_alerting(self, older_than: datetime) -> Pruned:
        """Delete what alerting no longer needs from before `older_than`."""
        return await alerts.prune_alerting(self, older_than)

    async def claim_outbox(
        self, channel: str, worker: str, now: datetime, *, lease: timedelta, limit: int
    ) -> list[OutboxRow]:
        """Claim due outbox rows of `channel` for `worker`."""
        return await outbox.claim(self, channel, worker, now, lease=lease, limit=limit)

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
        """Record the outcome of one send for the rows `worker` holds."""
        return await outbox.record(
            self, ids, worker, now, outcome=outcome, error=error, retry_at=retry_at
        )

    async def outbox_rows(self, *, channel: str | None = None) -> list[OutboxRow]:
        """Every outbox row (of one channel), oldest first."""
        return await outbox.outbox_rows(self, channel=channel)

    async def channel_troubles(self, channels: Sequence[str]) -> list[ChannelTrouble]:
        """The channels whose newest deliveries fail."""
        return await outbox.channel_troubles(self, channels)

    async def add_silence(
        self,
        matchers: Mapping[str, str],
        starts_at: datetime,
        ends_at: datetime,
        *,
        created_by: str | None = None,
        comment: str | None = None,
    ) -> int:
        """Store a silence; its id."""
        return await silences.add_silence(
            self, matchers, starts_at, ends_at, created_by=created_by, comment=comment
        )

    async def list_silences(self, *, active_at: datetime | None = None) -> list[SilenceRow]:
        """Every silence, or those in force at `active_at`."""
        return await silences.list_silences(self, active_at=active_at)

    async def get_silence(self, silence_id: int) -> SilenceRow | None:
        """One silence by id, or None."""
        return await silences.get_silence(self, silence_id)

    async def expire_silence(self, silence_id: int, now: datetime) -> SilenceRow | None:
        """End a silence at `now`."""
        return await silences.expire_silence(self, silence_id, now)

    async def delete_silence(self, silence_id: int) -> bool:
        """Delete a silence; False when there was none."""
        return await silences.delete_silence(self, silence_id)

    # -- leases (store/leases.py) -----------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
        """Take or renew a lease."""
        return await leases.acquire(self, name, holder, now, ttl)

    async def renew_leases(
        self, names: Sequence[str], holder: str, expires_at: datetime
    ) -> set[str]:
        """Renew the leases `holder` still holds."""
        return await leases.renew(self, names, holder, expires_at)

    async def release_leases(self, holder: str, *, prefix: str = "") -> int:
        """Give up the leases of `holder`."""
        return await leases.release(self, holder, prefix=prefix)

    # -- reliability (store/reliability.py) -------------------------------------------------

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
        """The flaky jobs of the window, most flaky runs first."""
        return await self._read(
            "flaky jobs",
            partial(
                reliability.flaky_jobs,
                now=now,
                window=window,
                source=source,
                project=project,
                ref=ref,
                limit=limit,
            ),
        )

    async def recovery_stats(
        self,
        *,
        now: datetime,
        window: timedelta,
        source: str | Match | None = None,
        project: str | Match | None = None,
        ref: str | Match | None = None,
    ) -> dict[RefKey, RecoveryStats]:
        """Time to recovery per ref of the window."""
        return await self._read(
            "time to recovery",
            partial(
                reliability.recovery_stats,
                now=now,
                window=window,
                source=source,
                project=project,
                ref=ref,
            ),
        )

    # -- the dashboard's pages (store/stats.py) ----------------------------------------------

    async def overview(
        self,
        filters: Filters,
        *,
        now: datetime,
        board_limit: int = 50,
        board_offset: int = 0,
        recent_limit: int = 20,
        days: int = DEFAULT_DAYS,
        with_recent: bool = True,
        cache: StatsCache | None = None,
        zone: tzinfo = UTC,
    ) -> Overview:
        """The main dashboard's data in one read transaction."""
        return await stats.overview(
            self,
            filters,
            now=now,
            board_limit=board_limit,
            board_offset=board_offset,
            recent_limit=recent_limit,
            days=days,
            with_recent=with_recent,
            cache=cache,
            zone=zone,
        )

    async def project_overview(
        self,
        source: str,
        project: str,
        *,
        now: datetime,
        ref: str | Match | None = None,
        focus: str | None = None,
        board_limit: int = 50,
        board_offset: int = 0,
        history_limit: int = 25,
        cursor: str | None = None,
        days: int = DEFAULT_DAYS,
        cache: StatsCache | None = None,
        zone: tzinfo = UTC,
    ) -> ProjectOverview:
        """One project's page data in one read transaction."""
        return await stats.project_overview(
            self,
            source,
            project,
            now=now,
            ref=ref,
            focus=focus,
            board_limit=board_limit,
            board_offset=board_offset,
            history_limit=history_limit,
            cursor=cursor,
            days=days,
            cache=cache,
            zone=zone,
        )


def _newer(stored: TargetState | None, live: TargetState | None) -> TargetState | None:
    """The more recently polled of a stored row and this process's view (the row on a tie:
    another replica or the discovery wrote it last)."""
    if live is None:
        return stored
    if stored is None:
        return live
    if (live.last_polled_at or _EPOCH) > (stored.last_polled_at or _EPOCH):
        return live
    return stored


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _require_aware(value: datetime | None, name: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be an aware datetime, got {value!r}")


if TYPE_CHECKING:  # mypy proves that SqlStore implements every protocol others code against
    _runs: type[RunStore] = SqlStore
    _alerts: type[AlertStore] = SqlStore
    _leases: type[LeaseStore] = SqlStore
    _reliability: type[ReliabilityStore] = SqlStore
    _stats: type[StatsStore] = SqlStore
    _everything: type[Store] = SqlStore
    _units: type[SqlUnits] = SqlStore

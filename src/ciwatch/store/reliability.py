"""Flaky jobs and time to recovery: read queries over the runs and jobs of a window.

**Flaky.** A job is flaky on a commit when, among the runs on that SHA, an attempt of the job
(same source, project and job name) failed and a later attempt passed. Every provider keeps each
attempt as its own job row: a GitLab retry is a new job id in the same pipeline, a GitHub re-run
keeps the run id and gives the jobs of `run_attempt` 2 new ids, a Jenkins rebuild is a new build
(run) on the same SHA. So one SQL pass groups the jobs of the window's runs by
`(source, project, sha, name)` and then by job.

The window is of run creation (`runs.order_time`), read through the `order_time` index (or
`source, project, ref_key, order_time` when filtered by project), each run's jobs through the
jobs' unique key `(source, project, run_id, job_id)`: nothing outside the window is visited.

**Time to recovery.** A ref's red period starts at the finish of its first failed run after a
success (or at the first failed run of the window) and ends at the finish of the first following
successful run, as `RefState.since` does. One window function (`lag` over the ref's decisive runs
in creation order) keeps only the runs where the colour changes; Python pairs those. A run that
passed on a later attempt of the same run id (a GitHub re-run) after its earlier attempt failed
counts as a failed run ending when that attempt's failed jobs ended, then a success: its red
period is not lost because the run's row now says success.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, case, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.domain import RefKey
from ciwatch.filters import Match, clause
from ciwatch.store.tables import jobs, runs

DEFAULT_WINDOW = timedelta(days=14)
# The longest window a query takes (the dashboard and the API clamp to it).
MAX_WINDOW = timedelta(days=90)

_SUCCESS: ColumnElement[str] = literal_column("'success'")
_FAILED: ColumnElement[str] = literal_column("'failed'")


@dataclass(frozen=True)
class FlakyJob:
    """One job that failed and then passed on the same SHA at least once in the window.

    `failures`: its failed attempts in the window; `flaky_runs`: those of them on a SHA where a
    later attempt passed; `commits`: the SHAs it ran on (an ended attempt); `flaky_commits`: the
    SHAs it was flaky on; `rate` = flaky_commits / commits. `last_seen` is when the latest flaky
    SHA's passing attempt ended; `ref`, `stage` and `url` are of that latest flaky SHA (the web
    page of its failed job, else of its run)."""

    source: str
    provider: str
    project: str
    job: str
    ref: str
    stage: str | None
    failures: int
    flaky_runs: int
    commits: int
    flaky_commits: int
    last_seen: datetime
    url: str | None = None

    @property
    def rate(self) -> float:
        return self.flaky_commits / self.commits if self.commits else 0.0


def _window_filters(
    start: datetime,
    source: str | Match | None,
    project: str | Match | None,
    ref: str | Match | None,
) -> list[ColumnElement[bool]]:
    """The window, and the filters (exact values or globs, `ciwatch.filters`)."""
    where: list[ColumnElement[bool]] = [runs.c.order_time >= start]
    if source is not None:
        where.append(clause(runs.c.source, source))
    if project is not None:
        where.append(clause(runs.c.project, project))
    if ref is not None:
        where.append(clause(runs.c.ref_key, ref))
    return where


async def flaky_jobs(
    conn: AsyncConnection,
    *,
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
    source: str | Match | None = None,
    project: str | Match | None = None,
    ref: str | Match | None = None,
    limit: int | None = None,
) -> list[FlakyJob]:
    """The flaky jobs of the runs created in the last `window`, most flaky runs first."""
    window = min(max(window, timedelta(seconds=1)), MAX_WINDOW)
    start = now - window
    ended = func.coalesce(jobs.c.finished_at, jobs.c.updated_at)
    is_failed = jobs.c.status == _FAILED
    is_success = jobs.c.status == _SUCCESS
    job_key = (jobs.c.source, jobs.c.project, jobs.c.name)
    # The window's runs first, materialised: both planners then walk the runs' `order_time`
    # (or `source, project, ref_key, order_time`) index and probe each run's jobs through their
    # unique key, instead of scanning every job and probing its run (what SQLite, without
    # statistics, would otherwise choose).
    window_runs = (
        select(
            runs.c.source,
            runs.c.project,
            runs.c.run_id,
            runs.c.sha,
            runs.c.provider,
            runs.c.ref_key,
            runs.c.url,
        )
        .where(*_window_filters(start, source, project, ref), runs.c.sha.is_not(None))
        .cte("window_runs")
        .prefix_with("MATERIALIZED")
    )
    per_sha = (
        select(
            *job_key,
            func.max(window_runs.c.provider).label("provider"),
            func.sum(case((is_failed, 1), else_=0)).label("failed"),
            func.min(case((is_failed, ended))).label("first_failed"),
            func.max(case((is_success, ended))).label("last_success"),
            # Of the commit's failed attempts (one, mostly): where to look.
            func.max(case((is_failed, window_runs.c.ref_key))).label("ref"),
            func.max(case((is_failed, jobs.c.stage))).label("stage"),
            func.max(case((is_failed, func.coalesce(jobs.c.url, window_runs.c.url)))).label("url"),
        )
        .join_from(
            window_runs,
            jobs,
            and_(
                jobs.c.source == window_runs.c.source,
                jobs.c.project == window_runs.c.project,
                jobs.c.run_id == window_runs.c.run_id,
            ),
        )
        .where(
            jobs.c.status.in_([_SUCCESS, _FAILED]),
            jobs.c.allow_failure.is_(False),
        )
        .group_by(*job_key, window_runs.c.sha)
        .cte("per_sha")
        .prefix_with("MATERIALIZED")
    )
    is_flaky = and_(per_sha.c.failed > 0, per_sha.c.last_success > per_sha.c.first_failed)
    flagged = select(per_sha, case((is_flaky, 1), else_=0).label("flaky")).subquery("flagged")
    flaky = flagged.c.flaky == 1
    flaky_runs = func.sum(case((flaky, flagged.c.failed), else_=0))
    per_job = (flagged.c.source, flagged.c.project, flagged.c.name)
    sums = (
        select(
            *per_job,
            func.max(flagged.c.provider).label("provider"),
            func.sum(flagged.c.failed).label("failures"),
            flaky_runs.label("flaky_runs"),
            func.count().label("commits"),
            func.sum(flagged.c.flaky).label("flaky_commits"),
            func.max(case((flaky, flagged.c.last_success))).label("last_seen"),
        )
        .group_by(*per_job)
        .having(func.sum(flagged.c.flaky) > 0)
        .subquery("sums")
    )
    # Where to look: the ref, stage and page of each job's latest flaky commit, ranked among
    # the flaky commits only (a few per job), not among every commit of the window.
    latest = (
        select(
            *per_job,
            flagged.c.ref,
            flagged.c.stage,
            flagged.c.url,
            func.row_number()
            .over(partition_by=per_job, order_by=flagged.c.last_success.desc())
            .label("position"),
        )
        .where(flaky)
        .subquery("latest")
    )
    totals = (
        select(sums, latest.c.ref, latest.c.stage, latest.c.url)
        .join_from(
            sums,
            latest,
            and_(
                latest.c.source == sums.c.source,
                latest.c.project == sums.c.project,
                latest.c.name == sums.c.name,
                latest.c.position == 1,
            ),
        )
        .order_by(sums.c.flaky_runs.desc(), sums.c.source, sums.c.project, sums.c.name)
    )
    if limit is not None:
        totals = totals.limit(limit)
    return [
        FlakyJob(
            source=row["source"],
            provider=row["provider"],
            project=row["project"],
            job=row["name"],
            ref=row["ref"] or "",
            stage=row["stage"],
            failures=int(row["failures"]),
            flaky_runs=int(row["flaky_runs"]),
            commits=int(row["commits"]),
            flaky_commits=int(row["flaky_commits"]),
            last_seen=row["last_seen"],
            url=row["url"],
        )
        for row in (await conn.execute(totals)).mappings()
    ]


# -- time to recovery -------------------------------------------------------------------------


@dataclass(frozen=True)
class RedPeriod:
    """From the finish of the failed run that turned the ref red to that of the success that
    turned it green again (None: still red)."""

    began: datetime
    ended: datetime | None

    def length(self, now: datetime) -> timedelta:
        return max((self.ended or now) - self.began, timedelta(0))


@dataclass(frozen=True)
class RecoveryStats:
    """A ref's breaks over a window: the red periods that began in it (the first one may have
    begun before the window if the window's first decisive run failed: it then counts from that
    run), their mean and median time to recovery (completed periods only), the longest red
    period (a current one included, up to now) and the share of decisive runs that failed."""

    ref: RefKey
    decided: int = 0
    failed: int = 0
    periods: tuple[RedPeriod, ...] = field(default_factory=tuple)
    now: datetime | None = None

    @property
    def breaks(self) -> int:
        return len(self.periods)

    @property
    def recoveries(self) -> list[float]:
        return [p.length(p.ended).total_seconds() for p in self.periods if p.ended is not None]

    @property
    def mean_seconds(self) -> float | None:
        done = self.recoveries
        return sum(done) / len(done) if done else None

    @property
    def median_seconds(self) -> float | None:
        done = self.recoveries
        return statistics.median(done) if done else None

    @property
    def longest_seconds(self) -> float | None:
        if not self.periods:
            return None
        now = self.now or max(p.ended or p.began for p in self.periods)
        return max(p.length(now).total_seconds() for p in self.periods)

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.decided if self.decided else None

    @property
    def red_since(self) -> datetime | None:
        """When the current red period began (None: green at the window's end)."""
        if self.periods and self.periods[-1].ended is None:
            return self.periods[-1].began
        return None


def red_periods(changes: Iterable[tuple[str, datetime]]) -> list[RedPeriod]:
    """The red periods of a ref from its colour changes (status, moment), oldest first."""
    periods: list[RedPeriod] = []
    began: datetime | None = None
    for status, moment in changes:
        if status == "failed" and began is None:
            began = moment
        elif status == "success" and began is not None:
            periods.append(RedPeriod(began, max(moment, began)))
            began = None
    if began is not None:
        periods.append(RedPeriod(began, None))
    return periods


async def recovery_stats(
    conn: AsyncConnection,
    *,
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
    source: str | Match | None = None,
    project: str | Match | None = None,
    ref: str | Match | None = None,
) -> dict[RefKey, RecoveryStats]:
    """Per ref with a decisive run created in the last `window`: its `RecoveryStats`."""
    window = min(max(window, timedelta(seconds=1)), MAX_WINDOW)
    where = [
        *_window_filters(now - window, source, project, ref),
        runs.c.status.in_([_SUCCESS, _FAILED]),
    ]
    key = (runs.c.source, runs.c.project, runs.c.ref_key)
    moment = func.coalesce(
        runs.c.finished_at, runs.c.created_at, runs.c.started_at, runs.c.updated_at
    )
    ordered = (
        select(
            *key,
            runs.c.status,
            moment.label("moment"),
            _rerun_failed_at().label("rerun_failed_at"),
            func.lag(runs.c.status)
            .over(partition_by=key, order_by=(runs.c.order_time, runs.c.run_id))
            .label("before"),
            func.row_number()
            .over(partition_by=key, order_by=(runs.c.order_time, runs.c.run_id))
            .label("position"),
        )
        .where(*where)
        .subquery("ordered")
    )
    changes = (
        select(
            ordered.c.source,
            ordered.c.project,
            ordered.c.ref_key,
            ordered.c.status,
            ordered.c.moment,
            ordered.c.rerun_failed_at,
        )
        .where(
            ordered.c.before.is_(None)
            | (ordered.c.before != ordered.c.status)
            | ordered.c.rerun_failed_at.is_not(None)
        )
        .order_by(ordered.c.source, ordered.c.project, ordered.c.ref_key, ordered.c.position)
    )
    counts = (
        select(
            *key,
            func.count().label("decided"),
            func.sum(case((runs.c.status == _FAILED, 1), else_=0)).label("failed"),
        )
        .where(*where)
        .group_by(*key)
    )
    per_ref: dict[RefKey, list[tuple[str, datetime]]] = {}
    reruns: dict[RefKey, int] = {}
    for row in await conn.execute(changes):
        ref_key = RefKey(row[0], row[1], row[2])
        moments = per_ref.setdefault(ref_key, [])
        if row[5] is not None:
            # The run's earlier attempt ended red before this attempt passed: the ref was red
            # from then on, though the run's row now says success (see `_rerun_failed_at`).
            moments.append(("failed", min(row[5], row[4])))
            reruns[ref_key] = reruns.get(ref_key, 0) + 1
        moments.append((row[3], row[4]))
    result: dict[RefKey, RecoveryStats] = {}
    for row in await conn.execute(counts):
        ref_key = RefKey(row[0], row[1], row[2])
        extra = reruns.get(ref_key, 0)
        result[ref_key] = RecoveryStats(
            ref=ref_key,
            decided=int(row[3]) + extra,
            failed=int(row[4] or 0) + extra,
            periods=tuple(red_periods(per_ref.get(ref_key, []))),
            now=now,
        )
    return result


def _rerun_failed_at() -> ColumnElement[datetime]:
    """For a successful run on a later attempt (a GitHub re-run keeps the run id and raises
    `run_attempt`; its row is overwritten with the passing attempt), when its earlier attempt
    ended red: the latest end of a failed job (not allowed to fail) of an earlier attempt, which
    the store keeps (GitHub jobs are listed with `filter=all`). Else NULL. Only rows on a later
    attempt evaluate the lookup, through the jobs' unique key `(source, project, run_id, ...)`.

    GitLab retries keep `attempt` 1 (a retried job is a new job id in the same pipeline) and
    Jenkins rebuilds are new runs, so neither needs this."""
    failed_attempt = (
        select(func.max(func.coalesce(jobs.c.finished_at, jobs.c.updated_at)))
        .where(
            jobs.c.source == runs.c.source,
            jobs.c.project == runs.c.project,
            jobs.c.run_id == runs.c.run_id,
            jobs.c.attempt < runs.c.attempt,
            jobs.c.status == _FAILED,
            jobs.c.allow_failure.is_(False),
        )
        .correlate(runs)
        .scalar_subquery()
    )
    return case((and_(runs.c.status == _SUCCESS, runs.c.attempt > 1), failed_attempt))


def recovery_fields(stats: RecoveryStats | None) -> dict[str, object]:
    """The JSON fields of a ref's time to recovery (the API and the project page)."""
    if stats is None:
        return {
            "breaks": 0,
            "mean_recovery_seconds": None,
            "median_recovery_seconds": None,
            "longest_red_seconds": None,
            "failure_rate": None,
        }
    return {
        "breaks": stats.breaks,
        "mean_recovery_seconds": stats.mean_seconds,
        "median_recovery_seconds": stats.median_seconds,
        "longest_red_seconds": stats.longest_seconds,
        "failure_rate": stats.failure_rate,
    }

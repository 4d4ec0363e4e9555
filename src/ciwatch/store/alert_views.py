"""The reads behind what the API, the CLI and the dashboard show of alerting: alerts, each with
the delivery outcome of its newest notice per channel (and the run it is about). Each call is one
read transaction of a `SqlUnits` (the `SqlUnits`); `ciwatch.alerting.views` shapes the answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.alerting.rules import FIRING, RESOLVED
from ciwatch.store.reads import in_parts
from ciwatch.store.tables import alerts, outbox, runs
from ciwatch.store.units import SqlUnits

STATES = (FIRING, RESOLVED)
SENT, FAILED, PENDING = "sent", "failed", "pending"


@dataclass(frozen=True)
class Delivery:
    """The outcome of an alert's newest notice on one channel: `sent` (at `at`), `failed` for
    good (at `at`, with the channel's `error`), or `pending` (due at `at`; `error` is the last
    attempt's error while it is being retried)."""

    channel: str
    event: str | None
    outcome: str
    at: datetime
    attempts: int
    error: str | None

    @property
    def retrying(self) -> bool:
        """Pending after a failed attempt."""
        return self.outcome == PENDING and self.error is not None


@dataclass(frozen=True)
class RunRef:
    """The run an alert is about: its id, and its number and URL when known."""

    run_id: str
    number: int | None = None
    url: str | None = None


@dataclass(frozen=True)
class AlertView:
    """One alert as the dashboard shows it. For a resolved alert `last_seen` is when it was
    resolved; `event` is the kind of its newest notice (None when nothing was queued: no route
    matched, or a silence held it)."""

    rule: str
    event: str | None
    source: str
    project: str
    ref: str
    state: str
    first_seen: datetime
    last_seen: datetime
    last_notified: datetime | None
    run: RunRef | None
    channels: tuple[Delivery, ...]

    @property
    def fingerprint(self) -> str:
        return ":".join((self.rule, self.source, self.project, self.ref))

    @property
    def failed_channels(self) -> tuple[Delivery, ...]:
        return tuple(c for c in self.channels if c.outcome == FAILED)


@dataclass(frozen=True)
class AlertsOverview:
    """The dashboard's alerts page: firing alerts (newest first, at most the limit asked, of
    `firing_total`) and the most recently resolved ones."""

    firing: list[AlertView]
    firing_total: int
    history: list[AlertView]


def _delivery(row: Mapping[Any, Any]) -> Delivery:
    if row["sent_at"] is not None:
        outcome, at = SENT, row["sent_at"]
    elif row["failed_at"] is not None:
        outcome, at = FAILED, row["failed_at"]
    else:
        outcome, at = PENDING, row["next_attempt_at"]
    payload = row["payload"] or {}
    return Delivery(
        row["channel"], payload.get("kind"), outcome, at, row["attempts"], row["last_error"]
    )


def _fingerprint(row: Mapping[Any, Any]) -> str:
    return ":".join((row["rule"], row["source"], row["project"], row["ref"]))


def _notice_run(notice: Mapping[Any, Any] | None) -> RunRef | None:
    """The run a notice's payload carries (a snapshot taken when it was queued)."""
    run = ((notice["payload"] or {}) if notice is not None else {}).get("run")
    if not isinstance(run, Mapping) or not run.get("run_id"):
        return None
    number = run.get("number")
    url = run.get("url")
    return RunRef(
        str(run["run_id"]),
        number if isinstance(number, int) else None,
        url if isinstance(url, str) else None,
    )


def _run_id(row: Mapping[Any, Any]) -> str | None:
    value = (row["payload"] or {}).get("run_id")
    return value if isinstance(value, str) else None


def _run_of(
    row: Mapping[Any, Any],
    latest: Mapping[Any, Any] | None,
    stored: Mapping[tuple[str, str, str], RunRef],
) -> RunRef | None:
    """The run an alert is about (its payload's `run_id`): as stored, else as its newest notice
    carried it, else its id alone."""
    noticed = _notice_run(latest)
    run_id = _run_id(row)
    if run_id is None:
        return noticed
    found = stored.get((row["source"], row["project"], run_id))
    if found is not None:
        return found
    return noticed if noticed is not None and noticed.run_id == run_id else RunRef(run_id)


async def _stored_runs(
    conn: AsyncConnection, keys: Sequence[tuple[str, str, str]]
) -> dict[tuple[str, str, str], RunRef]:
    """Number and URL of the stored runs with these (source, project, run_id) keys, through the
    unique index on that key."""
    query = select(runs.c.source, runs.c.project, runs.c.run_id, runs.c.number, runs.c.url)
    key = tuple_(runs.c.source, runs.c.project, runs.c.run_id)
    return {
        (source, project, run_id): RunRef(run_id, number, url)
        for source, project, run_id, number, url in await in_parts(
            conn, query, key, sorted(set(keys))
        )
    }


async def _views(
    conn: AsyncConnection, query: Select[Any], *, with_runs: bool = False
) -> list[AlertView]:
    """The alerts `query` selects, in its order, each with its newest notice per channel (and,
    `with_runs`, the run it is about)."""
    rows = list((await conn.execute(query)).mappings())
    keys = [_fingerprint(row) for row in rows]
    newest: dict[str, dict[str, Mapping[Any, Any]]] = {key: {} for key in keys}
    unique = sorted(set(keys))
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        notices = select(outbox).where(outbox.c.fingerprint.in_(chunk)).order_by(outbox.c.id)
        for notice in (await conn.execute(notices)).mappings():
            newest[notice["fingerprint"]][notice["channel"]] = notice  # the last one wins
    stored: dict[tuple[str, str, str], RunRef] = {}
    if with_runs:
        wanted = [(r["source"], r["project"], i) for r in rows if (i := _run_id(r)) is not None]
        stored = await _stored_runs(conn, wanted)
    answer = []
    for row, key in zip(rows, keys, strict=True):
        latest = max(newest[key].values(), key=lambda n: n["id"], default=None)
        run = _run_of(row, latest, stored) if with_runs else None
        answer.append(
            AlertView(
                rule=row["rule"],
                event=(latest["payload"] or {}).get("kind") if latest else None,
                source=row["source"],
                project=row["project"],
                ref=row["ref"],
                state=row["state"],
                first_seen=row["first_seen"],
                last_seen=row["last_seen"],
                last_notified=row["last_notified"],
                run=run,
                channels=tuple(_delivery(newest[key][name]) for name in sorted(newest[key])),
            )
        )
    return answer


def _firing_first() -> Select[Any]:
    """Firing alerts first (newest first_seen first), then resolved ones (most recently seen
    first)."""
    firing_first = case((alerts.c.state == FIRING, 0), else_=1)
    return select(alerts).order_by(
        firing_first,
        case((alerts.c.state == FIRING, alerts.c.first_seen), else_=alerts.c.last_seen).desc(),
        alerts.c.id,
    )


async def alert_views(
    store: SqlUnits, *, state: str | None = None, limit: int | None = None
) -> list[AlertView]:
    """Alerts, firing first (newest first_seen first), then resolved ones (most recently seen
    first), at most `limit`; each with its newest notice per channel. `state` keeps only
    `firing` or `resolved` ones (ValueError for another)."""
    if state is not None and state not in STATES:
        raise ValueError(f"unknown alert state {state!r}; use {' or '.join(STATES)}")
    query = _firing_first()
    if state is not None:
        query = query.where(alerts.c.state == state)
    if limit is not None:
        query = query.limit(limit)
    return await store.read("alert view", lambda conn: _views(conn, query))


_COUNT_FIRING = select(func.count()).select_from(alerts).where(alerts.c.state == FIRING)


async def firing_count(store: SqlUnits) -> int:
    """How many alerts are firing: one count over the `alerts` table (one row per fingerprint),
    cheap enough for every dashboard page."""

    async def work(conn: AsyncConnection) -> int:
        return int((await conn.execute(_COUNT_FIRING)).scalar_one())

    return await store.read("alert count", work)


async def alerts_overview(
    store: SqlUnits, *, firing_limit: int, history_limit: int
) -> AlertsOverview:
    """Firing alerts (newest first, at most `firing_limit`) with how many fire in all, and the
    `history_limit` most recently resolved ones; each with its newest notice per channel and
    the run it is about. One read transaction."""
    ordered = _firing_first()
    firing = ordered.where(alerts.c.state == FIRING).limit(firing_limit)
    resolved = ordered.where(alerts.c.state == RESOLVED).limit(history_limit)

    async def work(conn: AsyncConnection) -> AlertsOverview:
        shown = await _views(conn, firing, with_runs=True)
        total = len(shown)
        if total >= firing_limit:
            total = int((await conn.execute(_COUNT_FIRING)).scalar_one())
        history = await _views(conn, resolved, with_runs=True)
        return AlertsOverview(shown, total, history)

    return await store.read("alerts overview", work)

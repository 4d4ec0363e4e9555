"""What `/readyz` checks, and the periodic store write probe behind it.

Ready means: the store answers a read, its schema is at the head migration, the last write probe
committed (a read-only SQLite file or a PostgreSQL standby answers reads but refuses every
write), and no supervised loop is down (`supervisor.py`). `/healthz` stays liveness only.

The write probe is one small upsert (the process's `health:` lease, `store/leases.py`) every
`PROBE_INTERVAL` seconds, run by `serve`; `/readyz` reads its last result, so a probe request
costs no write. Until the first probe has run the store counts as writable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from ciwatch.clock import Clock
from ciwatch.errors import StoreError
from ciwatch.store.base import LeaseStore, RunStore

log = logging.getLogger("ciwatch.health")

PROBE_INTERVAL = 10.0
PROBE_PREFIX = "health:"


@dataclass
class StoreHealth:
    """The last write probe's result."""

    writable: bool = True
    error: str | None = None
    # When the probes began to fail (None while writes work): for the store's unhealthy alert.
    unwritable_since: datetime | None = None


@dataclass(frozen=True)
class Problem:
    """One failed readiness check: which, and what to tell the operator."""

    check: str
    message: str


async def probe_once(store: LeaseStore, health: StoreHealth, holder: str, now: datetime) -> None:
    """Write the probe row; record the outcome in `health` (logged when it changes)."""
    try:
        ttl = timedelta(seconds=PROBE_INTERVAL * 6)
        await store.acquire_lease(PROBE_PREFIX + holder, holder, now, ttl)
    except StoreError as exc:
        if health.writable:
            log.error("store: the write probe failed: %s", exc)
            health.unwritable_since = now
        health.writable, health.error = False, str(exc)
    else:
        if not health.writable:
            log.warning("store: writes work again")
        health.writable, health.error, health.unwritable_since = True, None, None


async def probe_loop(
    store: LeaseStore,
    health: StoreHealth,
    clock: Clock,
    holder: str,
    stop: asyncio.Event,
    *,
    interval: float = PROBE_INTERVAL,
) -> None:
    """Probe every `interval` seconds until `stop`; then drop the probe row."""
    while not stop.is_set():
        await probe_once(store, health, holder, clock.now())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval)
    try:
        await store.release_leases(holder, prefix=PROBE_PREFIX)
    except StoreError as exc:
        log.info("store: could not drop the write probe row: %s", exc)


async def readiness(store: RunStore, health: StoreHealth, down: dict[str, str]) -> list[Problem]:
    """Every failed readiness check (empty when ready)."""
    problems: list[Problem] = []
    try:
        await store.ping()
        current = await store.schema_current()
    except StoreError:
        problems.append(Problem("store", "the database did not answer"))
    else:
        if not current:
            problems.append(Problem("schema", "run `ciwatch db upgrade`"))
        if not health.writable:
            problems.append(Problem("store_writes", "the database refuses writes"))
    for name, why in down.items():
        # The probe is unauthenticated: the error's class only (a StoreError's text names the
        # database's host, name and user); the server log has the whole reason.
        kind = why.split(":", 1)[0]
        problems.append(Problem("task", f"background task {name} is down: {kind}"))
    return problems

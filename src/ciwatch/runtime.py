"""The composition root (docs/architecture.md#configuration): settings → store, providers,
scheduler, alerting, ingest and the metrics snapshot, and the shared self-metrics.

Every other part takes what it needs from a `Runtime`: `cli/serve.py` starts its loops,
`create_app` serves its store, snapshot and ingest, `ciwatch poll --once` runs its scheduler once,
the receivers store through its ingest. Nothing here runs at import time; `Runtime.open` builds
everything from arguments, the alerting parts and the snapshot are built on first use (a
one-shot command never needs them) and `close` releases it all (HTTP sessions, database pool).
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import quote

from ciwatch.clock import Clock, SystemClock
from ciwatch.config import Settings
from ciwatch.health import StoreHealth
from ciwatch.ingest import Ingest
from ciwatch.providers.base import CommitRangeReader, Provider
from ciwatch.providers.registry import build_provider
from ciwatch.scheduler import Cadence, Scheduler
from ciwatch.scheduler.loop import PollLeases
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import Store, open_store
from ciwatch.supervisor import Supervisor

if TYPE_CHECKING:
    from ciwatch.alerting.delivery import DeliveryWorkers
    from ciwatch.alerting.engine import AlertEngine
    from ciwatch.alerting.health import StoreAlarm
    from ciwatch.channels.base import Channel
    from ciwatch.metrics import SnapshotCache

# Seconds between evaluations of every project/ref by the alert engine (a changed ref is
# evaluated at once): what bounds the delay of the time-based rules and of other replicas' runs.
ALERT_INTERVAL = 15.0
# How old the `/metrics` snapshot may be, and its run counts (seconds); `create_app` may
# override them.
SNAPSHOT_MAX_AGE = 5.0
SNAPSHOT_SLOW_MAX_AGE = 60.0


def instance_id() -> str:
    """This process among replicas: host, pid and a random part (leases, probes)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass
class Alerting:
    """The alerting parts of a runtime: the engine, one delivery worker per channel (sharing
    `workers`), the store's own alarm (sent from memory) and the channels they send through."""

    engine: AlertEngine
    workers: DeliveryWorkers
    alarm: StoreAlarm
    channels: Mapping[str, Channel]


@dataclass
class Runtime:
    settings: Settings
    store: Store
    clock: Clock
    metrics: CollectionMetrics
    providers: dict[str, Provider] = field(default_factory=dict)
    scheduler: Scheduler | None = None
    supervisor: Supervisor = field(init=False)
    store_health: StoreHealth = field(default_factory=StoreHealth)
    instance: str = field(default_factory=instance_id)
    # What receivers and push reports store through (web/hooks.py, web/report.py).
    ingest: Ingest = field(init=False)
    _snapshot: SnapshotCache | None = field(default=None, init=False, repr=False)
    _alerting: Alerting | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.metrics)
        self.ingest = Ingest(self)

    @classmethod
    async def open(
        cls, settings: Settings, *, clock: Clock | None = None, store: Store | None = None
    ) -> Runtime:
        """Open the store (migrations applied) and build a provider per source."""
        clock = clock or SystemClock()
        metrics = CollectionMetrics()
        own_store = store is None
        store = store or open_store(settings.database)
        try:
            await store.upgrade()
        except BaseException:
            if own_store:
                await store.close()
            raise
        providers = {
            source.name: build_provider(source, settings.collection, clock, metrics)
            for source in settings.sources
        }
        cadence = {
            source.name: Cadence(
                interval=source.interval.total_seconds(),
                active_interval=source.active_interval.total_seconds(),
            )
            for source in settings.sources
        }
        instance = instance_id()
        leases = None
        if settings.collection.partition:
            leases = PollLeases(
                store,
                holder=instance,
                intervals={name: c.interval for name, c in cadence.items()},
            )
        runtime = cls(settings, store, clock, metrics, providers, instance=instance)
        runtime.scheduler = Scheduler(
            providers,
            store,
            cadence=cadence,
            concurrency=settings.collection.concurrency,
            jitter=settings.collection.jitter,
            discovery_interval=settings.collection.discovery_interval.total_seconds(),
            clock=clock,
            metrics=metrics,
            leases=leases,
            supervisor=runtime.supervisor,
        )
        return runtime

    @property
    def snapshot(self) -> SnapshotCache:
        """The `/metrics` snapshot of the store, refreshed in the background (built once)."""
        if self._snapshot is None:
            from ciwatch.metrics import SnapshotCache

            self._snapshot = SnapshotCache(
                self.store,
                self.clock.now,
                max_age=SNAPSHOT_MAX_AGE,
                slow_max_age=SNAPSHOT_SLOW_MAX_AGE,
                on_error=partial(self.supervisor.item_failed, "metrics-snapshot"),
                flaky_window=self.settings.flaky.window,
                recovery_window=self.settings.recovery.window,
            )
        return self._snapshot

    @property
    def alerting(self) -> Alerting:
        """The alert engine, the delivery workers and the store alarm over this runtime's store,
        channels and clock (built once; `cli/serve.run_alerting` runs them)."""
        if self._alerting is None:
            self._alerting = self._build_alerting()
        return self._alerting

    def _build_alerting(self) -> Alerting:
        from ciwatch.alerting.delivery import DeliveryWorkers
        from ciwatch.alerting.engine import AlertEngine, route_channels
        from ciwatch.alerting.health import SELF, STORE, StoreAlarm
        from ciwatch.alerting.people import People
        from ciwatch.channels import build_channel
        from ciwatch.web.paths import project_path

        settings = self.settings
        base = str(settings.server.base_url).rstrip("/") if settings.server.base_url else None

        def dashboard_url(source: str, project: str, ref: str) -> str:
            return f"{base}{project_path(source, project)}?ref={quote(ref, safe='')}"

        channels = {c.name: build_channel(c) for c in settings.alerts.channels}
        workers = DeliveryWorkers(
            self.store,
            channels,
            self.clock,
            metrics=self.metrics,
            supervisor=self.supervisor,
            zone=settings.zone,
        )
        engine = AlertEngine(
            self.store,
            settings.alerts,
            self.clock,
            interval=ALERT_INTERVAL,
            dashboard_url=dashboard_url if base else None,
            on_queued=workers.wake,
            supervisor=self.supervisor,
            people=People(settings.people),
            flaky_window=settings.flaky.window,
            # The providers that list the commits since a break's last green run.
            commit_ranges={
                name: provider
                for name, provider in self.providers.items()
                if isinstance(provider, CommitRangeReader)
            },
        )
        alarm = StoreAlarm(
            channels,
            route_channels(settings.alerts.routes, "unhealthy", SELF, STORE, ""),
            instance=self.instance,
            unhealthy_after=settings.alerts.unhealthy_after,
        )
        return Alerting(engine, workers, alarm, channels)

    async def close(self) -> None:
        """Release everything this runtime opened: channels, provider sessions, the store."""
        if self._alerting is not None:
            for channel in self._alerting.channels.values():
                await channel.close()
        for provider in self.providers.values():
            await provider.close()
        await self.store.close()

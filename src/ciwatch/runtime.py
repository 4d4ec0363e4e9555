"""The composition root: settings → store, providers, scheduler and the shared self-metrics.

Nothing here runs at import time; `Runtime.open` builds everything from arguments and
`close` releases it (HTTP sessions, database pool).
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field

from ciwatch.clock import Clock, SystemClock
from ciwatch.config import Settings
from ciwatch.health import StoreHealth
from ciwatch.providers.base import Provider
from ciwatch.providers.registry import build_provider
from ciwatch.scheduler import Cadence, Scheduler
from ciwatch.scheduler.loop import PollLeases
from ciwatch.selfmetrics import CollectionMetrics
from ciwatch.store import SqlStore, Store, open_store
from ciwatch.supervisor import Supervisor


def instance_id() -> str:
    """This process among replicas: host, pid and a random part (leases, probes)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


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

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(self.metrics)

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
        if settings.collection.partition and isinstance(store, SqlStore):
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

    async def close(self) -> None:
        for provider in self.providers.values():
            await provider.close()
        await self.store.close()

"""Alerting (see docs/alerting.md): pure rules, the engine that turns ref states into alert
changes and outbox rows, silences, and the delivery workers that send the outbox through the
channels.

Wiring::

    engine = AlertEngine(store, settings.alerts, clock)
    workers = DeliveryWorkers(store, {c.name: build_channel(c) for c in settings.alerts.channels},
                              clock, metrics=metrics)
    await asyncio.gather(engine.run(stop), workers.run(stop))

The names below load lazily (`ciwatch.lazy`): `alerting.rules` stays pure on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ciwatch.lazy import exports

if TYPE_CHECKING:
    from ciwatch.alerting.delivery import DeliveryWorkers
    from ciwatch.alerting.engine import AlertEngine, route_channels

__all__ = ["AlertEngine", "DeliveryWorkers", "route_channels"]
__getattr__ = exports(
    __name__,
    {"AlertEngine": "engine", "DeliveryWorkers": "delivery", "route_channels": "engine"},
)

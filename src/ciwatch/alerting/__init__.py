"""Alerting (DESIGN §7): pure rules, the engine that turns ref states into alert changes and
outbox rows, silences, and the delivery workers that send the outbox through the channels.

Wiring (see docs/alerting.md)::

    engine = AlertEngine(store, settings.alerts, clock)
    workers = DeliveryWorkers(store, {c.name: build_channel(c) for c in settings.alerts.channels},
                              clock, metrics=metrics)
    await asyncio.gather(engine.run(stop), workers.run(stop))
"""

from __future__ import annotations

from ciwatch.alerting.delivery import DeliveryWorkers
from ciwatch.alerting.engine import AlertEngine, route_channels

__all__ = ["AlertEngine", "DeliveryWorkers", "route_channels"]

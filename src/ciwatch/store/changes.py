"""In-process news of which project/refs a write changed, for the alert engine and the metrics
snapshot.

`SqlStore.changes` publishes, after each committed run upsert, the refs whose runs changed. A
subscriber (the alert engine) collects them between two evaluations, so a webhook that breaks a
ref is evaluated at once instead of at the next tick. Only this process's writes are seen: other
replicas' changes reach the engine through its periodic full evaluation.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

from ciwatch.domain import RefKey


class RefSubscription:
    """The refs changed since the last `take()`, and an event set while there are any."""

    def __init__(self) -> None:
        self._refs: set[RefKey] = set()
        self._event = asyncio.Event()
        # How many times refs were added: a reader notes it to know whether what it read
        # includes every change published before some moment.
        self.added = 0

    def add(self, refs: Iterable[RefKey]) -> None:
        self.added += 1
        self._refs.update(refs)
        if self._refs:
            self._event.set()

    @property
    def pending(self) -> bool:
        """Whether a ref changed since the last `take()`."""
        return bool(self._refs)

    def take(self) -> set[RefKey]:
        """The changed refs collected so far, emptied."""
        refs, self._refs = self._refs, set()
        self._event.clear()
        return refs

    async def wait(self) -> None:
        """Return once a ref changed (at once when one is waiting to be taken)."""
        await self._event.wait()


class RefChanges:
    """Fans out the refs changed by this process's writes to every subscription."""

    def __init__(self) -> None:
        self._subscriptions: list[RefSubscription] = []

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def subscribe(self) -> RefSubscription:
        subscription = RefSubscription()
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: RefSubscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    def publish(self, refs: Iterable[RefKey]) -> None:
        changed = frozenset(refs)
        if not changed:
            return
        for subscription in self._subscriptions:
            subscription.add(changed)

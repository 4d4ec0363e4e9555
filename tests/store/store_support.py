"""Helpers for the store tests: a store usable from synchronous (hypothesis) tests."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from ciwatch.store import SqlStore, open_store
from ciwatch.store.tables import metadata

T = TypeVar("T")


class BlockingStore:
    """A store driven from synchronous code (hypothesis `@given` tests): each call runs on a
    private event loop kept for the whole module, so one engine serves every example."""

    def __init__(self, url: str) -> None:
        self.runner = asyncio.Runner(loop_factory=asyncio.new_event_loop)
        self.store = open_store(url)
        self.run(self.store.upgrade())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    def clear(self) -> None:
        """Empty every table (between hypothesis examples)."""
        self.run(clear_tables(self.store))

    def close(self) -> None:
        self.run(self.store.close())
        self.runner.close()


async def clear_tables(store: SqlStore) -> None:
    """Delete every row of every table."""
    async with store._engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(table.delete())

"""Persistence (see docs/storage.md): the store protocols and their SQL implementation.

`open_store(url)` gives a `SqlStore` for SQLite or PostgreSQL; code elsewhere depends on the
protocols of `store/base.py` only (`RunStore`, `AlertStore`, `LeaseStore`, `ReliabilityStore`,
`StatsStore`, and `Store`, all of them). The names below load lazily (`ciwatch.lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ciwatch.lazy import exports

if TYPE_CHECKING:
    from ciwatch.store.base import (
        AlertStore,
        LeaseStore,
        ReliabilityStore,
        RunPage,
        RunStore,
        StatsStore,
        Store,
    )
    from ciwatch.store.sql import SqlStore, open_store

__all__ = [
    "AlertStore",
    "LeaseStore",
    "ReliabilityStore",
    "RunPage",
    "RunStore",
    "SqlStore",
    "StatsStore",
    "Store",
    "open_store",
]
__getattr__ = exports(
    __name__,
    {
        "AlertStore": "base",
        "LeaseStore": "base",
        "ReliabilityStore": "base",
        "RunPage": "base",
        "RunStore": "base",
        "SqlStore": "sql",
        "StatsStore": "base",
        "Store": "base",
        "open_store": "sql",
    },
)

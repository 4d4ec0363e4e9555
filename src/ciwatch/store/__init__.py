"""Persistence (see docs/storage.md): the Store protocol and its SQL implementation.

`open_store(url)` gives a `SqlStore` for SQLite or PostgreSQL; code elsewhere depends on the
`Store` protocol only. The names below load lazily (`ciwatch.lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ciwatch.lazy import exports

if TYPE_CHECKING:
    from ciwatch.store.base import RunPage, Store
    from ciwatch.store.sql import SqlStore, open_store

__all__ = ["RunPage", "SqlStore", "Store", "open_store"]
__getattr__ = exports(
    __name__, {"RunPage": "base", "SqlStore": "sql", "Store": "base", "open_store": "sql"}
)

"""Persistence (DESIGN §6): the Store protocol and its SQL implementation.

`open_store(url)` gives a `SqlStore` for SQLite or PostgreSQL; code elsewhere depends on the
`Store` protocol only.
"""

from ciwatch.store.base import RunPage, Store
from ciwatch.store.sql import SqlStore, open_store

__all__ = ["RunPage", "SqlStore", "Store", "open_store"]

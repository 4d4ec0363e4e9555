"""`SqlUnits`: what the query modules inside `ciwatch.store` need of the SQL store.

A unit of work is a function of one connection run in one transaction: `read` for queries,
`write` for changes (retried on a PostgreSQL deadlock or serialization failure, so it must be
safe to re-run); errors come back as `StoreError` naming `what`. `dialect` is "sqlite" or
"postgresql", for the statements that differ. Only modules of this package take a `SqlUnits`:
code outside it asks the store for what it wants through the protocols of `store/base.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")


class SqlUnits(Protocol):
    """Read and write units of work over one SQL database (`SqlStore`)."""

    @property
    def dialect(self) -> str: ...

    async def read(self, what: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T: ...

    async def write(self, what: str, work: Callable[[AsyncConnection], Awaitable[T]]) -> T: ...

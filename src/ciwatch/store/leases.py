"""Leases (docs/architecture.md#several-replicas): a named right that one holder has until it
expires.

Replicas sharing one database divide the polling with them: a replica polls a target only while
it holds the target's lease. The holder renews it at each poll; another replica takes it only
once it has expired, so a target stays with one replica while that replica lives (its ETags and
known runs stay useful) and moves on when it dies.

Taking or renewing is one statement on both engines, `INSERT ... ON CONFLICT (name) DO UPDATE
... WHERE <held by me or expired> RETURNING`: the row comes back only to the writer whose
condition held, and the row lock (PostgreSQL) or the single writer (SQLite) makes two takers at
once impossible.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import case, delete, literal, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.store.tables import leases
from ciwatch.store.units import SqlUnits


async def acquire(store: SqlUnits, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew the lease `name` for `holder` until `now + ttl`; False while another
    holder's lease on it has not expired."""
    insert = postgresql.insert if store.dialect == "postgresql" else sqlite.insert
    values = insert(leases).values(name=name, holder=holder, expires_at=now + ttl)
    statement = values.on_conflict_do_update(
        index_elements=["name"],
        set_={"holder": values.excluded.holder, "expires_at": values.excluded.expires_at},
        where=(leases.c.holder == holder) | (leases.c.expires_at <= now),
    ).returning(leases.c.id)

    async def work(conn: AsyncConnection) -> bool:
        return (await conn.execute(statement)).first() is not None

    return await store.write("lease", work)


async def renew(
    store: SqlUnits, names: Sequence[str], holder: str, expires_at: datetime
) -> set[str]:
    """Renew, in one transaction, the leases `names` that `holder` still holds, until
    `expires_at` (a lease already held longer keeps its end); the names renewed. A lease that
    another holder took meanwhile is not among them: the caller has lost it."""
    if not names:
        return set()
    wanted = list(dict.fromkeys(names))
    # Typed as the column, so that SQLite stores it in the column's text form: an untyped value
    # in CASE was stored as "YYYY-MM-DD HH:MM:SS", which sorts before every stored
    # "YYYY-MM-DDTHH:MM:SS+00:00" and made a renewed lease look expired to other holders.
    until = literal(expires_at, leases.c.expires_at.type)

    async def work(conn: AsyncConnection) -> set[str]:
        renewed: set[str] = set()
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            statement = (
                update(leases)
                .where((leases.c.holder == holder) & leases.c.name.in_(part))
                .values(
                    expires_at=case(
                        (leases.c.expires_at > until, leases.c.expires_at),
                        else_=until,
                    )
                )
                .returning(leases.c.name)
            )
            renewed.update(name for (name,) in await conn.execute(statement))
        return renewed

    return await store.write("lease renewal", work)


async def release(store: SqlUnits, holder: str, *, prefix: str = "") -> int:
    """Give up every lease of `holder` (whose name starts with `prefix`), so that others may
    take them at once; returns how many."""
    statement = delete(leases).where(
        (leases.c.holder == holder) & leases.c.name.startswith(prefix, autoescape=True)
    )

    async def work(conn: AsyncConnection) -> int:
        return (await conn.execute(statement)).rowcount

    return await store.write("lease release", work)

"""Silences (docs/alerting.md): stored matchers that mute alerts until a time. Each call is
one transaction of a `SqlUnits` (the `SqlUnits`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ciwatch.store.tables import silences
from ciwatch.store.units import SqlUnits


@dataclass(frozen=True)
class SilenceRow:
    id: int
    matchers: dict[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str | None
    comment: str | None


def silence_from_row(row: Mapping[Any, Any]) -> SilenceRow:
    """A `silences` row as a SilenceRow."""
    return SilenceRow(
        row["id"],
        dict(row["matchers"]),
        row["starts_at"],
        row["ends_at"],
        row["created_by"],
        row["comment"],
    )


async def add_silence(
    store: SqlUnits,
    matchers: Mapping[str, str],
    starts_at: datetime,
    ends_at: datetime,
    *,
    created_by: str | None = None,
    comment: str | None = None,
) -> int:
    """Store a silence; returns its id."""
    statement = (
        insert(silences)
        .values(
            matchers=dict(matchers),
            starts_at=starts_at,
            ends_at=ends_at,
            created_by=created_by,
            comment=comment,
        )
        .returning(silences.c.id)
    )

    async def work(conn: AsyncConnection) -> int:
        return int((await conn.execute(statement)).scalar_one())

    return await store.write("silence add", work)


async def silences_in(
    conn: AsyncConnection, *, active_at: datetime | None = None
) -> list[SilenceRow]:
    """`list_silences` within a transaction."""
    query = select(silences).order_by(silences.c.id)
    if active_at is not None:
        query = query.where((silences.c.starts_at <= active_at) & (silences.c.ends_at > active_at))
    return [silence_from_row(row) for row in (await conn.execute(query)).mappings()]


async def list_silences(store: SqlUnits, *, active_at: datetime | None = None) -> list[SilenceRow]:
    """Every silence, or those in force at `active_at`, by id."""
    return await store.read("silence list", lambda conn: silences_in(conn, active_at=active_at))


async def delete_silence(store: SqlUnits, silence_id: int) -> bool:
    """Delete a silence; False when there was none with that id."""

    async def work(conn: AsyncConnection) -> bool:
        result = await conn.execute(delete(silences).where(silences.c.id == silence_id))
        return bool(result.rowcount)

    return await store.write("silence delete", work)


async def get_silence(store: SqlUnits, silence_id: int) -> SilenceRow | None:
    """One silence by id, or None."""
    query = select(silences).where(silences.c.id == silence_id)

    async def work(conn: AsyncConnection) -> SilenceRow | None:
        row = (await conn.execute(query)).mappings().first()
        return None if row is None else silence_from_row(row)

    return await store.read("silence get", work)


async def expire_silence(store: SqlUnits, silence_id: int, now: datetime) -> SilenceRow | None:
    """End a silence at `now` (one not yet started ends before it starts); one already over is
    left as it is. Returns the silence afterwards, or None when there is none with that id."""
    query = select(silences).where(silences.c.id == silence_id)

    async def work(conn: AsyncConnection) -> SilenceRow | None:
        row = (await conn.execute(query)).mappings().first()
        if row is None:
            return None
        found = silence_from_row(row)
        if found.ends_at <= now:
            return found
        starts_at = min(found.starts_at, now)
        await conn.execute(
            update(silences)
            .where(silences.c.id == silence_id)
            .values(starts_at=starts_at, ends_at=now)
        )
        return SilenceRow(found.id, found.matchers, starts_at, now, found.created_by, found.comment)

    return await store.write("silence expire", work)

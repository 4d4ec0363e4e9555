"""Column types that store and order the same way on SQLite and PostgreSQL.

The migrations import these types, so they must stay backwards compatible: change what a type
stores only together with a migration that rewrites the existing rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator, TypeEngine


class UTCDateTime(TypeDecorator[datetime]):
    """An aware datetime, always returned in UTC.

    PostgreSQL keeps it as `timestamptz`. SQLite has no datetime type: the value is stored as
    fixed-width ISO-8601 text in UTC with microseconds (`2026-01-02T03:04:05.000006+00:00`),
    so comparing and ordering the text compares and orders the instants, in indexes too.
    Naive datetimes are refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime cannot be stored: {value!r}")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.isoformat(timespec="microseconds")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if isinstance(value, datetime) and value.tzinfo is UTC:
            return value  # what both drivers give for what we store: no copy needed
        if not isinstance(value, datetime):
            raise TypeError(f"not a datetime from the database: {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def key_text() -> TypeEngine[str]:
    """Text compared byte by byte on both engines, the way Python compares `str`.

    Used for natural-key columns and versions: `state.ref_sort_key` orders run ids with Python's
    code-point order, keyset cursors rely on the database agreeing, and the version strings must
    compare exactly as `state.version_key` does. SQLite's default BINARY collation already does;
    PostgreSQL needs `COLLATE "C"` whatever the database's locale.
    """
    return Text().with_variant(Text(collation="C"), "postgresql")


def json_type() -> TypeEngine[Any]:
    """JSON text on SQLite, `jsonb` on PostgreSQL."""
    return JSON().with_variant(JSONB(), "postgresql")

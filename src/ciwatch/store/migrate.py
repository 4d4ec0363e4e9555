"""Alembic, driven from the package: no alembic.ini is needed at run time.

The functions here are synchronous and take a synchronous Connection: call them through
`AsyncConnection.run_sync`, inside the caller's transaction.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

MIGRATIONS = Path(__file__).with_name("migrations")

# Any constant: PostgreSQL advisory lock key that serialises replicas upgrading at once.
_UPGRADE_LOCK = 0x63697761746368


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config for the packaged migrations, bound to `connection` when given."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def head_revisions() -> frozenset[str]:
    """The head revision(s) of the packaged migration scripts."""
    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


def upgrade(connection: Connection) -> None:
    """Apply every pending migration in the connection's transaction (idempotent)."""
    if connection.dialect.name == "postgresql":
        # Two replicas starting together must not both create the tables.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
    command.upgrade(alembic_config(connection), "head")


def current_revisions(connection: Connection) -> frozenset[str]:
    """The revision(s) the database is at; empty when it was never migrated."""
    return frozenset(MigrationContext.configure(connection).get_current_heads())


def is_current(connection: Connection) -> bool:
    """True when the database is at the head of the packaged migrations."""
    return current_revisions(connection) == head_revisions()

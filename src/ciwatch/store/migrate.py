"""Alembic, driven from the package: no alembic.ini is needed at run time.

The functions here are synchronous and take a synchronous Connection: call them through
`AsyncConnection.run_sync`, inside the caller's transaction.

Alembic itself (with Mako and Pygments: about 12 MB and a tenth of a second of imports) is
imported only when a migration must run: every `poll --once` and every start opens the store
and asks for an upgrade, and a database already at the head needs none. The packaged heads are
read from the scripts' own `revision` and `down_revision` lines (`packaged_heads`; a test holds
them equal to Alembic's), the database's from its `alembic_version` table.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")

# Any constant: PostgreSQL advisory lock key that serialises replicas upgrading at once.
_UPGRADE_LOCK = 0x63697761746368
# Alembic's default version table (migrations/env.py names no other).
_VERSION_TABLE = "alembic_version"
_REVISION = re.compile(r"^revision\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=\n]*)?=\s*(.+?)\s*$", re.MULTILINE)
_STAMPED = text("SELECT version_num FROM alembic_version")
_QUOTED = re.compile(r"""["']([^"'\\]+)["']""")


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config for the packaged migrations, bound to `connection` when given."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def head_revisions() -> frozenset[str]:
    """The head revision(s) of the packaged migration scripts, as Alembic reads them."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())


@cache
def packaged_heads() -> frozenset[str] | None:
    """The head revision(s) of the packaged scripts from their `revision = "…"` and
    `down_revision = "…"` lines, without Alembic; None when a script says it any other way
    (a merge's tuple, no such line): then only Alembic can tell."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        revision, down = _REVISION.findall(source), _DOWN_REVISION.findall(source)
        if len(revision) != 1 or len(down) != 1:
            return None
        own = _QUOTED.fullmatch(revision[0])
        parent = _QUOTED.fullmatch(down[0])
        if own is None or (parent is None and down[0] != "None"):
            return None
        revisions.add(own.group(1))
        if parent is not None:
            parents.add(parent.group(1))
    return frozenset(revisions - parents) or None


def _at_head(connection: Connection) -> bool:
    """True when the database's version table names exactly the packaged heads (cheap: no
    Alembic). False when it cannot tell: then Alembic decides."""
    heads = packaged_heads()
    if heads is None or not inspect(connection).has_table(_VERSION_TABLE):
        return False
    stamped = connection.execute(_STAMPED).scalars()
    return frozenset(stamped) == heads


def upgrade(connection: Connection) -> None:
    """Apply every pending migration in the connection's transaction (idempotent)."""
    if connection.dialect.name == "postgresql":
        # Two replicas starting together must not both create the tables.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
    if _at_head(connection):
        return
    from alembic import command

    command.upgrade(alembic_config(connection), "head")


def current_revisions(connection: Connection) -> frozenset[str]:
    """The revision(s) the database is at; empty when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    return frozenset(MigrationContext.configure(connection).get_current_heads())


def is_current(connection: Connection) -> bool:
    """True when the database is at the head of the packaged migrations."""
    return _at_head(connection) or current_revisions(connection) == head_revisions()

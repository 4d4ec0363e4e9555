"""Targets remember since when they are unhealthy (for `alerts.unhealthy_after`).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ciwatch.store.coltypes import UTCDateTime

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null for a healthy target; a target unhealthy before this revision counts from its first
    # failure after it.
    with op.batch_alter_table("targets") as batch:
        batch.add_column(sa.Column("unhealthy_since", UTCDateTime()))


def downgrade() -> None:
    with op.batch_alter_table("targets") as batch:
        batch.drop_column("unhealthy_since")

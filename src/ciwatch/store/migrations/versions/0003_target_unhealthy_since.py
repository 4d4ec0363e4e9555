"""Targets remember since when they are unhealthy, and the outbox is indexed by channel (both
for the unhealthy alert, `alerts.unhealthy_after`).

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
    op.create_index("ix_outbox_channel_id", "outbox", ["channel", "id"])


def downgrade() -> None:
    op.drop_index("ix_outbox_channel_id", table_name="outbox")
    with op.batch_alter_table("targets") as batch:
        batch.drop_column("unhealthy_since")

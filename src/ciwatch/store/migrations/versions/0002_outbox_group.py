"""Outbox rows carry the group (the route's label) they are sent in; an index of the queued and
running runs for the stuck and queued alert rules; the outbox indexed by fingerprint, alerts by ref.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE_ONLY = "status IN ('queued', 'running')"


def upgrade() -> None:
    # Nullable: rows queued before this revision have no group; a worker groups them by channel.
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("group_key", sa.Text()))
    op.create_index(
        "ix_runs_active",
        "runs",
        ["order_time"],
        sqlite_where=sa.text(ACTIVE_ONLY),
        postgresql_where=sa.text(ACTIVE_ONLY),
    )
    op.create_index("ix_outbox_fingerprint_id", "outbox", ["fingerprint", "id"])
    op.create_index("ix_alerts_source_project_ref", "alerts", ["source", "project", "ref"])


def downgrade() -> None:
    op.drop_index("ix_alerts_source_project_ref", table_name="alerts")
    op.drop_index("ix_outbox_fingerprint_id", table_name="outbox")
    op.drop_index("ix_runs_active", table_name="runs")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("group_key")

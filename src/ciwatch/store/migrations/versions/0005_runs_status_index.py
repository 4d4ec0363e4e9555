"""History filtered by status alone is a range scan: an index on (status, order_time, run_id,
id) for `/api/v1/runs?status=...`, whatever the status and whatever plan PostgreSQL picks.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_runs_status_order_time_run_id_id", "runs", ["status", "order_time", "run_id", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_runs_status_order_time_run_id_id", table_name="runs")

"""Targets keep a digest of what the scheduler's last poll saw (newest run ids and their
progress, or a body hash), so that a new process needs no per-run reads to know nothing changed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null until the target's next poll: that poll reads its runs from the store, as before.
    with op.batch_alter_table("targets") as batch:
        batch.add_column(sa.Column("digest", sa.Text()))


def downgrade() -> None:
    with op.batch_alter_table("targets") as batch:
        batch.drop_column("digest")

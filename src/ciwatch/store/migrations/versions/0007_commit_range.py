"""Runs that broke a ref keep the commits since its last green run (`commit_range`: JSON text,
bounded), issue 13.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN, nullable, as 0006: old runs have no range.
    op.add_column("runs", sa.Column("commit_range", sa.Text()))


def downgrade() -> None:
    # Plain DROP COLUMN too (SQLite 3.35+): a batch copy of `runs` cannot write its generated
    # columns on SQLite.
    op.drop_column("runs", "commit_range")

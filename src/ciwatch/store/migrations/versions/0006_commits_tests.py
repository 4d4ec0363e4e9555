"""Runs keep the commit they built (title, author name and e-mail) and their test report
(counts and the failing tests' names), issue 13.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("commit_title", sa.Text),
    ("commit_author", sa.Text),
    ("commit_email", sa.Text),
    ("tests_total", sa.Integer),
    ("tests_failed", sa.Integer),
    ("tests_skipped", sa.Integer),
    ("tests_errored", sa.Integer),
    ("tests_failing", sa.Text),
)


def upgrade() -> None:
    # Plain ADD COLUMN (nullable, no default) on both engines: a batch copy of `runs` on SQLite
    # would have to rebuild its generated columns, and old runs simply have no commit or tests.
    for name, kind in COLUMNS:
        op.add_column("runs", sa.Column(name, kind()))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name, _kind in reversed(COLUMNS):
            batch.drop_column(name)

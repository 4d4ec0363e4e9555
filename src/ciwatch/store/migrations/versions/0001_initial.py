"""Initial schema: runs, jobs, ref_states, targets, alerts, outbox, silences, leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ciwatch.store.coltypes import UTCDateTime, json_type, key_text

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUCCESS_ONLY = "status = 'success'"
FAILED_ONLY = "status = 'failed'"
PENDING_ONLY = "sent_at IS NULL AND failed_at IS NULL"


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer(), autoincrement=True, nullable=False)


def upgrade() -> None:
    op.create_table(
        "runs",
        _id(),
        sa.Column("source", key_text(), nullable=False),
        sa.Column("project", key_text(), nullable=False),
        sa.Column("run_id", key_text(), nullable=False),
        sa.Column("provider", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider_status", sa.Text()),
        sa.Column("number", sa.BigInteger()),
        sa.Column("workflow", sa.Text()),
        sa.Column("ref", sa.Text()),
        sa.Column("sha", sa.Text()),
        sa.Column("event", sa.Text()),
        sa.Column("url", sa.Text()),
        sa.Column("author", sa.Text()),
        sa.Column("created_at", UTCDateTime()),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("duration_seconds", sa.Double()),
        sa.Column("queued_seconds", sa.Double()),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("version", key_text(), nullable=False),
        sa.Column("prev_ref_key", key_text()),
        sa.Column(
            "ref_key", key_text(), sa.Computed("coalesce(ref, '')", persisted=True), nullable=False
        ),
        sa.Column(
            "order_time",
            UTCDateTime(),
            sa.Computed("coalesce(created_at, started_at, updated_at)", persisted=True),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.UniqueConstraint("source", "project", "run_id", name="uq_runs_source_project_run_id"),
    )
    op.create_index("ix_runs_order_time_run_id_id", "runs", ["order_time", "run_id", "id"])
    op.create_index(
        "ix_runs_project_order_time_run_id_id", "runs", ["project", "order_time", "run_id", "id"]
    )
    op.create_index(
        "ix_runs_source_project_ref_key_order_time_run_id_id",
        "runs",
        ["source", "project", "ref_key", "order_time", "run_id", "id"],
    )
    ref_columns = ["source", "project", "ref_key", "order_time", "run_id"]
    for name, predicate in (("success", SUCCESS_ONLY), ("failed", FAILED_ONLY)):
        op.create_index(
            f"ix_runs_ref_{name}",
            "runs",
            ref_columns,
            sqlite_where=sa.text(predicate),
            postgresql_where=sa.text(predicate),
        )

    op.create_table(
        "jobs",
        _id(),
        sa.Column("source", key_text(), nullable=False),
        sa.Column("project", key_text(), nullable=False),
        sa.Column("run_id", key_text(), nullable=False),
        sa.Column("job_id", key_text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("provider_status", sa.Text()),
        sa.Column("created_at", UTCDateTime()),
        sa.Column("started_at", UTCDateTime()),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("duration_seconds", sa.Double()),
        sa.Column("queued_seconds", sa.Double()),
        sa.Column("runner", sa.Text()),
        sa.Column("allow_failure", sa.Boolean(), nullable=False),
        sa.Column("url", sa.Text()),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("version", key_text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint(
            "source", "project", "run_id", "job_id", name="uq_jobs_source_project_run_id_job_id"
        ),
    )

    op.create_table(
        "ref_states",
        _id(),
        sa.Column("source", key_text(), nullable=False),
        sa.Column("project", key_text(), nullable=False),
        sa.Column("ref", key_text(), nullable=False),
        sa.Column("provider", sa.String(16)),
        sa.Column("status", sa.String(16)),
        sa.Column("since", UTCDateTime()),
        sa.Column("last_run_id", sa.Integer()),
        sa.Column("decisive_run_id", sa.Integer()),
        sa.Column("since_run_id", sa.Integer()),
        sa.PrimaryKeyConstraint("id", name="pk_ref_states"),
        sa.UniqueConstraint("source", "project", "ref", name="uq_ref_states_source_project_ref"),
        sa.ForeignKeyConstraint(
            ["last_run_id"], ["runs.id"], name="fk_ref_states_last_run_id_runs"
        ),
        sa.ForeignKeyConstraint(
            ["decisive_run_id"], ["runs.id"], name="fk_ref_states_decisive_run_id_runs"
        ),
        sa.ForeignKeyConstraint(
            ["since_run_id"], ["runs.id"], name="fk_ref_states_since_run_id_runs"
        ),
    )
    for column in ("last_run_id", "decisive_run_id", "since_run_id"):
        op.create_index(f"ix_ref_states_{column}", "ref_states", [column])

    op.create_table(
        "targets",
        _id(),
        sa.Column("source", key_text(), nullable=False),
        sa.Column("project", key_text(), nullable=False),
        sa.Column("cursor", sa.Text()),
        sa.Column("etag", sa.Text()),
        sa.Column("healthy", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("last_polled_at", UTCDateTime()),
        sa.Column("last_success_at", UTCDateTime()),
        sa.Column("last_error_at", UTCDateTime()),
        sa.Column("extra", json_type(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_targets"),
        sa.UniqueConstraint("source", "project", name="uq_targets_source_project"),
    )

    op.create_table(
        "alerts",
        _id(),
        sa.Column("rule", key_text(), nullable=False),
        sa.Column("source", key_text(), nullable=False),
        sa.Column("project", key_text(), nullable=False),
        sa.Column("ref", key_text(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("last_notified", UTCDateTime()),
        sa.Column("payload", json_type(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
        sa.UniqueConstraint(
            "rule", "source", "project", "ref", name="uq_alerts_rule_source_project_ref"
        ),
        sa.CheckConstraint("state IN ('firing', 'resolved')", name="ck_alerts_state"),
    )

    op.create_table(
        "outbox",
        _id(),
        sa.Column("dedup_key", key_text(), nullable=False),
        sa.Column("fingerprint", key_text(), nullable=False),
        sa.Column("channel", key_text(), nullable=False),
        sa.Column("payload", json_type(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_by", sa.Text()),
        sa.Column("claimed_until", UTCDateTime()),
        sa.Column("sent_at", UTCDateTime()),
        sa.Column("failed_at", UTCDateTime()),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("dedup_key", "channel", name="uq_outbox_dedup_key_channel"),
    )
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["next_attempt_at"],
        sqlite_where=sa.text(PENDING_ONLY),
        postgresql_where=sa.text(PENDING_ONLY),
    )

    op.create_table(
        "silences",
        _id(),
        sa.Column("matchers", json_type(), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.Text()),
        sa.Column("comment", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_silences"),
    )
    op.create_index("ix_silences_ends_at", "silences", ["ends_at"])

    op.create_table(
        "leases",
        _id(),
        sa.Column("name", key_text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_leases"),
        sa.UniqueConstraint("name", name="uq_leases_name"),
    )


def downgrade() -> None:
    for table in ("leases", "silences", "outbox", "alerts", "targets", "ref_states", "jobs"):
        op.drop_table(table)
    op.drop_table("runs")

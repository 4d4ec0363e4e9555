"""The schema as SQLAlchemy Core tables: what the code queries against.

The migrations in `migrations/versions/` create and evolve the real tables; a test checks that
migrating an empty database to head gives exactly this metadata. Change both together.

Text columns that belong to a natural key use `key_text()` (byte-wise comparison on both
engines); statuses and other enums are plain strings; times are `UTCDateTime`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from ciwatch.store.coltypes import UTCDateTime, json_type, key_text

# Deterministic constraint names, so later migrations can refer to them on both engines.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# Literal predicates (not bound parameters) so that both planners can match the partial indexes.
SUCCESS_ONLY = "status = 'success'"
FAILED_ONLY = "status = 'failed'"
ACTIVE_ONLY = "status IN ('queued', 'running')"

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", key_text(), nullable=False),
    Column("project", key_text(), nullable=False),
    Column("run_id", key_text(), nullable=False),
    Column("provider", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("provider_status", Text),
    Column("number", BigInteger),
    Column("workflow", Text),
    Column("ref", Text),
    Column("sha", Text),
    Column("event", Text),
    Column("url", Text),
    Column("author", Text),
    Column("created_at", UTCDateTime()),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("duration_seconds", Double),
    Column("queued_seconds", Double),
    Column("attempt", Integer, nullable=False),
    # state.version_key of the stored update; the upsert compares it to the incoming one.
    Column("version", key_text(), nullable=False),
    # The ref_key the run had before its last change, set by the upsert so that its RETURNING
    # tells the writer which ref a run left (old values are not returnable otherwise).
    Column("prev_ref_key", key_text()),
    # Generated, so that they follow whatever the merge decides for ref and the timestamps.
    Column("ref_key", key_text(), Computed("coalesce(ref, '')", persisted=True), nullable=False),
    Column(
        "order_time",
        UTCDateTime(),
        Computed("coalesce(created_at, started_at, updated_at)", persisted=True),
        nullable=False,
    ),
    # The commit and the test report (revision 0006).
    Column("commit_title", Text),
    Column("commit_author", Text),
    Column("commit_email", Text),
    Column("tests_total", Integer),
    Column("tests_failed", Integer),
    Column("tests_skipped", Integer),
    Column("tests_errored", Integer),
    # The failing tests' names, one a line.
    Column("tests_failing", Text),
    # The commits since the ref's last green run, on a run that broke it: JSON text
    # (serialize.commit_range_to_dict), written by the alert engine (revision 0007).
    Column("commit_range", Text),
    UniqueConstraint("source", "project", "run_id"),
    Index(None, "order_time", "run_id", "id"),
    # History by project leads with the project alone: `ciwatch history PROJECT` and the API
    # filter on it without a source.
    Index(None, "project", "order_time", "run_id", "id"),
    Index(None, "source", "project", "ref_key", "order_time", "run_id", "id"),
    # `history(status=...)` with no project: a range scan in page order for every status, rare
    # ones included. Not partial, so that PostgreSQL's generic plan for `status = $1` (asyncpg
    # prepares every statement) uses it too (revision 0005).
    Index(None, "status", "order_time", "run_id", "id"),
    Index(
        "ix_runs_ref_success",
        "source",
        "project",
        "ref_key",
        "order_time",
        "run_id",
        sqlite_where=text(SUCCESS_ONLY),
        postgresql_where=text(SUCCESS_ONLY),
    ),
    Index(
        "ix_runs_ref_failed",
        "source",
        "project",
        "ref_key",
        "order_time",
        "run_id",
        sqlite_where=text(FAILED_ONLY),
        postgresql_where=text(FAILED_ONLY),
    ),
    # The few queued or running runs, for the stuck and queued alert rules (revision 0002).
    Index(
        "ix_runs_active",
        "order_time",
        sqlite_where=text(ACTIVE_ONLY),
        postgresql_where=text(ACTIVE_ONLY),
    ),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", key_text(), nullable=False),
    Column("project", key_text(), nullable=False),
    Column("run_id", key_text(), nullable=False),
    Column("job_id", key_text(), nullable=False),
    Column("name", Text, nullable=False),
    Column("stage", Text),
    Column("status", String(16), nullable=False),
    Column("provider_status", Text),
    Column("created_at", UTCDateTime()),
    Column("started_at", UTCDateTime()),
    Column("finished_at", UTCDateTime()),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("duration_seconds", Double),
    Column("queued_seconds", Double),
    Column("runner", Text),
    Column("allow_failure", Boolean, nullable=False),
    Column("url", Text),
    Column("attempt", Integer, nullable=False),
    Column("version", key_text(), nullable=False),
    # No foreign key to runs: a job webhook may arrive before its pipeline's.
    UniqueConstraint("source", "project", "run_id", "job_id"),
)

ref_states = Table(
    "ref_states",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", key_text(), nullable=False),
    Column("project", key_text(), nullable=False),
    Column("ref", key_text(), nullable=False),
    # Null only in a placeholder row that a writer inserted to lock a new ref (PostgreSQL).
    Column("provider", String(16)),
    Column("status", String(16)),
    Column("since", UTCDateTime()),
    Column("last_run_id", Integer, ForeignKey("runs.id")),
    Column("decisive_run_id", Integer, ForeignKey("runs.id")),
    Column("since_run_id", Integer, ForeignKey("runs.id")),
    UniqueConstraint("source", "project", "ref"),
    # Deleting a run checks these foreign keys: keep that check an index probe.
    Index(None, "last_run_id"),
    Index(None, "decisive_run_id"),
    Index(None, "since_run_id"),
)

targets = Table(
    "targets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", key_text(), nullable=False),
    Column("project", key_text(), nullable=False),
    Column("cursor", Text),
    Column("etag", Text),
    Column("healthy", Boolean, nullable=False),
    Column("reason", Text),
    Column("last_polled_at", UTCDateTime()),
    Column("last_success_at", UTCDateTime()),
    Column("last_error_at", UTCDateTime()),
    Column("extra", json_type(), nullable=False),
    # When the current unhealthy period began; null while healthy (revision 0003).
    Column("unhealthy_since", UTCDateTime()),
    # What the scheduler saw at its last poll (`scheduler/digest.py`), so that a new process
    # knows without reading runs that nothing changed (revision 0004).
    Column("digest", Text),
    UniqueConstraint("source", "project"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", key_text(), nullable=False),
    Column("source", key_text(), nullable=False),
    Column("project", key_text(), nullable=False),
    Column("ref", key_text(), nullable=False),
    Column("state", String(16), nullable=False),
    Column("first_seen", UTCDateTime(), nullable=False),
    Column("last_seen", UTCDateTime(), nullable=False),
    Column("last_notified", UTCDateTime()),
    Column("payload", json_type(), nullable=False),
    UniqueConstraint("rule", "source", "project", "ref"),
    CheckConstraint("state IN ('firing', 'resolved')", name="state"),
    # The alerts of some refs, for an evaluation of the refs that changed (revision 0002).
    Index(None, "source", "project", "ref"),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dedup_key", key_text(), nullable=False),
    Column("fingerprint", key_text(), nullable=False),
    Column("channel", key_text(), nullable=False),
    Column("payload", json_type(), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("claimed_by", Text),
    Column("claimed_until", UTCDateTime()),
    Column("sent_at", UTCDateTime()),
    Column("failed_at", UTCDateTime()),
    Column("last_error", Text),
    Column("created_at", UTCDateTime(), nullable=False),
    # The route label the row is grouped under (None: rows from before revision 0002).
    Column("group_key", Text),
    UniqueConstraint("dedup_key", "channel"),
    # Each channel's newest rows, for its health (the unhealthy alert; revision 0003).
    Index("ix_outbox_channel_id", "channel", "id"),
    # The notifications of an alert, for the alert list, its API and the dashboard (0002).
    Index(None, "fingerprint", "id"),
    Index(
        "ix_outbox_pending",
        "next_attempt_at",
        sqlite_where=text("sent_at IS NULL AND failed_at IS NULL"),
        postgresql_where=text("sent_at IS NULL AND failed_at IS NULL"),
    ),
)

silences = Table(
    "silences",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("matchers", json_type(), nullable=False),
    Column("starts_at", UTCDateTime(), nullable=False),
    Column("ends_at", UTCDateTime(), nullable=False),
    Column("created_by", Text),
    Column("comment", Text),
    Index(None, "ends_at"),
)

leases = Table(
    "leases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", key_text(), nullable=False),
    Column("holder", Text, nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    UniqueConstraint("name"),
)

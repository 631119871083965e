"""The database schema, as the query modules use it.

Every change here is also an Alembic revision in `migrations/versions/` (written out
by hand), which is what creates and upgrades databases; tests/core/test_migrations.py
checks that a database the revisions made matches this metadata.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# launch_meta's schema_version row. Releases from before migrations refuse a database
# whose number is above theirs (1), as this one does (see location.refuse_foreign);
# revisions they could still work with leave it alone.
SCHEMA_VERSION = 1
APP_MARKER = "launch-tui"

metadata = MetaData()

meta = Table(
    "launch_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

projects = Table(
    "projects",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("created_at", Float, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(128), ForeignKey("projects.name"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("project", "name"),
)

job_versions = Table(
    "job_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("job_id", "version"),
    UniqueConstraint("job_id", "digest"),
)

job_aliases = Table(
    "job_aliases",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
    Column("alias", String(128), primary_key=True),
    Column("version", Integer, nullable=False),
)

queues = Table(
    "queues",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(128), ForeignKey("projects.name"), nullable=False),
    Column("name", String(128), nullable=False),
    Column("resource", String(32), nullable=False),
    Column("config", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # Set while the queue is held: agents claim nothing from it (revision 0004).
    Column("held_at", Float, nullable=True),
    Column("hold_reason", Text, nullable=True),
    UniqueConstraint("project", "name"),
)

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("queue_id", Integer, ForeignKey("queues.id"), nullable=False),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("config_overrides", JSON, nullable=False),
    Column("resource_overrides", JSON, nullable=False),
    Column("template_values", JSON, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("leased_by", String(128)),
    Column("lease_expires", Float),
    Column("run_id", String(16)),
    Column("error_stage", String(16)),
    Column("error_message", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # 0 for an item as enqueued; n for its n-th automatic retry after a crash.
    Column("attempt", Integer, nullable=False, server_default="0"),
    # Place within its priority: the time it joined the queue (enqueued, moved to the
    # bottom or to another queue), or below the first item's when moved to the top.
    # Take order is (priority, seq, id). Revision 0004.
    Column("seq", Float, nullable=False, server_default="0"),
    Index("ix_items_claim", "queue_id", "state", "priority", "seq", "id"),
    # Lease expiry looks only at leased items whose lease ran out, never scans.
    Index("ix_items_lease", "state", "lease_expires"),
    # Listings of items done with (claimed, failed, cancelled) are newest first.
    Index("ix_items_history", "state", "created_at", "id"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(16), primary_key=True),
    Column("item_id", Integer, ForeignKey("items.id"), nullable=False, unique=True),
    Column("queue_id", Integer, ForeignKey("queues.id"), nullable=False),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("agent", String(128)),
    Column("state", String(16), nullable=False),
    Column("spec", JSON, nullable=False),
    Column("handle", JSON),
    Column("timestamps", JSON, nullable=False),
    Column("exit_code", Integer),
    Column("error_stage", String(16)),
    Column("error_message", Text),
    Column("reason", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_runs_agent", "agent", "state"),
    # Run listings are newest first, by (created_at, id): of a project, of one queue,
    # of one state; a page is one range of one of these (see store/listings).
    Index("ix_runs_newest", "created_at", "id"),
    Index("ix_runs_queue_newest", "queue_id", "created_at", "id"),
    Index("ix_runs_state_newest", "state", "created_at", "id"),
    # Pruning walks runs in the order they last changed (a run's output is kept for a
    # while after it ended); the id breaks ties so the walk can resume exactly.
    Index("ix_runs_updated", "updated_at", "id"),
)

run_logs = Table(
    "run_logs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(16), nullable=False),
    Column("ts", Float, nullable=False),
    Column("stream", String(8), nullable=False),
    Column("text", Text, nullable=False),
    # Which of the run's output streams (a pod: a DNS name, up to 253 characters) the
    # line came from, where a run has several; NULL for one stream. Revision 0003.
    Column("source", String(253), nullable=True),
    Index("ix_run_logs_run", "run_id", "id"),
)

run_metrics = Table(
    "run_metrics",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(16), nullable=False),
    Column("step", Integer, nullable=False),
    Column("ts", Float, nullable=False),
    Column("values", JSON, nullable=False),
    Column("source", String(253), nullable=True),  # as run_logs.source
    Index("ix_run_metrics_run", "run_id", "id"),
)

agents = Table(
    "agents",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("queues", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("max_jobs", Integer, nullable=False),
    Column("running", Integer, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
)

events = Table(
    "events",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Index("ix_events_kind", "kind", "seq"),
    # Sequence numbers must never be reused: subscribers tail by "seq > last seen".
    sqlite_autoincrement=True,
)

# Content-addressed blobs (code snapshots: a tar of the tree, keyed by the tree's
# digest), so an agent on another machine can fetch what a job was made from. A blob
# is `chunks` rows of about 1 MiB, written a few per transaction; it is complete when
# all of them are there (core/store/blobs.py).
blobs = Table("blobs", metadata,
    Column("digest", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("created_at", Float, nullable=False))
blob_chunks = Table("blob_chunks", metadata,
    Column("digest", String(64), ForeignKey("blobs.digest", ondelete="CASCADE"), primary_key=True),
    Column("n", Integer, primary_key=True),
    Column("data", LargeBinary, nullable=False))

"""Table definitions (SQLAlchemy Core). Migrations in ``migrations/`` create them.

Times are UNIX epoch seconds (floats): one representation on SQLite and PostgreSQL, compared
as numbers in the claim and lease queries.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("webhook_secret", String(100), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
    Column("webhook_url", String(2000)),
    Column("webhook_secret_previous", String(100)),
    Column("webhook_secret_rotated_at", Float),
    Column("budget_usd_per_day", Float),
    Column("max_in_flight", Integer),
    Column("admin", Boolean, nullable=False, default=False),
    Column("providers", String(500)),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("api_key_id", String(40), nullable=False),
    Column("model", String(200), nullable=False),
    Column("backend", String(50), nullable=False),
    Column("status", String(16), nullable=False),
    Column("request", JSON, nullable=False),
    Column("cost", Float, nullable=False, default=0.0),
    Column("idempotency_key", String(200)),
    Column("request_hash", String(64)),
    Column("progress", Float),
    Column("provider_request_id", String(500)),
    Column("provider_state", JSON),
    Column("provider_status", String(100)),
    Column("error", Text),
    Column("user_friendly_error", Text),
    Column("is_nsfw", Boolean, nullable=False, default=False),
    Column("output_key", String(500)),
    Column("output_content_type", String(100)),
    Column("output_size", BigInteger),
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("completed_at", Float),
    Column("updated_at", Float, nullable=False),
    Column("available_at", Float, nullable=False),
    Column("deadline_at", Float),
    Column("next_poll_at", Float),
    Column("submit_started_at", Float),
    Column("lease_owner", String(100)),
    Column("lease_expires_at", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("seq", Integer, nullable=False, default=1),
    Column("rev", BigInteger),
    Column("webhook_url", String(2000)),
    Column("webhook_events", String(200)),
    Column("video_s", Float),
    Column("thumbnail_key", String(500)),
    Column("output_deleted_at", Float),
    Column("provider", String(100)),
    Column("routes", String(500)),
    Column("adjusted", JSON),
    UniqueConstraint("api_key_id", "idempotency_key", name="uq_runs_key_idempotency"),
)

Index("ix_runs_claim", runs.c.status, runs.c.available_at, runs.c.created_at)
Index("ix_runs_lease", runs.c.status, runs.c.lease_expires_at)
Index("ix_runs_owner", runs.c.lease_owner)
Index("ix_runs_api_key", runs.c.api_key_id, runs.c.created_at)
Index("ix_runs_key_status", runs.c.api_key_id, runs.c.status)
Index("ix_runs_remote_due", runs.c.backend, runs.c.next_poll_at)
Index(
    "ix_runs_remote_submit",
    runs.c.backend,
    runs.c.status,
    runs.c.provider_request_id,
    runs.c.available_at,
)
Index("ix_runs_rev", runs.c.rev)
Index("ix_runs_completed", runs.c.completed_at)
Index("ix_runs_provider_status", runs.c.provider, runs.c.status)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("run_id", String(40), nullable=False),
    Column("api_key_id", String(40), nullable=False),
    Column("type", String(40), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float),
    Column("lease_owner", String(100)),
    Column("lease_expires_at", Float),
    Column("payload", Text),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("log", JSON, nullable=False),
    Column("delivered_at", Float),
)

Index("ix_webhook_due", webhook_deliveries.c.status, webhook_deliveries.c.next_attempt_at)
Index("ix_webhook_run", webhook_deliveries.c.run_id, webhook_deliveries.c.created_at)

rate_buckets = Table(
    "rate_buckets",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated", Float, nullable=False),
)
"""Submit token buckets shared by the API processes on PostgreSQL (see
:mod:`vidgate.store.limits`); ``updated`` is the database's clock, not a process's."""

server_secrets = Table(
    "server_secrets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("secret", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)
"""Random secrets every process of an installation shares, made on first use (see
:mod:`vidgate.store.secrets`)."""

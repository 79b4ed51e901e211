"""Initial schema: api_keys and runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("webhook_secret", sa.String(100), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("api_key_id", sa.String(40), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("backend", sa.String(50), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("cost", sa.Float, nullable=False),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("request_hash", sa.String(64)),
        sa.Column("progress", sa.Float),
        sa.Column("provider_request_id", sa.String(500)),
        sa.Column("provider_state", sa.JSON),
        sa.Column("provider_status", sa.String(100)),
        sa.Column("error", sa.Text),
        sa.Column("user_friendly_error", sa.Text),
        sa.Column("is_nsfw", sa.Boolean, nullable=False),
        sa.Column("output_key", sa.String(500)),
        sa.Column("output_content_type", sa.String(100)),
        sa.Column("output_size", sa.BigInteger),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("completed_at", sa.Float),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("available_at", sa.Float, nullable=False),
        sa.Column("deadline_at", sa.Float),
        sa.Column("next_poll_at", sa.Float),
        sa.Column("lease_owner", sa.String(100)),
        sa.Column("lease_expires_at", sa.Float),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.UniqueConstraint("api_key_id", "idempotency_key", name="uq_runs_key_idempotency"),
    )
    op.create_index("ix_runs_claim", "runs", ["status", "available_at", "created_at"])
    op.create_index("ix_runs_lease", "runs", ["status", "lease_expires_at"])
    op.create_index("ix_runs_owner", "runs", ["lease_owner"])
    op.create_index("ix_runs_api_key", "runs", ["api_key_id", "created_at"])


def downgrade() -> None:
    op.drop_table("runs")
    op.drop_table("api_keys")

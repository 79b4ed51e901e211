"""Run events and webhooks: per-run sequence numbers, the SQLite change order, webhook
targets on runs and keys, key secrets in the Standard Webhooks form, and the delivery outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import base64
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def new_webhook_secret() -> str:
    """``whsec_`` + standard base64 of 32 random bytes (the Standard Webhooks form)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("seq", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("rev", sa.BigInteger))
        batch.add_column(sa.Column("webhook_url", sa.String(2000)))
        batch.add_column(sa.Column("webhook_events", sa.String(200)))
    op.create_index("ix_runs_rev", "runs", ["rev"])
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("webhook_url", sa.String(2000)))
        batch.add_column(sa.Column("webhook_secret_previous", sa.String(100)))
        batch.add_column(sa.Column("webhook_secret_rotated_at", sa.Float))
    # Secrets made before this revision were URL-safe base64, which Standard Webhooks
    # libraries cannot decode. No command ever showed them, so they are simply replaced.
    keys = sa.table("api_keys", sa.column("id", sa.String), sa.column("webhook_secret", sa.String))
    connection = op.get_bind()
    for (key_id,) in connection.execute(sa.select(keys.c.id)).all():
        connection.execute(
            keys.update().where(keys.c.id == key_id).values(webhook_secret=new_webhook_secret())
        )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("api_key_id", sa.String(40), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.Float),
        sa.Column("lease_owner", sa.String(100)),
        sa.Column("lease_expires_at", sa.Float),
        sa.Column("payload", sa.Text),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("log", sa.JSON, nullable=False),
        sa.Column("delivered_at", sa.Float),
    )
    op.create_index("ix_webhook_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_run", "webhook_deliveries", ["run_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_run", "webhook_deliveries")
    op.drop_index("ix_webhook_due", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("webhook_secret_rotated_at")
        batch.drop_column("webhook_secret_previous")
        batch.drop_column("webhook_url")
    op.drop_index("ix_runs_rev", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("webhook_events")
        batch.drop_column("webhook_url")
        batch.drop_column("rev")
        batch.drop_column("seq")

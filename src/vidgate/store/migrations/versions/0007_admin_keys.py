"""Admin keys and the dashboard's session secret.

``api_keys.admin`` marks the keys that may sign in to the dashboard (``/ui``); they work as
ordinary API keys too. ``server_secrets`` holds random secrets that every process of one
installation must share, made on first use: the dashboard signs its session cookies with
one, so a session made by one API process is honoured by the others.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_table(
        "server_secrets",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("server_secrets")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("admin")

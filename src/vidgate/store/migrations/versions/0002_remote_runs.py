"""Remote runs: the submit marker and the poll schedule index.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("submit_started_at", sa.Float))
    op.create_index("ix_runs_remote_due", "runs", ["backend", "next_poll_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_remote_due", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("submit_started_at")

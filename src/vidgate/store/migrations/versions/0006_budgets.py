"""Budgets: a key's daily budget and in-flight limit; a run's seconds of video.

``runs.cost`` holds the estimate until the run ends, then the final cost (0 for a failed
run, or one cancelled before it started); ``runs.video_s`` the seconds of video asked for,
then made. The index finds a key's runs in flight without reading its history.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("budget_usd_per_day", sa.Float))
        batch.add_column(sa.Column("max_in_flight", sa.Integer))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("video_s", sa.Float))
    op.create_index("ix_runs_key_status", "runs", ["api_key_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_runs_key_status", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("video_s")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("max_in_flight")
        batch.drop_column("budget_usd_per_day")

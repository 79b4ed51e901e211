"""Thumbnails and retention: a run's poster frame, and when retention deleted its video.

``runs.thumbnail_key`` is the storage key of the run's poster (next to its video);
``runs.output_deleted_at`` is when the retention sweep deleted the video and poster (the
run stays ``COMPLETED``; its polls say the video is gone). The index finds the runs that
finished before a moment without reading the rest.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("thumbnail_key", sa.String(500)))
        batch.add_column(sa.Column("output_deleted_at", sa.Float))
    op.create_index("ix_runs_completed", "runs", ["completed_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_completed", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("output_deleted_at")
        batch.drop_column("thumbnail_key")

"""Snapped parameters: what a model's limits changed in a run's request.

``runs.adjusted`` holds ``{field: {"requested": ..., "used": ...}}`` for a run of a model
that snaps a duration, resolution or aspect ratio to the nearest value it allows; null when
nothing was changed.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("adjusted", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("adjusted")

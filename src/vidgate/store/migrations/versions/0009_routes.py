"""Routes: which provider a run was submitted to, which it may use, which a key may use.

``runs.provider`` names the route (the ``[providers.X]`` section) a run was last submitted
to; ``runs.routes`` the providers it may use, in order (NULL: all of its model's routes);
``api_keys.providers`` the providers a key's runs may use (NULL: any). The index counts a
route's runs in flight for its ``max_in_flight``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("providers", sa.String(500)))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("provider", sa.String(100)))
        batch.add_column(sa.Column("routes", sa.String(500)))
    op.create_index("ix_runs_provider_status", "runs", ["provider", "status"])


def downgrade() -> None:
    op.drop_index("ix_runs_provider_status", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("routes")
        batch.drop_column("provider")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("providers")

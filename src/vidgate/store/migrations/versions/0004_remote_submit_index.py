"""Remote runs: an index that finds due submits without reading the runs queued upstream.

A remote run waiting in its provider's queue is ``IN_QUEUE`` with a provider request id;
one still to submit has none. Without ``provider_request_id`` in an index, finding the
due submits read every run queued upstream (100,000 of them, on every claim).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_runs_remote_submit",
        "runs",
        ["backend", "status", "provider_request_id", "available_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_runs_remote_submit", "runs")

"""Alembic environment: vidgate passes an open connection in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from vidgate.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("vidgate runs its migrations itself: use `vidgate migrate`")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

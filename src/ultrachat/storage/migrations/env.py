"""Alembic environment: runs on the connection that ``ultrachat migrate`` hands it."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import ultrachat.models  # noqa: F401  (registers every service's tables on the metadata)
from ultrachat.storage.base import Base

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `ultrachat migrate`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

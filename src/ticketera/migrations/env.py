"""Alembic environment: always handed a live connection by `ticketera.kit.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from ticketera.models import metadata

connection: Connection | None = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("Run migrations with `ticketera migrate` (ticketera.kit.migrate), not bare alembic.")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead. A no-op on MariaDB.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()

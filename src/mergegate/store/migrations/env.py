"""Alembic environment: always run programmatically by ``mergegate.store.migrate``.

The caller passes an open connection (``config.attributes["connection"]``) so the
migration shares its transaction and, on PostgreSQL, an advisory lock keeps two servers
starting at once from migrating concurrently.
"""

from __future__ import annotations

from alembic import context

from mergegate.store.models import Base

#: Any constant unique to mergegate; held for the duration of the migration transaction.
MIGRATION_LOCK_ID = 0x6D657267

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("mergegate migrations run through mergegate.store.migrate.upgrade(), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
    context.run_migrations()

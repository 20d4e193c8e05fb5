"""Alembic environment: runs on the connection the server hands in (see `migrate.py`)."""

from alembic import context

from tunehand.server.db.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

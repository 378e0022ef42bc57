"""Alembic environment: runs on the connection `chatworks.storage.db.upgrade` passes in."""

from alembic import context

from chatworks.storage.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()

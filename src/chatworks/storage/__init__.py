"""SQL storage: SQLAlchemy models, engines and sessions, Alembic migrations.

SQLite (a file under `data_dir`) by default, Postgres when `CHATWORKS_DATABASE_URL` is set.
Search (vectors, full-text) lives in `chatworks.rag.index_*`, on these same tables.
"""

from chatworks.storage.db import create_engine, database_url, open_database, upgrade

__all__ = ["create_engine", "database_url", "open_database", "upgrade"]

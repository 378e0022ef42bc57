"""Engines for the one SQL database: SQLite by default, Postgres when configured.

SQLite connections load sqlite-vec, use WAL (readers never block the writer), enforce foreign
keys (chunk deletes cascade) and get real transactions (see `_sqlite_begin`). Schema changes are
Alembic migrations in `migrations/`, applied by `open_database` at start-up. `Database` is how
async code (the API) reaches it: every call in a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from chatworks.settings import Settings

_MIGRATIONS = Path(__file__).parent / "migrations"
T = TypeVar("T")


def database_url(settings: Settings) -> str:
    """The configured URL, or a SQLite file under `data_dir`."""
    if settings.database_url:
        return settings.database_url
    return f"sqlite:///{settings.data_dir / 'chatworks.db'}"


def _sqlite_module() -> ModuleType:
    # Some Python builds (pyenv's here) compile sqlite3 without extension loading, which
    # sqlite-vec needs; pysqlite3-binary ships a recent SQLite that has it.
    import sqlite3

    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    from pysqlite3 import dbapi2

    return dbapi2


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    import sqlite_vec

    dbapi_connection.enable_load_extension(True)
    sqlite_vec.load(dbapi_connection)
    dbapi_connection.enable_load_extension(False)
    # The driver's own transaction handling skips BEGIN before SELECT and DDL; turn it off and
    # let `_sqlite_begin` emit BEGIN, so a transaction really covers everything in it.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")  # wait for another writer instead of failing
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable enough in WAL mode, much faster
    cursor.close()


def _sqlite_begin(connection: sa.Connection) -> None:
    # A transaction that reads before it writes takes the write lock up front (`write_session`):
    # in WAL mode a deferred one whose snapshot went stale - another writer committed after its
    # first read - fails at its first write with "database is locked" at once, busy timeout or
    # not (SQLITE_BUSY_SNAPSHOT; seen as a 500 on DELETE /v1/documents under load).
    immediate = connection.get_execution_options().get("sqlite_immediate", False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Session]:
    """A session in a transaction that reads, then writes what it read (find-then-delete,
    get-or-create), committed at the end: on SQLite it begins IMMEDIATE, waiting for other
    writers first instead of failing midway."""
    with Session(engine) as session, session.begin():
        session.connection(execution_options={"sqlite_immediate": True})
        yield session


class Database:
    """The database for async callers: `read` and `write` run `work(session)` in a worker
    thread, so a slow query (a lock wait, a Postgres round trip) stalls only its own request,
    never the event loop that streams every other response. Sessions are opened and closed in
    that thread; `work` returns plain values, not rows bound to the session."""

    def __init__(self, engine: Callable[[], Engine]):
        self._engine = engine  # called in the worker: opening it may run migrations

    @property
    def engine(self) -> Engine:
        return self._engine()

    async def read(self, work: Callable[[Session], T]) -> T:
        def run() -> T:
            with Session(self._engine()) as session:
                return work(session)

        return await asyncio.to_thread(run)

    async def write(self, work: Callable[[Session], T]) -> T:
        """`work` in one transaction, committed when it returns (see `write_transaction`)."""

        def run() -> T:
            with write_transaction(self._engine()) as session:
                return work(session)

        return await asyncio.to_thread(run)


def create_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for `url`, configured for chatworks (no migrations: see `open_database`).

    `postgresql://` URLs use psycopg 3; `sqlite:///path` URLs get sqlite-vec and the pragmas."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True, **kwargs)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, module=_sqlite_module(), **kwargs)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations up to `revision` (all of them by default) in one
    transaction."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Replicas starting together would otherwise race to create the same tables.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7301)")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def open_database(settings: Settings) -> Engine:
    """The engine for the configured database, migrated to the latest schema."""
    engine = create_engine(database_url(settings))
    upgrade(engine)
    return engine

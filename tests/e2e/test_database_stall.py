"""A slow database call stalls only its own request: on Postgres, while one request waits
for a table lock that another connection holds, a stream on the same server keeps flowing.

If a handler ran its query on the event loop, the loop would wait with it and the stream could
not send a single chunk until the lock was released, which this test only does after reading
chunks: it would time out instead (tests/unit/test_database_off_the_loop.py checks the same
rule statement by statement, on SQLite)."""

from __future__ import annotations

import threading
import time

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from tests.e2e.conftest import scripted_env
from tests.servers import start_server

pytestmark = pytest.mark.e2e

CHUNKS_WHILE_WAITING = 50


@pytest.fixture
def postgres_server(tmp_path, postgres_url):
    server = start_server(
        "postgres-stall", scripted_env(tmp_path, CHATWORKS_DATABASE_URL=postgres_url)
    )
    yield server
    server.stop()


def wait_until_a_query_waits_for_a_lock(dsn: str) -> None:
    """Until Postgres shows a lock request not granted: the listing is inside its query."""
    deadline = time.monotonic() + 30
    with psycopg.connect(dsn, autocommit=True) as watcher:
        while not watcher.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0]:
            assert time.monotonic() < deadline, "the listing never reached the database"
            time.sleep(0.02)


def test_a_query_waiting_on_a_lock_does_not_stall_a_stream(postgres_server, postgres_url):
    api = postgres_server.api_url
    assert httpx.post(f"{api}/collections", json={"name": "stall"}).status_code == 201
    long_prompt = " ".join(f"word{i}" for i in range(400))  # echoed: 400 chunks, 10 ms apart
    body = {"model": "scripted", "stream": True, "max_tokens": 400,
            "messages": [{"role": "user", "content": long_prompt}]}  # fmt: skip
    dsn = sa.make_url(postgres_url).set(drivername="postgresql").render_as_string(False)
    with psycopg.connect(dsn) as lock, httpx.stream("POST", f"{api}/chat/completions",
                                                   json=body, timeout=30) as stream:  # fmt: skip
        lines = stream.iter_lines()
        next(line for line in lines if line.startswith("data: "))  # the stream has started
        lock.execute("LOCK TABLE collections IN ACCESS EXCLUSIVE MODE")
        listing: dict[str, int] = {}
        waiting = threading.Thread(
            target=lambda: listing.update(status=httpx.get(f"{api}/collections",
                                                           timeout=60).status_code)
        )  # fmt: skip
        waiting.start()
        wait_until_a_query_waits_for_a_lock(dsn)
        received = 0
        for line in lines:  # a stalled loop sends nothing: the 30 s read timeout fails the test
            received += line.startswith("data: ")
            if received == CHUNKS_WHILE_WAITING:
                break
        assert waiting.is_alive() and not listing, "the listing did not wait for the lock"
        lock.rollback()  # releases the lock
        waiting.join(60)
    assert listing == {"status": 200}

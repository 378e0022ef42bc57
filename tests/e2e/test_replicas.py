"""Replicas behind a real HAProxy (deploy/haproxy/haproxy.cfg), sharing one Postgres and one
Redis: every turn of a conversation reaches the same replica (its prefix cache holds the
history), from an OpenAI client and from the web UI (which names its conversation in
`X-Session-Id`), and a replica whose /readyz says not ready gets no traffic until it is ready
again. The replica killed mid-stream is a fault drill (tests/e2e/test_fault_drills.py)."""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Browser, Page, Response

from tests.conftest import fresh_database, running_redis
from tests.e2e import test_ui
from tests.e2e.conftest import scripted_env
from tests.e2e.test_backpressure import wait_until
from tests.loadbalancer import Balancer, start_haproxy
from tests.servers import LiveServer, free_port, start_server

pytestmark = pytest.mark.e2e

browser = test_ui.browser  # the same module-scoped Chromium fixture

CHAT = {"route": "/v1/chat/completions", "method": "POST", "status": "200"}


def _turn(client: openai.OpenAI, messages: list[dict], **extra) -> tuple[str, str]:
    """Sends the conversation so far; returns (the reply, the replica that served it)."""
    raw = client.chat.completions.with_raw_response.create(
        model="scripted", messages=messages, max_tokens=16, **extra
    )
    return raw.parse().choices[0].message.content, raw.headers["x-chatworks-replica"]


def _converse(client: openai.OpenAI, opening: list[dict], turns: int, **extra) -> list[str]:
    """A conversation of `turns` turns; the replica of each."""
    messages, served = list(opening), []
    for t in range(turns):
        reply, replica = _turn(client, messages, **extra)
        served.append(replica)
        messages += [{"role": "assistant", "content": reply},
                     {"role": "user", "content": f"And then, part {t}?"}]  # fmt: skip
    return served


@contextlib.contextmanager
def replicas_behind_haproxy(
    name: str, tmp_path: Path, envs: dict[str, dict[str, str]]
) -> Iterator[tuple[list[LiveServer], Balancer, openai.OpenAI]]:
    """Scripted replicas, one per entry of `envs` (its extra settings), named r1, r2, ... in
    HAProxy; and an `openai` client of the balancer (no retries: the tests see every error)."""
    with contextlib.ExitStack() as stack:
        replicas = []
        for replica, extra in envs.items():
            (tmp_path / replica).mkdir()
            env = scripted_env(tmp_path / replica, **extra)
            replicas.append(start_server(f"{name}-{replica}", env))
            stack.callback(replicas[-1].stop)
        balancer = start_haproxy(name, replicas)
        stack.callback(balancer.stop)
        client = openai.OpenAI(base_url=balancer.api_url, api_key="unused", max_retries=0,
                               timeout=30)  # fmt: skip
        yield replicas, balancer, client


@pytest.fixture(scope="module")
def pair(tmp_path_factory, postgres_server_url, redis_url):
    """Two scripted replicas sharing a database and Redis, behind HAProxy."""
    with fresh_database(postgres_server_url) as database:
        shared = {"CHATWORKS_DATABASE_URL": database, "CHATWORKS_REDIS_URL": redis_url}
        envs = {"a": shared, "b": shared}
        with replicas_behind_haproxy("pair", tmp_path_factory.mktemp("pair"), envs) as cluster:
            yield cluster


def _chats_served(replicas: list[LiveServer]) -> dict[str, float]:
    """Chat completions each replica counted itself, by its name in HAProxy."""
    return {f"r{i}": r.metric("chatworks_http_requests_total", **CHAT)
            for i, r in enumerate(replicas, 1)}  # fmt: skip


def test_every_turn_of_a_conversation_reaches_the_replica_of_its_first(pair):
    replicas, _, client = pair
    before = _chats_served(replicas)
    served: dict[str, list[str]] = {}
    for c in range(8):  # plain OpenAI requests: the opening message is the key
        served[f"plain {c}"] = _converse(
            client, [{"role": "user", "content": f"Tell me about topic {c}."}], turns=3
        )
    for c in range(4):  # one system prompt for all: the first user message tells them apart
        opening = [{"role": "system", "content": "You are terse."},
                   {"role": "user", "content": f"Summarize chapter {c}."}]  # fmt: skip
        served[f"system {c}"] = _converse(client, opening, turns=3)
    for c in range(2):  # the UI's way: a session id, whatever the messages
        session = {"X-Session-Id": f"conversation-{c}"}
        asked = ([{"role": "user", "content": f"Unrelated {t}"}] for t in range(3))
        served[f"session {c}"] = [_turn(client, m, extra_headers=session)[1] for m in asked]

    for name, replicas_seen in served.items():
        assert len(set(replicas_seen)) == 1, f"{name} moved: {replicas_seen}"
    per_replica = defaultdict(int)
    for replicas_seen in served.values():
        per_replica[replicas_seen[0]] += len(replicas_seen)
    assert set(per_replica) == {"r1", "r2"}, "conversations spread over both replicas"
    # What each replica itself counted agrees with what the balancer said it sent there.
    after = _chats_served(replicas)
    assert {name: after[name] - before[name] for name in after} == per_replica


@pytest.fixture
def page(browser: Browser, pair) -> Iterator[Page]:
    yield from test_ui.desktop_page(browser, pair[1])


def test_every_turn_of_a_ui_conversation_reaches_one_replica(page: Page) -> None:
    chats: list[tuple[str | None, str | None]] = []  # (session id, replica) of each turn

    def seen(response: Response) -> None:
        if response.url.endswith("/v1/chat/completions"):
            chats.append((response.request.headers.get("x-session-id"),
                          response.headers.get("x-chatworks-replica")))  # fmt: skip

    page.on("response", seen)
    for c in range(4):
        for turn in range(3):
            test_ui.send(page, f"Chat {c}, message {turn}")
            test_ui.wait_until_idle(page)
        page.get_by_test_id("new-chat").click()

    replicas_of = defaultdict(set)
    for session, replica in chats:
        replicas_of[session].add(replica)
    assert len(chats) == 12 and None not in replicas_of, "every turn names its conversation"
    assert len(replicas_of) == 4, "one id per conversation, a new one per new chat"
    assert all(len(replicas) == 1 for replicas in replicas_of.values()), replicas_of


def test_a_replica_that_is_not_ready_gets_no_traffic_until_it_is_ready_again(
    tmp_path, postgres_url
):
    """Replica b refuses to serve without its rate limiter (Redis, failing closed), a fails
    open: with Redis gone b answers /readyz with 503, and HAProxy moves b's conversations to a
    until b is ready again, then back (consistent hashing)."""
    redis_home, redis_port = tmp_path / "redis", free_port()
    redis_home.mkdir()
    with contextlib.ExitStack() as stack:
        with running_redis(redis_home, redis_port) as redis_url:
            shared = {"CHATWORKS_DATABASE_URL": postgres_url, "CHATWORKS_REDIS_URL": redis_url}
            envs = {"a": {**shared, "CHATWORKS_REDIS_FAIL_OPEN": "true"},
                    "b": {**shared, "CHATWORKS_REDIS_FAIL_OPEN": "false"}}  # fmt: skip
            replicas, balancer, client = stack.enter_context(
                replicas_behind_haproxy("ready", tmp_path, envs)
            )
            openings = ([{"role": "user", "content": f"Question number {c}"}] for c in range(64))
            on_b = next(m for m in openings if _turn(client, m)[1] == "r2")
            # b has served that one turn; a request is counted after its response is sent,
            # so the client can read the counter before it moves.
            b_served = 1
            assert wait_until(
                lambda: replicas[1].metric("chatworks_http_requests_total", **CHAT) == b_served,
                10,
            )

        # Redis is gone: b is not ready, a still is.
        assert wait_until(lambda: balancer.states()["r2"].startswith("DOWN"), 30)
        assert balancer.states()["r1"] == "UP"
        for _ in range(3):
            reply, replica = _turn(client, on_b)
            assert replica == "r1" and reply
        assert replicas[1].metric("chatworks_http_requests_total", **CHAT) == b_served

        with running_redis(redis_home, redis_port):  # the same address: b recovers by itself
            assert wait_until(lambda: balancer.states()["r2"] == "UP", 30)
            assert _turn(client, on_b)[1] == "r2"

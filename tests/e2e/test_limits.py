"""Per-key limits on real servers: requests, tokens (streams too) and requests in flight per
minute, token budgets; shared by two replicas through a real Redis; and what a Redis outage
does, open or closed, as /readyz and /metrics say, and that the server recovers by itself once
Redis is back."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.conftest import running_redis
from tests.e2e.conftest import ADMIN_KEY, create_key, secured_env
from tests.servers import start_server

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "hello there"}]
LONG = [{"role": "user", "content": " ".join(["word"] * 2000)}]  # echoed: a stream of ~20 s


def chat(server, key: str, messages=HELLO, **extra) -> httpx.Response:
    body = {"model": "scripted", "messages": messages, **extra}
    return httpx.post(f"{server.api_url}/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {key}"}, timeout=60)  # fmt: skip


def clear_of_the_minute_boundary() -> None:
    """Windows are fixed minutes: start a per-minute test with at least 20 s of its minute left,
    so the counts it relies on are not reset half-way."""
    if time.time() % 60 > 40:
        time.sleep(61 - time.time() % 60)


def test_requests_per_minute_answer_429_with_retry_after_and_headers(secured_server):
    _, key = create_key(secured_server, name="rpm", rpm=2)
    clear_of_the_minute_boundary()
    first, second, third = (chat(secured_server, key) for _ in range(3))
    assert first.status_code == second.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert third.status_code == 429
    assert 1 <= int(third.headers["retry-after"]) <= 60
    assert third.json()["error"]["type"] == "rate_limit_error"
    assert third.json()["error"]["code"] == "rate_limit_requests"
    c = openai.OpenAI(base_url=secured_server.api_url, api_key=key, max_retries=0)
    with pytest.raises(openai.RateLimitError):  # what the openai client makes of it
        c.chat.completions.create(model="scripted", messages=HELLO)


def test_stream_tokens_count_against_tokens_per_minute(secured_server):
    _, key = create_key(secured_server, name="tpm", tpm=20)
    clear_of_the_minute_boundary()
    c = openai.OpenAI(base_url=secured_server.api_url, api_key=key, max_retries=0)
    words = [{"role": "user", "content": " ".join(["token"] * 30)}]
    chunks = list(c.chat.completions.create(model="scripted", messages=words, stream=True,
                                            stream_options={"include_usage": True}))  # fmt: skip
    assert chunks[-1].usage.total_tokens >= 20
    refused = chat(secured_server, key)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_tokens"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"


def test_requests_in_flight_are_limited_and_freed_when_a_stream_ends(secured_server):
    _, key = create_key(secured_server, name="parallel", max_parallel=1)
    body = {"model": "scripted", "messages": LONG, "stream": True, "max_tokens": 4096}
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.stream("POST", f"{secured_server.api_url}/chat/completions", json=body,
                      headers=headers, timeout=60) as held:  # fmt: skip
        assert held.status_code == 200
        lines = held.iter_lines()  # kept: a collected iterator would close the stream
        next(lines)  # the stream is running and holds the key's one slot
        busy = chat(secured_server, key)
        assert busy.status_code == 429
        assert busy.json()["error"]["code"] == "rate_limit_parallel"
    # Leaving the stream disconnects: the server cancels it and frees the slot.
    deadline = time.monotonic() + 30
    while (status := chat(secured_server, key).status_code) == 429 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 200


def test_a_token_budget_refuses_once_used_up_and_usage_shows(secured_server):
    key_id, key = create_key(secured_server, name="budget", budget_tokens=5, budget_period="day")
    assert chat(secured_server, key).status_code == 200  # 2 prompt + 2 completion tokens
    assert chat(secured_server, key).status_code == 200  # now 8 >= 5
    refused = chat(secured_server, key)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "rate_limit_budget"
    assert int(refused.headers["retry-after"]) <= 86400
    listed = httpx.get(f"{secured_server.api_url}/keys", headers={"X-API-Key": ADMIN_KEY})
    usage = next(k["usage"] for k in listed.json()["data"] if k["id"] == key_id)
    assert (usage["tokens"], usage["requests"]) == (8, 2)  # the refused request cost nothing
    assert usage["period"] == time.strftime("%Y-%m-%d", time.gmtime())


def test_per_model_limits_apply_to_that_model_only(secured_server):
    _, key = create_key(secured_server, name="per-model", model_limits={"scripted": {"rpm": 1}})
    clear_of_the_minute_boundary()
    assert chat(secured_server, key).status_code == 200
    refused = chat(secured_server, key)
    assert refused.status_code == 429
    other = chat(secured_server, key, model="no-such-model")  # its own bucket: not limited
    assert other.status_code == 404


@pytest.fixture(scope="module")
def replicas(redis_url, tmp_path_factory):
    """Two servers on one database and one Redis, as two pods behind a load balancer."""
    env = secured_env(tmp_path_factory.mktemp("replicas"), CHATWORKS_REDIS_URL=redis_url)
    first = start_server("replica-a", env)
    second = start_server("replica-b", env)  # after the first: one of them migrates the DB
    yield first, second
    first.stop()
    second.stop()


def test_two_replicas_share_limits_through_redis(replicas):
    a, b = replicas
    assert httpx.get(f"{a.base_url}/readyz").json()["limits"]["backend"] == "redis"
    _, key = create_key(a, name="shared", rpm=4)
    clear_of_the_minute_boundary()
    statuses = [chat(server, key).status_code for server in (a, b, a, b)]
    assert statuses == [200, 200, 200, 200]
    refused = [chat(server, key) for server in (a, b)]  # each replica alone saw only 2
    assert [r.status_code for r in refused] == [429, 429]
    assert refused[1].headers["x-ratelimit-remaining-requests"] == "0"


def test_two_replicas_share_the_response_cache_through_redis(replicas):
    """The cache's own contract is tests/contracts/test_cache_contract.py; this is the wiring:
    with CHATWORKS_REDIS_URL, what one replica answered the other serves."""
    a, b = replicas
    _, key = create_key(a, name="cached", scopes=["chat"])
    question = [{"role": "user", "content": f"shared question {time.time_ns()}"}]
    first, second = (chat(server, key, question, temperature=0) for server in (a, b))
    assert [first.headers["x-chatworks-cache"], second.headers["x-chatworks-cache"]] == [
        "miss",
        "hit",
    ]
    assert second.json()["choices"] == first.json()["choices"]


@pytest.mark.parametrize("fail_open", [True, False])
def test_a_redis_outage_fails_open_or_closed_shows_and_recovers(tmp_path_factory, fail_open):
    home = tmp_path_factory.mktemp("outage")
    with running_redis(tmp_path_factory.mktemp("outage-redis")) as url:
        env = secured_env(home, CHATWORKS_REDIS_URL=url,
                          CHATWORKS_REDIS_FAIL_OPEN=str(fail_open).lower())  # fmt: skip
        server = start_server(f"outage-{fail_open}", env)
    try:  # Redis is stopped now
        _, key = create_key(server, name="outage", rpm=100)
        ready = httpx.get(f"{server.base_url}/readyz")
        assert ready.json()["limits"]["status"] != "ok"
        assert server.metric("chatworks_ratelimit_backend_up", backend="redis") == 0
        reply = chat(server, key)
        if fail_open:
            assert ready.status_code == 200 and reply.status_code == 200
        else:
            assert ready.status_code == 503
            assert reply.status_code == 503
            assert reply.json()["error"]["code"] == "limiter_unavailable"
        action = "allowed" if fail_open else "refused"
        assert server.metric("chatworks_ratelimit_backend_errors_total", backend="redis",
                             action=action) >= 1  # fmt: skip

        # Redis back on its address (empty: no counters, no cached Lua script): the same
        # process reconnects, says so, and enforces limits through Redis again.
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        with running_redis(tmp_path_factory.mktemp("outage-redis-again"), port):
            ready = httpx.get(f"{server.base_url}/readyz")
            assert ready.status_code == 200 and ready.json()["limits"]["status"] == "ok"
            assert server.metric("chatworks_ratelimit_backend_up", backend="redis") == 1
            _, again = create_key(server, name="after-outage", rpm=1)
            clear_of_the_minute_boundary()
            assert chat(server, again).status_code == 200
            refused = chat(server, again)
            assert refused.status_code == 429, refused.text  # counted in Redis, not waved through
            assert refused.json()["error"]["code"] == "rate_limit_requests"
    finally:
        server.stop()

"""Cancellation and overload against a real server: closed connections free their slot and
stop generating; more requests than slots + queue get 503 with Retry-After, never a hang."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tests.e2e.conftest import MODEL

pytestmark = pytest.mark.e2e

LONG = {"role": "user", "content": "Write a very long story about a lighthouse keeper."}


def wait_until(predicate, timeout=30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def generated_tokens(server) -> float:
    return server.metric("chatworks_generation_tokens_total", model=MODEL)


def cancelled(server) -> float:
    return server.metric(
        "chatworks_request_success_total", model=MODEL, finished_reason="cancelled"
    )


def test_disconnect_mid_stream_stops_generation(live_server):
    tokens_before, cancelled_before = generated_tokens(live_server), cancelled(live_server)
    body = {"model": MODEL, "messages": [LONG], "max_tokens": 400, "stream": True, "temperature": 0}
    with (
        httpx.Client(timeout=60) as http,
        http.stream("POST", f"{live_server.api_url}/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        assert [next(lines) for _ in range(6)]  # a few tokens arrive, then we hang up
    assert wait_until(lambda: cancelled(live_server) == cancelled_before + 1)
    assert live_server.metric("chatworks_num_requests_running", model=MODEL) == 0
    settled = generated_tokens(live_server)
    time.sleep(1.0)
    assert generated_tokens(live_server) == settled, "generation went on after the disconnect"
    assert settled - tokens_before < 200, "far fewer than max_tokens were generated"


def test_disconnect_during_non_stream_request_cancels_it(live_server):
    cancelled_before = cancelled(live_server)
    body = {"model": MODEL, "messages": [LONG], "max_tokens": 400, "temperature": 0}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{live_server.api_url}/chat/completions", json=body, timeout=1.5)
    assert wait_until(lambda: cancelled(live_server) == cancelled_before + 1)
    assert live_server.metric("chatworks_num_requests_running", model=MODEL) == 0


async def _one_stream(http: httpx.AsyncClient, url: str) -> tuple[int, str | None, bool]:
    body = {"model": MODEL, "messages": [LONG], "max_tokens": 24, "stream": True}
    async with http.stream("POST", url, json=body) as response:
        text = (await response.aread()).decode()
        return response.status_code, response.headers.get("retry-after"), "[DONE]" in text


def test_overload_sheds_with_503_and_retry_after(live_server):
    """The live server runs 2 generations at a time with 2 waiting: of 8 at once, 4 are shed."""

    async def burst():
        async with httpx.AsyncClient(timeout=120) as http:
            url = f"{live_server.api_url}/chat/completions"
            return await asyncio.gather(*(_one_stream(http, url) for _ in range(8)))

    results = asyncio.run(burst())
    shed = [r for r in results if r[0] == 503]
    served = [r for r in results if r[0] == 200]
    assert len(shed) + len(served) == 8
    assert len(shed) >= 1 and all(retry_after == "2" for _, retry_after, _ in shed)
    assert len(served) >= 1 and all(done for _, _, done in served)
    assert httpx.get(f"{live_server.base_url}/readyz").status_code == 200
    assert live_server.metric("chatworks_num_requests_running", model=MODEL) == 0
    assert live_server.metric("chatworks_num_requests_waiting", model=MODEL) == 0
    rejected = live_server.metric(
        "chatworks_requests_rejected_total", model=MODEL, reason="queue_full"
    )
    assert rejected >= len(shed)

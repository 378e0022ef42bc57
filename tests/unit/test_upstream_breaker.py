"""The `openai` provider's circuit breaker against a real local HTTP server that fails: after N
consecutive failures no request reaches the upstream and callers get 503 with Retry-After at
once; after the open period one probe goes through, and its outcome closes or reopens the
breaker. A 4xx is the request's fault and never opens it."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chatworks.api.errors import from_provider_error
from chatworks.providers.base import GenerationRequest, Message, ProviderError
from chatworks.providers.breaker import CircuitBreaker
from chatworks.providers.openai import OpenAIProvider
from chatworks.settings import Settings


class Upstream(BaseHTTPRequestHandler):
    status = 500  # what every request gets; 200 streams one chat chunk
    requests = 0

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        type(self).requests += 1
        self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.status != 200:
            body = json.dumps({"error": {"message": "broken", "type": "x", "code": "x"}}).encode()
            self.send_response(self.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}],
        }
        body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode()  # fmt: skip
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream():
    Upstream.status, Upstream.requests = 500, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


REQUEST = GenerationRequest(model="m", messages=(Message("user", "hi"),), max_tokens=4)


async def generate(provider: OpenAIProvider) -> str:
    return "".join([d.text async for d in provider.stream(REQUEST)])


def outcome(provider: OpenAIProvider) -> str | ProviderError:
    try:
        return asyncio.run(generate(provider))
    except ProviderError as exc:
        return exc


def provider_for(url: str, clock: Clock) -> OpenAIProvider:
    settings = Settings(provider="openai", upstream_url=url, upstream_retries=0, model="m")
    provider = OpenAIProvider(settings)
    provider.breaker = CircuitBreaker(failures=3, open_s=30, clock=clock)
    return provider


def test_breaker_opens_probes_and_closes(upstream):
    clock = Clock()
    provider = provider_for(upstream, clock)
    for _ in range(3):
        assert outcome(provider).status_code == 500
    assert Upstream.requests == 3 and provider.breaker.state == "open"

    clock.now += 10
    refused = outcome(provider)
    assert (refused.status_code, refused.code, refused.retry_after_s) == (
        503,
        "upstream_circuit_open",
        20,
    )
    assert Upstream.requests == 3, "an open breaker must not call the upstream"
    assert from_provider_error(refused).headers == {"Retry-After": "20"}

    clock.now += 20  # open period over: one probe, which fails, opens it again
    assert outcome(provider).status_code == 500
    assert Upstream.requests == 4
    assert outcome(provider).status_code == 503 and Upstream.requests == 4

    clock.now += 30
    Upstream.status = 200  # the upstream is back: the probe closes the breaker
    assert outcome(provider) == "ok"
    assert provider.breaker.state == "closed"
    assert outcome(provider) == "ok" and Upstream.requests == 6


def test_client_errors_never_open_it(upstream):
    Upstream.status = 404
    provider = provider_for(upstream, Clock())
    for _ in range(5):
        assert outcome(provider).status_code == 404
    assert Upstream.requests == 5 and provider.breaker.state == "closed"

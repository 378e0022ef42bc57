"""Issue 13's done-criterion: one trace follows a grounded question from the HTTP span to the
decode step, with the client's `traceparent` as parent, as a real OTLP/HTTP receiver gets it.

The server is the scripted provider's (no model to load); it reports its phases in the same
shape as the native engine (see providers/scripted.py), and the engine's own phase times are
checked in tests/unit/test_engine.py."""

from __future__ import annotations

import json
import secrets
import uuid

import httpx
import pytest

from tests.e2e.conftest import LIVE_ENV, SCRIPT
from tests.e2e.test_documents_api import CODE_WORD, FACTS
from tests.otlp_receiver import start_receiver
from tests.servers import start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    receiver = start_receiver()
    data = tmp_path_factory.mktemp("traced")
    (data / "script.json").write_text(json.dumps(SCRIPT))
    env = {**LIVE_ENV, "CHATWORKS_DATA_DIR": str(data), "CHATWORKS_PROVIDER": "scripted",
           "CHATWORKS_SCRIPT_PATH": str(data / "script.json"),
           "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
           "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
           "OTEL_SERVICE_NAME": "chatworks-under-test",
           "OTEL_BSP_SCHEDULE_DELAY": "100"}  # fmt: skip
    server = start_server("traced", env)
    yield server, receiver
    server.stop()
    receiver.server.shutdown()


def test_one_trace_from_the_client_span_to_decode(traced):
    server, receiver = traced
    collection = f"t-{uuid.uuid4().hex[:8]}"
    assert httpx.post(f"{server.api_url}/collections", json={"name": collection}).status_code == 201
    files = {"file": ("zephyr.md", FACTS.encode(), "text/markdown")}
    upload = httpx.post(f"{server.api_url}/collections/{collection}/documents", files=files,
                        timeout=120)  # fmt: skip
    assert upload.status_code == 201, upload.text

    trace_id, client_span = secrets.token_hex(16), secrets.token_hex(8)
    r = httpx.post(
        f"{server.api_url}/ask",
        json={"question": CODE_WORD, "collection": collection},
        headers={"traceparent": f"00-{trace_id}-{client_span}-01"},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    assert "BLUEBIRD-42" in r.json()["answer"] and not r.json()["refused"]

    def ours(spans):
        return [s for s in spans if s.trace_id == trace_id]

    # Spans arrive in batches as they end, the server span last (after the response is sent).
    needed = {"POST /v1/ask", f"retrieval {collection}", "embeddings", "vector search",
              "keyword search", "fusion", "auth", "limits", "prompt build", "decode"}  # fmt: skip
    spans = ours(receiver.wait_for(lambda got: needed <= {s.name for s in ours(got)}))
    by_name = {s.name: s for s in spans}
    by_id = {s.span_id: s for s in spans}

    def ancestors(span):
        chain = []
        while span.parent_span_id in by_id:
            span = by_id[span.parent_span_id]
            chain.append(span.name)
        return chain

    tree = {s.name: ancestors(s) for s in spans}
    http = by_name["POST /v1/ask"]
    assert http.parent_span_id == client_span  # the client's span is the parent
    assert http.kind == 2  # SERVER
    assert http.attributes["http.response.status_code"] == 200
    assert http.service == "chatworks-under-test"
    retrieval = by_name[f"retrieval {collection}"]
    assert retrieval.attributes["gen_ai.operation.name"] == "retrieval"
    for stage in ("embeddings", "vector search", "keyword search", "fusion"):
        assert ancestors(by_name[stage])[0] == retrieval.name, tree
        assert http.name in ancestors(by_name[stage]), tree
    for name in ("auth", "limits", "prompt build"):
        assert http.name in ancestors(by_name[name]), tree

    [chat] = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    model = chat.attributes["gen_ai.request.model"]
    assert chat.name == f"chat {model}"
    assert http.name in ancestors(chat), tree
    assert chat.attributes["gen_ai.provider.name"] == "scripted"
    assert model in {m["id"] for m in httpx.get(f"{server.api_url}/models").json()["data"]}
    assert chat.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert chat.attributes["gen_ai.usage.output_tokens"] > 0
    assert chat.attributes["gen_ai.usage.input_tokens"] > 0
    for phase in ("admission", "queue", "prefill", "decode"):
        assert by_name[phase].parent_span_id == chat.span_id, phase
    # No message content in any span: neither the question nor the answer.
    for span in spans:
        for value in span.attributes.values():
            assert "BLUEBIRD" not in str(value) and "Zephyr" not in str(value), span.name

    # Probes and scrapes make no traces (the server was polled on /readyz while starting).
    assert not [
        s.name for s in receiver.spans if s.name.startswith(("GET /readyz", "GET /metrics"))
    ]

    # Every log line written inside the request carries the trace id.
    lines = [json.loads(line) for line in server.log_lines() if line.startswith("{")]
    inside = [line for line in lines if line.get("trace_id") == trace_id]
    assert {"http_request", "generation"} <= {line["event"] for line in inside}
    assert all("span_id" in line for line in inside)


def test_the_trace_continues_through_an_upstream_provider(traced, tmp_path):
    """A gateway (openai provider) in front of the traced server: its `upstream` span sends
    `traceparent`, so the upstream's server span is that span's child, in the same trace."""
    upstream, receiver = traced
    gateway = start_server("traced-gateway", {
        "CHATWORKS_DATA_DIR": str(tmp_path), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_SERVICE_NAME": "chatworks-gateway", "OTEL_BSP_SCHEDULE_DELAY": "100",
    }, ["--provider", "openai", "--upstream-url", upstream.api_url])  # fmt: skip
    try:
        trace_id = secrets.token_hex(16)
        body = {"model": "scripted", "messages": [{"role": "user", "content": "hello"}]}
        client_context = {"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"}
        r = httpx.post(f"{gateway.api_url}/chat/completions", json=body, timeout=60,
                       headers=client_context)  # fmt: skip
        assert r.status_code == 200, r.text

        def ours(spans):
            return [s for s in spans if s.trace_id == trace_id]

        def both_sides(spans):
            services = {s.service for s in ours(spans) if s.name == "POST /v1/chat/completions"}
            return services == {"chatworks-gateway", "chatworks-under-test"}

        spans = ours(receiver.wait_for(both_sides))
    finally:
        gateway.stop()
    [sent] = [s for s in spans if s.name == "upstream"]
    assert sent.service == "chatworks-gateway" and sent.kind == 3  # CLIENT
    assert sent.attributes["gen_ai.provider.name"] == "openai"
    [received] = [s for s in spans if s.name == "POST /v1/chat/completions"
                  and s.service == "chatworks-under-test"]  # fmt: skip
    assert received.parent_span_id == sent.span_id

"""The official `openai` client against a real server running the default model."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from tests.e2e.conftest import MODEL

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(any_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=any_server.api_url, api_key="unused", max_retries=0)


def ask(client, content: str, **kwargs):
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **kwargs
    )


def test_models_lists_the_default_model(client):
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_chat_answers_with_usage(client):
    # What it answers is an eval (`chatworks eval probes`); here: that it answers, and the counts.
    r = ask(client, "What is the capital of France?", max_tokens=24, temperature=0)
    assert r.choices[0].message.content.strip()
    assert r.choices[0].finish_reason in {"stop", "length"}
    assert r.usage.prompt_tokens > 5
    assert 0 < r.usage.completion_tokens <= 24
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_max_tokens_ends_with_length(client):
    r = ask(client, "Write a long story about a dragon.", max_tokens=5, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5


# The second of two identical greedy requests would start from the first's keys and values
# (prefix reuse), which may flip a near-tie on some CPU; a seed makes each one computed afresh.
FRESH = {"temperature": 0, "seed": 0}


def test_stream_matches_non_stream_and_reports_usage_last(client):
    kwargs = {"max_tokens": 20, **FRESH}
    whole = ask(client, "Name three colors.", **kwargs)
    chunks = list(
        ask(
            client,
            "Name three colors.",
            stream=True,
            stream_options={"include_usage": True},
            **kwargs,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.usage is None for c in chunks[:-1])
    final = chunks[-1]
    assert final.choices == []
    assert final.usage.prompt_tokens == whole.usage.prompt_tokens
    assert final.usage.completion_tokens == whole.usage.completion_tokens
    assert final.usage.prompt_tokens_details == whole.usage.prompt_tokens_details  # streamed too


def test_a_conversation_turn_reports_its_cached_tokens(client, request):
    """The native engine's prefix cache: a second turn reuses the first turn's prompt, and usage
    says how many prompt tokens came from the cache the way OpenAI's does."""
    messages = [{"role": "user", "content": "Spell the word 'cache' backwards, letter by letter."}]
    first = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8,
                                           temperature=0)  # fmt: skip
    messages += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "Now forwards."}]  # fmt: skip
    second = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8,
                                            temperature=0).usage  # fmt: skip
    if request.node.callspec.params["any_server"] == "transformers":  # no cache, none reported
        assert second.prompt_tokens_details is None
        return
    assert second.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens
    assert second.prompt_tokens_details.cached_tokens < second.prompt_tokens


def test_same_seed_same_sample(client):
    kwargs = {"max_tokens": 16, "temperature": 1.0, "seed": 1234}
    first = ask(client, "Invent a name for a cat.", **kwargs).choices[0].message.content
    second = ask(client, "Invent a name for a cat.", **kwargs).choices[0].message.content
    assert first == second


def test_stop_string_is_not_emitted(client):
    prompt = "Count: 1, 2, 3, 4, 5, 6"
    full = client.completions.create(model=MODEL, prompt=prompt, max_tokens=12, temperature=0)
    text = full.choices[0].text
    stop = text.strip()[2:5] or text[:3]  # a string the model is known to produce
    cut = client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=12, temperature=0, stop=[stop]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].text == text[: text.index(stop)]


def test_completions_stream(client):
    chunks = list(
        client.completions.create(
            model=MODEL, prompt="The sky is", max_tokens=8, temperature=0, stream=True
        )
    )
    assert "".join(c.choices[0].text for c in chunks).strip()
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}


def test_stream_never_splits_a_multibyte_character(client):
    """Each Japanese character here takes two tokens: chunks must hold back half-characters.
    The prompt repeats itself, so any model that copies a pattern continues in Japanese."""
    kwargs = {"model": MODEL, "prompt": "日本の首都は東京です。" * 4 + "日本の", "max_tokens": 20}
    whole = client.completions.create(**FRESH, **kwargs)
    pieces = [c.choices[0].text for c in client.completions.create(**FRESH, stream=True, **kwargs)]
    assert any(ord(ch) > 0x3000 for ch in whole.choices[0].text), "the test needs CJK output"
    assert len([p for p in pieces if p]) < whole.usage.completion_tokens  # some were held back
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) == whole.choices[0].text


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"model": "no-such-model"}, 404, "model_not_found"),
        ({"temperature": 3}, 400, "invalid_request"),
        ({"top_p": 0}, 400, "invalid_request"),
        ({"max_tokens": 0}, 400, "invalid_request"),
        ({"max_tokens": 10**6}, 400, "invalid_max_tokens"),
        ({"n": 2}, 400, "invalid_request"),
        ({"stop": ["a", "b", "c", "d", "e"]}, 400, "invalid_request"),
        ({"messages": []}, 400, "invalid_request"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "invalid_request"),
        ({"messages": [{"role": "user", "content": "x" * 40_000}]}, 413, "message_too_long"),
        ({"messages": [{"role": "user", "content": "hi"}] * 300}, 413, "too_many_messages"),
    ],
)
def test_bad_input_gets_an_openai_shaped_error(client, kwargs, status, code):
    args = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**{**args, **kwargs})
    assert caught.value.status_code == status
    error = caught.value.body
    assert error["code"] == code and error["message"] and error["type"]


def test_oversized_body_and_malformed_json(any_server):
    url = f"{any_server.api_url}/chat/completions"
    big = httpx.post(url, content=b"{" + b" " * 2_000_000 + b"}", timeout=30)
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "request_too_large"
    broken = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400
    assert broken.json()["error"]["type"] == "invalid_request_error"
    missing = httpx.get(f"{any_server.base_url}/v1/nothing-here")
    assert missing.status_code == 404 and "error" in missing.json()


def test_request_id_is_echoed_and_logged_without_prompt(any_server, client):
    secret = "my-unique-prompt-marker-7731"
    r = httpx.post(
        f"{any_server.api_url}/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": secret}], "max_tokens": 3},
        headers={"X-Request-ID": "test-req-42"},
        timeout=60,
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "test-req-42"

    def mine() -> list[dict]:
        events = [json.loads(line) for line in any_server.log_lines() if line.startswith("{")]
        return [e for e in events if e.get("request_id") == "test-req-42"]

    # The access log line is written once the response is sent, so on a busy machine it can
    # land a moment after the client has the whole body: wait for it (bounded).
    deadline = time.monotonic() + 15
    while not {e["event"] for e in mine()} >= {"http_request", "generation"}:
        assert time.monotonic() < deadline, f"log lines never arrived: {mine()}"
        time.sleep(0.05)
    assert any(e.get("completion_tokens") == 3 for e in mine())
    assert secret not in any_server.log_path.read_text()


def test_metrics_count_generations(any_server, client):
    before = any_server.metric("chatworks_generation_tokens_total", model=MODEL)
    ask(client, "Say hello.", max_tokens=6, temperature=0)
    assert any_server.metric("chatworks_generation_tokens_total", model=MODEL) >= before + 1
    for histogram in (
        "chatworks_time_to_first_token_seconds",
        "chatworks_inter_token_latency_seconds",
        "chatworks_e2e_request_latency_seconds",
        "chatworks_request_queue_time_seconds",
    ):
        assert any_server.metric(f"{histogram}_count", model=MODEL) > 0, histogram
    assert any_server.metric("chatworks_prompt_tokens_total", model=MODEL) > 0
    assert (
        any_server.metric(
            "chatworks_http_requests_total",
            route="/v1/chat/completions",
            method="POST",
            status="200",
        )
        > 0
    )
    if httpx.get(f"{any_server.base_url}/readyz").json()["provider"] == "native":
        assert any_server.metric("chatworks_engine_decode_tokens_total", model=MODEL) > 0
        assert any_server.metric("chatworks_engine_prefill_tokens_total", model=MODEL) > 0
        assert "chatworks_kv_cache_usage_perc{" in httpx.get(f"{any_server.base_url}/metrics").text


def test_health_and_readiness(live_server):
    assert httpx.get(f"{live_server.base_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{live_server.base_url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert httpx.get(f"{live_server.base_url}/docs").status_code == 200

"""Settings from the environment and request validation against the configured limits."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from chatworks.api.errors import APIError
from chatworks.api.schemas import ChatCompletionRequest, CompletionRequest
from chatworks.api.service import Service
from chatworks.cache import config_fingerprint
from chatworks.providers.registry import create_provider
from chatworks.settings import Settings, answer_shaping_fields


def test_settings_read_prefixed_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CHATWORKS_PORT", "9001")
    monkeypatch.setenv("CHATWORKS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CHATWORKS_PROVIDER", "openai")
    s = Settings()
    assert (s.port, s.data_dir, s.provider) == (9001, tmp_path, "openai")


def test_settings_reject_nonsense(monkeypatch):
    monkeypatch.setenv("CHATWORKS_PORT", "70000")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.delenv("CHATWORKS_PORT")
    monkeypatch.setenv("CHATWORKS_PROVIDER", "magic")
    with pytest.raises(ValidationError):
        Settings()


def test_model_given_as_a_path_is_loaded_and_served_by_its_name(tmp_path):
    run = tmp_path / "runs" / "my-run"
    run.mkdir(parents=True)
    settings = Settings(model=str(run))
    assert (settings.model, settings.model_path) == ("my-run", run.resolve())
    (tmp_path / "tuned.gguf").touch()
    assert Settings(model=str(tmp_path / "tuned.gguf")).model == "tuned"
    assert Settings(model="smollm2-135m-instruct").model_path is None  # an id, not a path
    assert Settings(model=str(run), provider="openai").model_path is None  # upstream's id
    explicit = Settings(model="served-as", model_path=run)
    assert (explicit.model, explicit.model_path) == ("served-as", run)
    with pytest.raises(ValidationError, match="does not exist"):
        Settings(model=str(tmp_path / "runs" / "typo"))  # a path, mistyped: not an id
    assert Settings(model="HuggingFaceTB/SmolLM2-135M-Instruct").model_path is None  # an id


@pytest.fixture
def service() -> Service:
    settings = Settings(
        max_messages=3, max_message_chars=10, max_total_chars=25, max_tokens_limit=100,
        default_max_tokens=50, _env_file=None,
    )  # fmt: skip
    return Service.create(settings, create_provider(settings))


def chat(**kwargs) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        **{"model": "m", "messages": [{"role": "user", "content": "hi"}], **kwargs}
    )


def test_chat_request_is_translated(service):
    parts = [{"type": "text", "text": "hi "}, {"type": "text", "text": "you"}]
    messages = [{"role": "developer", "content": "be brief"}, {"role": "user", "content": parts}]
    request = service.chat_request(chat(messages=messages, stop="\n", seed=3, temperature=0))
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "be brief"),
        ("user", "hi you"),
    ]
    assert request.stop == ("\n",) and request.seed == 3 and request.max_tokens == 50


def test_max_completion_tokens_wins_over_max_tokens(service):
    assert service.chat_request(chat(max_tokens=10, max_completion_tokens=20)).max_tokens == 20


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"max_tokens": 101}, 400, "invalid_max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}] * 4}, 413, "too_many_messages"),
        ({"messages": [{"role": "user", "content": "x" * 11}]}, 413, "message_too_long"),
        ({"messages": [{"role": "user", "content": "x" * 9}] * 3}, 413, "prompt_too_long"),
    ],
)
def test_limits_give_clear_errors(service, kwargs, status, code):
    with pytest.raises(APIError) as caught:
        service.chat_request(chat(**kwargs))
    assert (caught.value.status_code, caught.value.code) == (status, code)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": -0.1},
        {"top_p": 1.5},
        {"n": 3},
        {"logprobs": True},
        {"frequency_penalty": 0.5},
        {"logit_bias": {"50256": -100.0}},
        {"functions": [{"name": "f"}]},
        {"response_format": {"type": "json_schema"}},
        {"tool_choice": "sometimes"},
        {"tool_choice": "required"},  # with no tools
        {"stop": ["1", "2", "3", "4", "5"]},
        {"messages": []},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
    ],
)
def test_schema_rejects_invalid_parameters(kwargs):
    with pytest.raises(ValidationError):
        chat(**kwargs)


def test_completion_accepts_one_prompt_and_rejects_unsupported_options(service):
    request = asyncio.run(service.completion_request(CompletionRequest(model="m", prompt=["ab"])))
    assert request.prompt == "ab"
    for bad in (
        {"prompt": ["a", "b"]},
        {"prompt": "a", "echo": True},
        {"prompt": "a", "logprobs": 2},
    ):
        with pytest.raises(ValidationError):
            CompletionRequest(model="m", **bad)


def test_unknown_request_fields_are_ignored_and_unsupported_ones_accepted_at_no_op_values():
    assert chat(store=False, metadata={"k": "v"}).model == "m"
    assert chat(n=1, logprobs=False, frequency_penalty=0, presence_penalty=0.0, logit_bias={})


# Every setting is declared in settings.py as shaping answers (`shaping(...)`: the response
# cache keys on it) or listed here as one that never changes what an answer says, with why. A
# new setting is in neither until someone decides, and the test below fails until then.
NEUTRAL = {
    # where and how the service runs
    "host", "port", "log_level", "data_dir", "workers", "shutdown_timeout_s", "database_url",
    # how fast, not what: kernels and batching (a near-tie token may go either way, as it may
    # on another CPU; either is the model's answer)
    "threads", "engine_slots", "engine_kv_cache_mb", "engine_compile", "engine_max_seq_len",
    "engine_prefill_tokens", "engine_prefix_cache_mb",
    # how the upstream is reached (its URL, which names the model's server, shapes answers)
    "upstream_key", "upstream_timeout_s", "upstream_retries", "upstream_breaker_failures",
    "upstream_breaker_open_s",
    # admission and limits: they refuse a request (4xx, 503), never change an answer
    "max_running_requests", "max_waiting_requests", "queue_timeout_s", "retry_after_s",
    "max_body_bytes", "max_messages", "max_message_chars", "max_total_chars", "max_tokens_limit",
    # ingestion only: what it changes moves the collection's version, which keys the entry
    "embedding_batch_size", "max_upload_bytes", "allowed_file_types",
    # where batch jobs run (`chatworks spark ...`), not what they compute
    "spark_master",
    # who may call, and how they are limited
    "auth", "insecure", "admin_key", "redis_url", "redis_fail_open", "oidc_jwks", "oidc_issuer",
    "oidc_audience", "oidc_algorithms", "oidc_scopes_claim", "oidc_scope_prefix",
    "oidc_owner_claim",
    # the agent loop's bounds: they end or refuse a run, never change what a step says
    "approval_timeout_s", "tool_timeout_s", "agent_max_steps", "agent_max_seconds",
    # what is logged, and the cache itself
    "log_content", "cache", "cache_ttl_s", "cache_max_entries",
    # lab models: /v1/classify is never cached, and chat answers do not depend on them
    "lab_store", "classify_alias",
}  # fmt: skip


def test_every_setting_is_declared_as_shaping_answers_or_not():
    shaping = set(answer_shaping_fields())
    assert not shaping & NEUTRAL
    undecided = set(Settings.model_fields) - shaping - NEUTRAL
    assert not undecided, f"declare with settings.shaping(...) or list in NEUTRAL: {undecided}"


@pytest.mark.parametrize(
    "change",
    [{"guard_pii": "redact"}, {"guard_prompt_injection": "block"}, {"rag_top_k": 3},
     {"engine_precision": "fp32"}, {"upstream_url": "http://127.0.0.1:9/v1"}],
)  # fmt: skip
def test_a_setting_that_changes_answers_changes_the_cache_key(change):
    base = Settings(_env_file=None)
    assert config_fingerprint(Settings(**change, _env_file=None)) != config_fingerprint(base)
    assert config_fingerprint(Settings(threads=2, _env_file=None)) == config_fingerprint(base)

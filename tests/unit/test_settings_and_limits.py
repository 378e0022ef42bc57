"""Settings from the environment and request validation against the configured limits."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chatworks.api.errors import APIError
from chatworks.api.schemas import ChatCompletionRequest, CompletionRequest
from chatworks.api.service import Service
from chatworks.providers.registry import create_provider
from chatworks.settings import Settings


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
    assert service.completion_request(CompletionRequest(model="m", prompt=["ab"])).prompt == "ab"
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

"""Constrained decoding in the engine and the native provider, on the real bundled weights.

Validity is asserted, never words: the grammar guarantees the shape whatever the kernels round.
"""

from __future__ import annotations

import json
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from chatworks.engine.constraints import (
    Constrainer,
    GrammarError,
    json_schema_grammar,
    lark_grammar,
)
from chatworks.engine.sampling import SamplingParams
from chatworks.engine.scheduler import Engine
from chatworks.model import load_pretrained
from chatworks.providers.base import (
    GenerationRequest,
    Message,
    ProviderError,
    ResponseFormat,
    Tool,
    ToolCall,
)
from chatworks.providers.structured import CallSplitter, format_call, parse_calls, plan
from tests.unit.test_engine import _collect

pytestmark = pytest.mark.kernels  # computes with real weights: run again on AVX2


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str = Field(max_length=20)
    country: Literal["FR", "DE", "JP"]


class Person(BaseModel):
    """Objects, nesting ($ref), enums, integers, numbers, bounded strings and arrays,
    optional properties and anyOf (`X | None`)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=24)
    age: int = Field(ge=0, le=150)
    height_m: float = Field(ge=0, le=3)
    address: Address
    tags: list[Literal["a", "b", "c"]] = Field(max_length=3)
    nickname: str | None = Field(None, max_length=12)


PROMPT = "<|im_start|>user\nDescribe a person as JSON.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def loaded():
    return load_pretrained()


@pytest.fixture(scope="module")
def constrainer(loaded):
    model, tok = loaded
    return Constrainer(tok.hf.to_str(), tok.eos_token_ids, model.cfg.vocab_size)


@pytest.fixture(scope="module")
def engine(loaded, constrainer):
    eng = Engine(loaded[0], slots=4, max_waiting=8, constrainer=constrainer).start()
    yield eng
    eng.stop()


def _params(tok, **kwargs) -> SamplingParams:
    """Stopping on EOS, which the grammar allows once the output is complete."""
    return SamplingParams(stop_token_ids=tok.eos_token_ids, **kwargs)


def test_constrained_and_free_sequences_share_a_batch(loaded, engine, constrainer):
    """Constrained rows are valid against the schema (greedy and sampled); a free sequence in
    the same batch gets exactly the tokens it gets alone."""
    tok = loaded[1]
    ids = tok.encode(PROMPT)
    grammar = json_schema_grammar(Person.model_json_schema())
    free = _params(tok, max_tokens=24, temperature=0)
    alone, _ = engine.generate(ids, free)
    runs = [
        _collect(
            engine, ids, _params(tok, max_tokens=120, temperature=0), constrainer.matcher(grammar)
        ),
        _collect(engine, ids, _params(tok, max_tokens=120, seed=7), constrainer.matcher(grammar)),
        _collect(engine, ids, free),
    ]
    for _, _, done, _ in runs:
        assert done.wait(120)
    for out, finish, _, _ in runs[:2]:
        assert finish[0].reason == "stop", tok.decode(out)
        Person.model_validate_json(tok.decode(out))
    assert runs[2][0] == alone


def test_any_object_and_a_lark_grammar(loaded, engine, constrainer):
    tok = loaded[1]
    ids = tok.encode(PROMPT)
    out, finish = engine.generate(
        ids,
        _params(tok, max_tokens=60, temperature=0),
        constrainer.matcher(json_schema_grammar(None)),
    )
    # Any object may be unbounded (keys, strings): only its start is certain in 60 tokens.
    text = tok.decode(out)
    assert text.startswith("{") and (
        finish.reason == "length" or isinstance(json.loads(text), dict)
    )
    choice = lark_grammar('start: "yes" | "no"\n')
    out, finish = engine.generate(
        ids, _params(tok, max_tokens=8, seed=1), constrainer.matcher(choice)
    )
    assert tok.decode(out) in ("yes", "no") and finish.reason == "stop"


def test_a_schema_that_does_not_compile_is_a_grammar_error(constrainer):
    with pytest.raises(GrammarError):
        constrainer.matcher(
            json_schema_grammar({"type": "object", "properties": {"a": {"type": "strin"}}})
        )


# --- prompt format and parsing (no model) -------------------------------------------------------

WEATHER = Tool(
    "get_weather",
    "Current weather in a city",
    {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
     "required": ["city"], "additionalProperties": False},
)  # fmt: skip
CLOCK = Tool("get_time", "The time now", {"type": "object", "properties": {}})


def _chat(*messages: Message, **kwargs) -> GenerationRequest:
    return GenerationRequest(model="m", messages=messages, temperature=0, **kwargs)


def test_plan_describes_tools_and_renders_past_calls():
    call = ToolCall("call_1", "get_weather", '{"city": "Oslo"}')
    request = _chat(
        Message("user", "weather?"),
        Message("assistant", "", (call,)),
        Message("tool", "sunny", tool_call_id="call_1"),
        tools=(WEATHER, CLOCK),
        tool_choice="required",
    )
    p = plan(request)
    assert p.may_call and p.grammar is not None
    system, _, assistant, tool = p.messages
    assert (
        system.role == "system" and "get_weather" in system.content and "get_time" in system.content
    )
    assert assistant.content == format_call(call) and not assistant.tool_calls
    assert (tool.role, tool.content) == ("tool", "sunny")


def test_plan_without_tools_or_with_none_is_free_text():
    assert plan(_chat(Message("user", "hi"))).grammar is None
    p = plan(
        _chat(
            Message("system", "be brief"),
            Message("user", "hi"),
            tools=(WEATHER,),
            tool_choice="none",
        )
    )
    assert (p.grammar, p.may_call) == (None, False) and p.messages[0].content == "be brief"
    fmt = plan(_chat(Message("user", "hi"), response_format=ResponseFormat("json_object")))
    assert fmt.grammar is not None and not fmt.may_call


def test_a_named_tool_that_is_not_offered_is_a_400():
    with pytest.raises(ProviderError) as caught:
        plan(_chat(Message("user", "hi"), tools=(WEATHER,), tool_choice="nope"))
    assert caught.value.status_code == 400


def test_call_splitter_streams_text_and_holds_calls():
    text = CallSplitter(may_call=True)
    assert text.push("Hello") == "Hello" and text.push(" <b>") == " <b>" and text.calls() == ()
    calls = CallSplitter(may_call=True)
    body = '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    assert calls.push(body[:9]) == "" and calls.push(body[9:] + body) == ""
    parsed = calls.calls()
    assert [(c.name, json.loads(c.arguments)) for c in parsed] == [
        ("get_weather", {"city": "Oslo"})
    ] * 2
    assert len({c.id for c in parsed}) == 2
    assert len(parse_calls(body + '<tool_call>{"name": ')) == 1  # a call cut short is dropped

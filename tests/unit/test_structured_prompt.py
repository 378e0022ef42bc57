"""Structured output and tool calls without a model: the prompt format, the grammar choice,
and the parsing of calls (providers/structured.py)."""

from __future__ import annotations

import json

import pytest

from chatworks.providers.base import (
    GenerationRequest,
    Message,
    ProviderError,
    ResponseFormat,
    Tool,
    ToolCall,
)
from chatworks.providers.structured import CallSplitter, format_call, parse_calls, plan

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

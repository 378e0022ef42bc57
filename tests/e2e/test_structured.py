"""Structured output and tool calls against the real server and default model, through clients
used unchanged: LangChain's `langchain-openai` and the official `openai` library.

The grammar makes the shape certain whatever the CPU's kernels round, so the tests assert
validity (a parse, a call of the named tool with arguments of the right types), never words.
Schemas bound their strings so every reply ends well inside `max_tokens`.
"""

from __future__ import annotations

from typing import Literal

import httpx
import openai
import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tests.e2e.conftest import MODEL


class Contact(BaseModel):
    """A person mentioned in the text."""

    name: str = Field(max_length=30)
    age: int = Field(ge=0, le=120)
    city: str = Field(max_length=20)
    role: Literal["engineer", "doctor", "teacher", "other"]


EXTRACTION = [
    "Alice Martin, 34, is an engineer in Paris.",
    "Dr. Kenji Sato (52) practises medicine in Osaka.",
    "Maria Lopez teaches maths in Madrid; she is 41.",
    "Tom, a 28-year-old software engineer, moved to Berlin.",
    "Fatima Khan is 63 and a retired doctor living in Lahore.",
    "Our new teacher, Mr. Brown, is 45 and comes from Leeds.",
    "Li Wei, 19, studies in Shanghai.",
    "Olga Ivanova (37), engineer, Moscow.",
    "Peter Jones is a 55-year-old doctor from Dublin.",
    "Ana Silva, aged 23, teaches music in Lisbon.",
]

WEATHER_PROMPTS = [
    "What's the weather in Berlin?",
    "Is it raining in London right now?",
    "Do I need an umbrella in Tokyo today?",
    "How hot is it in Cairo?",
    "Tell me the forecast for Sydney.",
    "Weather in New York, please.",
    "Is it snowing in Oslo?",
    "What is the temperature in Rome?",
    "Should I wear a coat in Toronto?",
    "Check the weather for Madrid.",
]


@tool
def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Get the current weather in a city."""
    return f"18 degrees {unit} and sunny in {city}"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@pytest.fixture(scope="module")
def llm(live_server) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=live_server.api_url, api_key="unused", model=MODEL, temperature=0, max_tokens=100
    )


def test_langchain_structured_output_parses_every_extraction(llm):
    structured = llm.with_structured_output(Contact, method="json_schema")
    parsed = structured.batch(EXTRACTION, config={"max_concurrency": 2})
    assert [type(p) for p in parsed] == [Contact] * len(EXTRACTION)


def test_langchain_bind_tools_required_calls_the_tool_every_time(llm):
    bound = llm.bind_tools([get_weather], tool_choice="required")
    replies = bound.batch(WEATHER_PROMPTS, config={"max_concurrency": 2})
    for reply in replies:
        assert reply.response_metadata["finish_reason"] == "tool_calls"
        assert reply.tool_calls and {c["name"] for c in reply.tool_calls} == {"get_weather"}
        for call in reply.tool_calls:
            get_weather.args_schema.model_validate(call["args"])
    named = llm.bind_tools([add, get_weather], tool_choice="get_weather").invoke(WEATHER_PROMPTS[0])
    assert named.tool_calls and {c["name"] for c in named.tool_calls} == {"get_weather"}


def test_langchain_tool_loop_streams_a_call_and_takes_the_result_back(llm):
    bound = llm.bind_tools([get_weather], tool_choice="required")
    question = HumanMessage("What's the weather in Lima?")
    streamed = None
    for chunk in bound.stream([question]):
        streamed = chunk if streamed is None else streamed + chunk
    (call,) = streamed.tool_calls[:1]
    assert call["name"] == "get_weather" and isinstance(call["args"]["city"], str)
    result = ToolMessage(get_weather.invoke(call["args"]), tool_call_id=call["id"])
    answer = llm.bind_tools([get_weather], tool_choice="none", max_tokens=20).invoke(
        [question, streamed, result]
    )
    assert answer.content and not answer.tool_calls


def test_openai_parse_with_a_pydantic_model(live_server):
    client = openai.OpenAI(base_url=live_server.api_url, api_key="unused")
    completion = client.beta.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": EXTRACTION[0]}],
        response_format=Contact,
        temperature=0,
        max_tokens=100,
    )
    assert isinstance(completion.choices[0].message.parsed, Contact)


def test_auto_answers_text_or_a_valid_call(llm):
    reply = llm.bind_tools([get_weather]).invoke(WEATHER_PROMPTS[1])
    for call in reply.tool_calls:
        assert call["name"] == "get_weather"
        get_weather.args_schema.model_validate(call["args"])
    assert reply.tool_calls or (reply.content and not reply.invalid_tool_calls)


def test_text_completion_follows_a_schema(live_server):
    client = openai.OpenAI(base_url=live_server.api_url, api_key="unused")
    fmt = {
        "type": "json_schema",
        "json_schema": {"name": "contact", "schema": Contact.model_json_schema()},
    }
    completion = client.completions.create(
        model=MODEL, prompt=f"{EXTRACTION[2]}\nAs JSON:", max_tokens=100, temperature=0,
        extra_body={"response_format": fmt},
    )  # fmt: skip
    assert completion.choices[0].finish_reason == "stop"
    Contact.model_validate_json(completion.choices[0].text)


def test_json_object_streams_json(live_server):
    client = openai.OpenAI(base_url=live_server.api_url, api_key="unused")
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Give Ada's age as JSON."}],
        response_format={"type": "json_object"},
        temperature=0,
        max_tokens=40,
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith("{")


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"frequency_penalty": 1.0}, "frequency_penalty"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"a": {"type": "strin"}}}}}}, "strin"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {
            "type": "function", "function": {"name": "g"}}}, "'g'"),
    ],
)  # fmt: skip
def test_what_cannot_be_honoured_is_a_400_naming_it(live_server, extra, named):
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    r = httpx.post(f"{live_server.api_url}/chat/completions", json={**body, **extra}, timeout=60)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert named in error["message"]
    if "tools" not in extra and "response_format" not in extra:  # a parameter, by name
        assert error["param"] == named

"""The `openai` provider: a second chatworks forwards to the live one as its upstream."""

from __future__ import annotations

import json

import openai
import pytest

from tests.e2e.conftest import MODEL
from tests.servers import start_server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def gateway(live_server, tmp_path_factory):
    server = start_server(
        "gateway",
        {"CHATWORKS_DATA_DIR": str(tmp_path_factory.mktemp("gateway"))},
        ["--provider", "openai", "--upstream-url", live_server.api_url],
    )
    yield server
    server.stop()


def test_gateway_forwards_chat_and_streams(gateway, live_server):
    via_gateway = openai.OpenAI(base_url=gateway.api_url, api_key="x", max_retries=0)
    direct = openai.OpenAI(base_url=live_server.api_url, api_key="x", max_retries=0)
    kwargs = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "What is 2 + 2?"}],
        "max_tokens": 12,
        "temperature": 0,
    }
    assert [m.id for m in via_gateway.models.list().data] == [MODEL]
    forwarded = via_gateway.chat.completions.create(**kwargs)
    expected = direct.chat.completions.create(**kwargs)
    assert forwarded.choices[0].message.content == expected.choices[0].message.content
    assert forwarded.usage.completion_tokens == expected.usage.completion_tokens
    chunks = list(
        via_gateway.chat.completions.create(
            **kwargs, stream=True, stream_options={"include_usage": True}
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == expected.choices[0].message.content
    assert chunks[-1].usage.total_tokens == expected.usage.total_tokens


def test_gateway_forwards_tools_and_response_format(gateway):
    """The fields reach the upstream, which enforces them; its calls come back as tool_calls,
    streamed too, and a tool turn goes back up."""
    client = openai.OpenAI(base_url=gateway.api_url, api_key="x", max_retries=0)
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"]}}}  # fmt: skip
    ask = [{"role": "user", "content": "Weather in Oslo?"}]
    kwargs = {"model": MODEL, "max_tokens": 60, "temperature": 0, "tools": [weather]}
    reply = client.chat.completions.create(messages=ask, tool_choice="required", **kwargs)
    (call,) = reply.choices[0].message.tool_calls[:1]
    assert reply.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    chunks = client.chat.completions.create(
        messages=ask, tool_choice="required", stream=True, **kwargs
    )
    streamed = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or ()]
    assert streamed and streamed[0].function.name == "get_weather"
    turn = [*ask, reply.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]  # fmt: skip
    assert client.chat.completions.create(messages=turn, tool_choice="none", **kwargs).choices
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
              "required": ["city"]}  # fmt: skip
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}
    data = client.chat.completions.create(messages=ask, response_format=fmt, **kwargs)
    assert isinstance(json.loads(data.choices[0].message.content)["city"], str)


def test_gateway_passes_upstream_errors_through(gateway):
    client = openai.OpenAI(base_url=gateway.api_url, api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="missing", messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )


def test_unreachable_upstream_is_a_clean_502(tmp_path, live_server):
    from tests.servers import free_port

    dead = f"http://127.0.0.1:{free_port()}/v1"
    server = start_server(
        "dead-upstream",
        {"CHATWORKS_DATA_DIR": str(tmp_path), "CHATWORKS_UPSTREAM_RETRIES": "1"},
        ["--provider", "openai", "--upstream-url", dead],
    )
    try:
        client = openai.OpenAI(base_url=server.api_url, api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            client.models.list()
        assert caught.value.status_code == 502
        assert caught.value.body["code"] == "upstream_unreachable"
    finally:
        server.stop()

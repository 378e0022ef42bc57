"""Agents through the real server: the Responses API with the `openai` client and the OpenAI
Agents SDK, MCP tools of a registered server (the notes server, stdio), approvals that pause a
run and survive a restart, exactly-once writes, keys' tool scopes and lists, the audit log, and
chatworks itself as an MCP server. The model is scripted (`evals/agents.OBEYING_MODEL`, plus a
client-side function), so what is tested is the control flow, never a model's words."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import httpx2
import openai
import pytest

from chatworks.evals.agents import OBEYING_MODEL
from tests.e2e.conftest import ADMIN_KEY, create_key, scripted_env, secured_env
from tests.servers import LiveServer, start_server

pytestmark = pytest.mark.e2e

WEATHER = [{"match": r"weather in (\w+)", "reply": '<tool_call>{"name": "get_weather", '
            '"arguments": {"city": "\\1"}}</tool_call>'},
           {"match": r"^sunny in (\w+)", "reply": r"It is sunny in \1."},
           {"match": r"^Write a bad note", "reply": '<tool_call>{"name": "notes__write_note", '
            '"arguments": {"name": "x"}}</tool_call>'}]  # fmt: skip
NOTES = {"recipe": "Pancakes need flour.", "todo": "Renew the passport."}


def notes_store(root: Path) -> Path:
    store = root / "store"
    (store / "files").mkdir(parents=True)
    (store / "notes.json").write_text(json.dumps(NOTES))
    return store


def serve(name: str, data: Path, store: Path, secured: bool = True) -> LiveServer:
    """A scripted server whose agents may call the notes server (registered with the CLI, as
    an admin would); keys required unless `secured` is false."""
    data.mkdir(parents=True, exist_ok=True)
    script = data / "agent-script.json"
    script.write_text(json.dumps({"rules": WEATHER + OBEYING_MODEL["rules"]}))
    env = (secured_env if secured else scripted_env)(data, CHATWORKS_SCRIPT_PATH=str(script))
    command = f"{sys.executable} -m chatworks.evals.mcp_notes --store {store}"
    register = [sys.executable, "-m", "chatworks.cli", "mcp", "add", "notes", "--command", command]
    subprocess.run(register, env={**os.environ, **env}, check=True, capture_output=True)
    return start_server(name, env)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("agents")
    store = notes_store(root)
    server = serve("agents", root / "data", store)
    yield server, store
    server.stop()


def client_for(server: LiveServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_url, api_key=key, max_retries=0)


def writes(store: Path) -> list[dict]:
    log = store / "calls.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


NOTES_TOOL = [{"type": "mcp", "server_label": "notes"}]


def ask_to_write(client: openai.OpenAI, name: str):
    response = client.responses.create(
        model="scripted", tools=NOTES_TOOL, input=f"Write a note called {name} saying hello there"
    )
    [request] = [o for o in response.output if o.type == "mcp_approval_request"]
    assert (request.name, json.loads(request.arguments)["name"]) == ("write_note", name)
    return response, request


def answer(client: openai.OpenAI, response, request, approve: bool, **extra):
    return client.responses.create(
        model="scripted", tools=NOTES_TOOL, previous_response_id=response.id,
        input=[{"type": "mcp_approval_response", "approval_request_id": request.id,
                "approve": approve, **extra}],
    )  # fmt: skip


@pytest.fixture(scope="module")
def agent_key(world):
    return create_key(world[0], name="agent", scopes=["chat", "documents", "tools"])[1]


def test_a_write_waits_for_approval_and_runs_once_however_often_it_is_answered(world, agent_key):
    server, store = world
    client = client_for(server, agent_key)
    response, request = ask_to_write(client, "once")
    assert [o.type for o in response.output] == ["mcp_list_tools", "mcp_approval_request"]
    assert not [w for w in writes(store) if w.get("name") == "once"]  # nothing ran yet
    results = []
    resumes = [threading.Thread(target=lambda: results.append(
        answer(client, response, request, True))) for _ in range(3)]  # fmt: skip
    for thread in resumes:
        thread.start()
    for thread in resumes:
        thread.join(60)
    again = answer(client, response, request, True)  # a retried resume, after the others
    assert [w["name"] for w in writes(store) if w["tool"] == "write_note"].count("once") == 1
    for done in [*results, again]:
        [call] = [o for o in done.output if o.type == "mcp_call"]
        assert call.approval_request_id == request.id and call.output == "saved note once"
        assert done.output_text == "Done: saved the note once."


def test_a_denied_write_does_not_run_and_the_audit_log_has_both(world, agent_key):
    server, store = world
    client = client_for(server, agent_key)
    response, request = ask_to_write(client, "denied")
    denied = answer(client, response, request, False, reason="not now")
    [call] = [o for o in denied.output if o.type == "mcp_call"]
    assert call.error == "denied by the user: not now"
    assert "denied" in denied.output_text
    assert not [w for w in writes(store) if w.get("name") == "denied"]
    log = httpx.get(f"{server.api_url}/audit", params={"response_id": denied.id},
                    headers={"X-API-Key": ADMIN_KEY}).json()["data"]  # fmt: skip
    [entry] = [e for e in log if e["action"] == "tool.call"]
    assert (entry["resource"], entry["outcome"]) == ("notes/write_note", "denied")
    assert entry["detail"]["approved_by"] and entry["response_id"] == denied.id


def test_servers_and_urls_that_are_not_registered_are_refused(world, agent_key):
    client = client_for(world[0], agent_key)
    for tool in (
        {"type": "mcp", "server_label": "elsewhere"},
        {"type": "mcp", "server_label": "notes", "server_url": "http://10.0.0.1/mcp"},
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(model="scripted", input="hi", tools=[tool])
        assert refused.value.code == "mcp_server_not_registered"


def test_keys_need_the_tools_scope_and_their_tool_list_holds(world):
    server, store = world
    _, chat_only = create_key(server, name="chat-only", scopes=["chat"])
    with pytest.raises(openai.PermissionDeniedError):
        client_for(server, chat_only).responses.create(model="scripted", input="hi",
                                                       tools=NOTES_TOOL)  # fmt: skip
    _, readers = create_key(server, name="readers", scopes=["chat", "tools"],
                            tools=["notes:read_*", "notes:list_*"])  # fmt: skip
    client = client_for(server, readers)
    response = client.responses.create(model="scripted", tools=NOTES_TOOL,
                                       input="Write a note called blocked saying no")  # fmt: skip
    [listed] = [o for o in response.output if o.type == "mcp_list_tools"]
    assert "write_note" not in {t.name for t in listed.tools}  # never offered...
    [call] = [o for o in response.output if o.type == "mcp_call"]
    assert call.error.startswith("blocked")  # ...and refused when called anyway
    assert not [w for w in writes(store) if w.get("name") == "blocked"]


def test_invalid_arguments_go_back_to_the_model_as_an_error(world, agent_key):
    client = client_for(world[0], agent_key)
    response = client.responses.create(model="scripted", tools=NOTES_TOOL,
                                       input="Write a bad note")  # fmt: skip
    [call] = [o for o in response.output if o.type == "mcp_call"]
    assert call.error.startswith("invalid arguments") and "text" in call.error


def test_stream_events_come_in_openai_order(world, agent_key):
    client = client_for(world[0], agent_key)
    events = list(client.responses.create(model="scripted", tools=NOTES_TOOL, stream=True,
                                          input="Read the note recipe"))  # fmt: skip
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "response.output_text.delta" in kinds
    final = events[-1].response
    assert [o.type for o in final.output] == ["mcp_list_tools", "mcp_call", "message"]
    assert final.output_text == "Pancakes need flour."


def test_responses_are_stored_for_their_tenant_only(world, agent_key):
    server, _ = world
    client = client_for(server, agent_key)
    response = client.responses.create(model="scripted", input="Hello there")
    assert client.responses.retrieve(response.id).output_text == "Hello there"
    _, stranger = create_key(server, name="stranger", scopes=["chat"])
    with pytest.raises(openai.NotFoundError):
        client_for(server, stranger).responses.retrieve(response.id)
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


def test_the_agents_sdk_runs_client_functions_and_approved_mcp_tools(world, agent_key):
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
    from agents.tool import HostedMCPTool

    server, store = world
    set_tracing_disabled(True)  # its default exporter would call a hosted service

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    asked = []

    def approve(request):
        asked.append(request.data.name)
        return {"approve": True}

    async def run() -> tuple[str, str]:
        model = OpenAIResponsesModel("scripted", openai.AsyncOpenAI(
            base_url=server.api_url, api_key=agent_key, max_retries=0))  # fmt: skip
        weather = await Runner.run(Agent(name="w", model=model, tools=[get_weather]),
                                   "What is the weather in Oslo?")  # fmt: skip
        notes = HostedMCPTool(tool_config={"type": "mcp", "server_label": "notes"},
                              on_approval_request=approve)  # fmt: skip
        wrote = await Runner.run(Agent(name="n", model=model, tools=[notes]),
                                 "Write a note called sdk saying from the agents sdk")  # fmt: skip
        return weather.final_output, wrote.final_output

    weather, wrote = asyncio.run(run())
    assert weather == "It is sunny in Oslo."
    assert wrote == "Done: saved the note sdk." and asked == ["write_note"]
    assert [w["name"] for w in writes(store) if w["tool"] == "write_note"].count("sdk") == 1


def test_pending_approvals_survive_a_restart(tmp_path):
    store = notes_store(tmp_path)
    server = serve("agents-restart", tmp_path / "data", store)
    try:
        key = create_key(server, name="restart", scopes=["chat", "tools"])[1]
        response, request = ask_to_write(client_for(server, key), "later")
    finally:
        server.stop()
    server = start_server(
        "agents-restarted",
        secured_env(
            tmp_path / "data", CHATWORKS_SCRIPT_PATH=str(tmp_path / "data" / "agent-script.json")
        ),
    )
    try:
        done = answer(client_for(server, key), response, request, True)
        assert done.output_text == "Done: saved the note later."
        assert [w["name"] for w in writes(store)] == ["later"]
    finally:
        server.stop()


def test_chatworks_serves_its_collections_as_mcp_tools(world, agent_key, tmp_path):
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters
    from mcp.client.streamable_http import streamable_http_client

    server, _ = world
    headers = {"Authorization": f"Bearer {agent_key}"}
    httpx.post(f"{server.api_url}/collections", json={"name": "mcp-docs"}, headers=headers)
    assert httpx.post(f"{server.base_url}/mcp/", json={}).status_code == 401  # no key

    async def over_http() -> tuple[set[str], list]:
        # The SDK's HTTP client is httpx2 (its fork of httpx); the key goes in its headers.
        async with httpx2.AsyncClient(headers=headers) as http, Client(
            streamable_http_client(f"{server.base_url}/mcp/", http_client=http)
        ) as mcp:  # fmt: skip
            names = {t.name for t in (await mcp.list_tools()).tools}
            found = await mcp.call_tool("list_collections", {})
            return names, found.structured_content["result"]

    names, collections = asyncio.run(over_http())
    assert names == {"list_collections", "search", "ask"}
    assert "mcp-docs" in [c["name"] for c in collections]

    async def over_stdio() -> set[str]:
        data = tmp_path / "stdio-data"
        params = StdioServerParameters(command=sys.executable, args=["-m", "chatworks.cli", "mcp",
                                       "serve"], env={"CHATWORKS_DATA_DIR": str(data)})  # fmt: skip
        async with Client(params) as mcp:
            listed = await mcp.call_tool("list_collections", {})
            return {t.name for t in (await mcp.list_tools()).tools}, listed.is_error

    names, failed = asyncio.run(over_stdio())
    assert names == {"list_collections", "search", "ask"} and not failed

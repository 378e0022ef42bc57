"""The Responses API's request pipeline: from a typed request to a started agent run.

Everything that can be refused is refused before the response starts (so it gets its status
code): the key's scopes (`tools` for MCP servers, `documents` for file search), the servers
(registered ones only: a `server_url` no registration has is a 400), the collections (403/404
as for every collection route), the previous response (the caller's tenant's, else 404), the
input and the approvals it answers, the model. Then the MCP sessions are opened and their
tools listed, and `AgentRun` runs `agents.loop.Run` over the API's own generation path
(admission gate, metering, the caller's lease) and file search over the grounded pipeline's
retrieval, and stores the response with what continuing it needs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from pydantic import TypeAdapter

from chatworks.agents import items
from chatworks.agents.items import Input, Turn, parse_input
from chatworks.agents.loop import Event, Finished, ItemDone, Limits, Run, State, Toolbox
from chatworks.agents.mcp_client import Registered, Sessions, find
from chatworks.agents.policy import ApprovalRule
from chatworks.agents.store import get_approval, load_response, save_response
from chatworks.api.access import CollectionAccess, checked_collection
from chatworks.api.errors import APIError
from chatworks.api.generation import start_generation
from chatworks.api.grounded import search
from chatworks.api.quota import Lease
from chatworks.api.schemas_responses import (
    FileSearchToolIn,
    FunctionToolIn,
    McpChoice,
    McpToolIn,
    NamedFunctionChoice,
    ResponseCreate,
    ToolIn,
)
from chatworks.api.service import Service
from chatworks.providers.base import Delta, GenerationRequest, Tool
from chatworks.security.principal import Principal

_TOOLS = TypeAdapter(list[ToolIn])


def response_not_found(response_id: str, param: str | None = None) -> APIError:
    """A stored response the caller cannot see: missing, deleted or another tenant's."""
    return APIError(404, f"response '{response_id}' not found", "response_not_found", param)


def _bad(message: str, param: str | None = None, code: str = "invalid_request") -> APIError:
    return APIError(400, message, code, param)


async def _collections(
    service: Service, principal: Principal, tool: FileSearchToolIn
) -> list[CollectionAccess]:
    """The file search tool's collections, checked as every collection route checks them."""
    return [await checked_collection(n, principal, service) for n in tool.vector_store_ids]


def _tool_choice(choice: Any, toolbox: Toolbox) -> str:
    """Responses' `tool_choice` as the provider's: auto, required, none, or one function."""
    if isinstance(choice, str):
        return choice
    if isinstance(choice, NamedFunctionChoice):
        return choice.name
    if isinstance(choice, McpChoice):
        named = [n for n, t in toolbox.mcp.items()
                 if t.server == choice.server_label and choice.name in (None, t.name)]  # fmt: skip
        if len(named) != 1:
            raise _bad("tool_choice names no one tool of that server", "tool_choice")
        return named[0]
    return "file_search"


class AgentRun:
    """One response under way. Read it as events (`events`, for streams) or whole (`result`),
    and `close` it (its MCP sessions) either way."""

    def __init__(self, service: Service, principal: Principal, body: ResponseCreate,
                 lease: Lease):  # fmt: skip
        self.service, self.principal, self.body, self.lease = service, principal, body, lease
        self.id = items.new_id("resp")
        self.created_at = int(time.time())
        self.output: list[dict[str, Any]] = []
        self._sessions = Sessions()
        self._state = State(tools=[t.model_dump(exclude_none=True) for t in body.tools])
        self._answers: list[dict[str, Any]] = []
        self._run: Run | None = None

    async def start(self) -> AgentRun:
        """Every check and connection before the first byte (see the module docstring)."""
        body, service = self.body, self.service
        try:
            parsed = parse_input(body.input)
        except (ValueError, KeyError) as exc:
            raise _bad(f"input: {exc}", "input") from None
        previous_id = body.previous_response_id or await self._answered_response(parsed)
        if previous_id:
            owner = self.principal.owner_filter
            previous = await service.db.read(lambda s: load_response(s, previous_id, owner))
            if previous is None:
                raise response_not_found(previous_id, "previous_response_id")
            tools = self._state.tools
            self._state = State.from_json(previous.state)
            if body.tools:  # tools are sent again with each request; else the last ones hold
                self._state.tools = tools
            else:
                body = body.model_copy(update={"tools": _TOOLS.validate_python(self._state.tools)})
            if not body.previous_response_id:  # the whole history was sent: it is stored
                parsed.turns = []
        self._answers = parsed.approvals
        answered = {a.get("approval_request_id") for a in parsed.approvals}
        if answered != set(self._state.pending):  # each waiting call answered, nothing else
            odd = sorted(map(str, answered ^ set(self._state.pending)))[0]
            why = ("answer it (an mcp_approval_response item)" if odd in self._state.pending
                   else "no such call waits here")  # fmt: skip
            raise _bad(f"approval {odd!r}: {why}", "input")
        turns = await self._guarded(parsed.turns)
        self._state.turns += turns
        toolbox = await self._toolbox(body)
        await service.check_model(body.model)
        request = GenerationRequest(
            model=body.model,
            max_tokens=min(body.max_output_tokens or service.settings.default_max_tokens,
                           service.settings.max_tokens_limit),
            temperature=body.temperature, top_p=body.top_p,
            tool_choice=_tool_choice(body.tool_choice, toolbox),
            parallel_tool_calls=body.parallel_tool_calls,
        )  # fmt: skip
        s = service.settings
        limits = Limits(
            max_steps=s.agent_max_steps, max_tool_calls=body.max_tool_calls,
            max_output_tokens=body.max_output_tokens or s.max_tokens_limit,
            seconds=s.agent_max_seconds, tool_timeout_s=s.tool_timeout_s,
            approval_timeout_s=s.approval_timeout_s,
        )  # fmt: skip
        self._run = Run(
            response_id=self.id, principal=self.principal, db=service.db,
            generate=self._generate, request=request, toolbox=toolbox, state=self._state,
            limits=limits, instructions=body.instructions,
        )  # fmt: skip
        return self

    async def _answered_response(self, parsed: Input) -> str | None:
        """A client that sends its whole history instead of `previous_response_id` (the Agents
        SDK does) continues the response whose approval it answers."""
        if not parsed.approvals:
            return None
        first = str(parsed.approvals[0].get("approval_request_id"))
        approval = await self.service.db.read(lambda s: get_approval(s, first))
        return approval.response_id if approval is not None else None

    async def _guarded(self, turns: list[Turn]) -> list[Turn]:
        """The moderation guard on what the caller sent (user turns, function outputs)."""
        outside = [i for i, t in enumerate(turns) if t.role in ("user", "tool")]
        clean = await self.service.guard_input([turns[i].content for i in outside])
        for i, text in zip(outside, clean, strict=True):
            turns[i] = replace(turns[i], content=text)
        return turns

    async def _toolbox(self, body: ResponseCreate) -> Toolbox:
        toolbox = Toolbox()
        servers: dict[str, tuple[Registered, McpToolIn]] = {}
        for i, tool in enumerate(body.tools):
            if isinstance(tool, FunctionToolIn):
                toolbox.functions[tool.name] = Tool(tool.name, tool.description or "",
                                                    tool.parameters)  # fmt: skip
            elif isinstance(tool, FileSearchToolIn):
                collections = await _collections(self.service, self.principal, tool)
                toolbox.search = self._searcher(collections, tool.max_num_results or 5)
            else:
                servers[tool.server_label] = (await self._registered(tool, f"tools.{i}"), tool)
                try:
                    toolbox.rules[tool.server_label] = ApprovalRule.parse(tool.approval())
                except ValueError as exc:
                    raise _bad(str(exc), f"tools.{i}.require_approval") from None
        if servers:
            await self._list_tools(toolbox, servers)
        return toolbox

    async def _registered(self, tool: McpToolIn, param: str) -> Registered:
        self.principal.require("tools")
        label = tool.server_label
        server = await self.service.db.read(lambda s: find(s, label))
        if server is None or (tool.server_url is not None and tool.server_url != server.target):
            raise _bad(f"MCP server '{label}'"
                       + (f" at {tool.server_url}" if tool.server_url else "")
                       + " is not registered here (an admin adds it: chatworks mcp add)",
                       param, "mcp_server_not_registered")  # fmt: skip
        return server

    async def _list_tools(
        self, toolbox: Toolbox, servers: dict[str, tuple[Registered, McpToolIn]]
    ) -> None:
        timeout = self.service.settings.tool_timeout_s
        try:
            toolbox.connections = await self._sessions.open([s for s, _ in servers.values()],
                                                            timeout)  # fmt: skip
            listed = {label: await asyncio.wait_for(c.tools(), timeout)
                      for label, c in toolbox.connections.items()}  # fmt: skip
        except Exception as exc:  # a server is down or broken: the request cannot proceed
            message = f"an MCP server could not list its tools: {type(exc).__name__}: {exc}"
            raise APIError(424, message, "mcp_server_failed", "tools") from None
        for label, offered in listed.items():
            allowed = servers[label][1].allowed()
            offered = [t for t in offered if allowed is None or t.name in allowed]
            toolbox.mcp.update({t.function_name: t for t in offered})
            if label not in self._state.listed:  # once a conversation, as OpenAI lists them
                visible = [t.listed() for t in offered
                           if self.principal.may_use_tool(label, t.name)]  # fmt: skip
                self.output.append(items.mcp_list_tools(label, visible))
                self._state.listed.append(label)

    def _searcher(self, collections: list[CollectionAccess], limit: int):
        async def find_passages(query: str) -> list[dict[str, Any]]:
            return await search(self.service, query, collections, limit)

        return find_passages

    async def _generate(self, request: GenerationRequest) -> AsyncIterator[Delta]:
        generation = await start_generation(
            self.service.provider, self.service.gate, request, self.lease,
            self.service.settings.log_content,
        )  # fmt: skip
        try:
            async for delta in generation.deltas():
                yield delta
        finally:
            await generation.close()

    # --- reading it ---------------------------------------------------------------------------

    async def events(self) -> AsyncIterator[Event]:
        """The run's events; the stored response and its state are written at the end."""
        assert self._run is not None
        for item in self.output:  # listed tools first
            yield ItemDone(item)
        async for event in self._run.run(self._answers):
            if isinstance(event, ItemDone):
                self.output.append(event.item)
            if isinstance(event, Finished):
                await self._store(event)
            yield event

    async def result(self) -> dict[str, Any]:
        finished = None
        async for event in self.events():
            finished = event if isinstance(event, Finished) else finished
        assert finished is not None
        return self.body_json(finished)

    async def close(self) -> None:
        await self._sessions.close()

    def body_json(self, finished: Finished | None = None) -> dict[str, Any]:
        """The response object, in OpenAI's shape."""
        usage = finished.usage if finished else None
        status = finished.status if finished else "in_progress"
        body = self.body
        return {
            "id": self.id, "object": "response", "created_at": self.created_at,
            "status": status, "model": body.model, "output": self.output,
            "output_text": items.output_text(self.output),
            "incomplete_details": {"reason": finished.reason}
            if finished and finished.reason else None,
            "error": None, "instructions": body.instructions,
            "previous_response_id": body.previous_response_id,
            "max_output_tokens": body.max_output_tokens, "max_tool_calls": body.max_tool_calls,
            "parallel_tool_calls": body.parallel_tool_calls,
            "temperature": body.temperature, "top_p": body.top_p,
            "tool_choice": body.tool_choice if isinstance(body.tool_choice, str)
            else body.tool_choice.model_dump(),
            "tools": self._state.tools, "store": body.store, "metadata": body.metadata or {},
            "text": {"format": {"type": "text"}}, "truncation": "disabled",
            "usage": None if usage is None else {
                "input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
                "input_tokens_details": {"cached_tokens": usage.cached_tokens or 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }  # fmt: skip

    async def _store(self, finished: Finished) -> None:
        """Kept when asked (`store`), and always when a call waits for approval: the answer
        continues it, after a restart too."""
        if not (self.body.store or self._state.pending):
            return
        body, state, principal = self.body_json(finished), self._state.to_json(), self.principal
        await self.service.db.write(lambda s: save_response(
            s, body, state, owner=principal.owner, key_id=principal.actor,
            previous_id=self.body.previous_response_id,
        ))  # fmt: skip

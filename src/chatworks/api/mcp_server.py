"""chatworks as an MCP server: any MCP host (an IDE, an agent framework, another chatworks) can
list the collections, search them and get cited answers from them.

Three read-only tools over the same service as the HTTP API: `list_collections`, `search`
(file search, `api/grounded.search`) and `ask` (the grounded pipeline, `api/grounded.answer`).
Served two ways: `/mcp` on the API (streamable HTTP; the caller's API key and its `documents`
scope and collection list apply, exactly as on `/v1/ask`), and `chatworks mcp serve` (stdio,
for a host on the same machine; it acts as the operator, as the CLI does).
"""

from __future__ import annotations

import contextvars
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from starlette.types import Receive, Scope, Send

from chatworks.api.access import CollectionAccess, not_found
from chatworks.api.errors import APIError, error_response
from chatworks.api.grounded import GroundedRequest, answer, search
from chatworks.api.quota import Lease
from chatworks.api.service import Service
from chatworks.providers.base import GenerationRequest
from chatworks.security.principal import AccessDenied, Principal
from chatworks.storage import documents as docs

READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False)
# Who the current MCP call is for: set per HTTP request by `McpEndpoint`, the operator on stdio.
_caller: contextvars.ContextVar[Principal] = contextvars.ContextVar("mcp_caller")


def build(service: Service) -> MCPServer:
    server = MCPServer("chatworks", instructions="Search and ask the user's document "
                       "collections; answers cite the passages they come from.")  # fmt: skip

    def caller() -> Principal:
        return _caller.get(Principal(None))

    async def visible(name: str) -> CollectionAccess:
        principal = caller()
        principal.require("documents")
        principal.check_collection(name)
        owner = principal.owner_filter
        if await service.db.read(lambda s: docs.collection_id(s, name, owner)) is None:
            raise not_found(name)
        return CollectionAccess(name, owner)

    @server.tool(annotations=READ_ONLY)
    async def list_collections() -> list[dict[str, Any]]:
        """The document collections this caller may search, with their sizes."""
        principal = caller()
        principal.require("documents")
        found = await service.db.read(lambda s: docs.list_collections(s, principal.owner_filter))
        return [{"name": c.name, "documents": c.documents} for c in found
                if principal.may_use_collection(c.name)]  # fmt: skip

    @server.tool(name="search", annotations=READ_ONLY)
    async def search_collection(collection: str, query: str, limit: int = 5) -> list[dict]:
        """Passages of `collection` relevant to `query`, best first, with where they are."""
        return await search(service, query, [await visible(collection)], max(1, min(limit, 20)))

    @server.tool(annotations=READ_ONLY)
    async def ask(collection: str, question: str) -> dict[str, Any]:
        """A cited answer to `question` from `collection`, or a refusal when it says nothing
        about it."""
        access = await visible(collection)
        request = GenerationRequest(model=service.settings.model, max_tokens=256, temperature=0)
        run = await answer(service, GroundedRequest(question, access, request), Lease())
        try:
            text = "".join([delta.text async for delta in run.deltas()])
        finally:
            await run.close()
        grounded = run.ground(text)
        citations = [{"source": c.source, "section": c.section, "page": c.page,
                      "quote": c.quote} for c in grounded.citations]  # fmt: skip
        return {"answer": grounded.answer, "refused": grounded.refused, "citations": citations}

    return server


class McpEndpoint:
    """`/mcp`: the MCP server's streamable-HTTP app behind chatworks' own keys. The key is
    checked here (401 without a valid one); the tools check scopes and collections."""

    def __init__(self, service: Service, server: MCPServer, authenticate):
        self.service, self._authenticate = service, authenticate
        self.app = server.streamable_http_app(streamable_http_path="/", stateless_http=True,
                                              json_response=True)  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.requests import Request

        try:
            principal = await self._authenticate(Request(scope, receive), self.service)
        except APIError as exc:
            return await error_response(exc)(scope, receive, send)
        except AccessDenied as exc:
            return await error_response(APIError(403, exc.message, exc.code))(scope, receive, send)
        token = _caller.set(principal)
        try:
            await self.app(scope, receive, send)
        finally:
            _caller.reset(token)

"""The Responses API: `POST /v1/responses` (an agent run, stream or not), `GET` and `DELETE
/v1/responses/{id}` (stored responses, per tenant), and `GET /v1/mcp/servers` (the registered
MCP servers a request may name).

The run itself is `api/agent_runs.py` over `agents/`; here is only the wire: the response
object, or OpenAI's stream events (`response.created`, `response.output_item.added|done`,
`response.content_part.added|done`, `response.output_text.delta|done`, and
`response.completed` or `response.incomplete`), each with its `sequence_number`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from chatworks.agents.loop import Finished, ItemAdded, ItemDone, TextDelta
from chatworks.agents.mcp_client import registered
from chatworks.agents.store import delete_response, load_response
from chatworks.api.agent_runs import AgentRun, response_not_found
from chatworks.api.auth import require
from chatworks.api.errors import APIError, error_body
from chatworks.api.generation import GenerationResponse
from chatworks.api.openapi import GENERATION_ERRORS, errors, streamed
from chatworks.api.quota import Lease, chat_quota
from chatworks.api.schemas_responses import ResponseCreate
from chatworks.api.service import Service, get_service
from chatworks.api.sse import DONE, event
from chatworks.providers.base import ProviderError
from chatworks.security.principal import Principal

router = APIRouter(prefix="/v1", tags=["responses"])


@router.post("/responses", responses=streamed(*GENERATION_ERRORS, 424))
async def create_response(
    body: ResponseCreate,
    service: Service = Depends(get_service),
    principal: Principal = Depends(require("chat")),
    lease: Lease = Depends(chat_quota),
) -> Response:
    """An agent run (docs/agents.md): text, the client's function calls, file search over
    collections, and the tools of registered MCP servers, where a write waits for approval."""
    run = AgentRun(service, principal, body, lease)
    try:
        await run.start()
        if body.stream:
            return GenerationResponse(_stream(run), run)
        return JSONResponse(await run.result())
    except BaseException:
        await run.close()
        raise
    finally:
        if not body.stream:
            await run.close()


async def _stream(run: AgentRun) -> AsyncIterator[bytes]:
    numbers = iter(range(1 << 62))

    def sse(kind: str, **fields: Any) -> bytes:
        return event({"type": kind, "sequence_number": next(numbers), **fields})

    yield sse("response.created", response=run.body_json())
    yield sse("response.in_progress", response=run.body_json())
    index: dict[str, int] = {}  # item id -> output index
    text: dict[str, str] = {}
    try:
        async for happened in run.events():
            if isinstance(happened, ItemAdded):
                item = happened.item
                index[item["id"]] = len(index)
                yield sse("response.output_item.added", output_index=index[item["id"]], item=item)
                yield sse("response.content_part.added", item_id=item["id"],
                          output_index=index[item["id"]], content_index=0,
                          part={"type": "output_text", "text": "", "annotations": []})  # fmt: skip
            elif isinstance(happened, TextDelta):
                text[happened.item_id] = text.get(happened.item_id, "") + happened.delta
                yield sse("response.output_text.delta", item_id=happened.item_id,
                          output_index=index[happened.item_id], content_index=0,
                          delta=happened.delta)  # fmt: skip
            elif isinstance(happened, ItemDone):
                item = happened.item
                if item["id"] not in index:  # a whole item at once: added, then done
                    index[item["id"]] = len(index)
                    yield sse("response.output_item.added", output_index=index[item["id"]],
                              item=item)  # fmt: skip
                at = {"item_id": item["id"], "output_index": index[item["id"]]}
                if item["type"] == "message" and item["id"] in text:
                    part = item["content"][0]
                    yield sse("response.output_text.done", **at, content_index=0,
                              text=part["text"])  # fmt: skip
                    yield sse("response.content_part.done", **at, content_index=0, part=part)
                yield sse("response.output_item.done", output_index=at["output_index"], item=item)
            elif isinstance(happened, Finished):
                kind = "completed" if happened.status == "completed" else "incomplete"
                yield sse(f"response.{kind}", response=run.body_json(happened))
    except (ProviderError, APIError) as exc:  # headers are sent: the error goes in-band
        status, code = exc.status_code, exc.code
        message = exc.message if isinstance(exc, APIError) else str(exc)
        yield sse("error", **error_body(status, message, code)["error"])
    yield DONE


@router.get("/responses/{response_id}", responses=errors(404))
async def get_response(
    response_id: str,
    service: Service = Depends(get_service),
    principal: Principal = Depends(require("chat")),
) -> JSONResponse:
    owner = principal.owner_filter
    found = await service.db.read(lambda s: load_response(s, response_id, owner))
    if found is None:
        raise response_not_found(response_id)
    return JSONResponse(found.body)


@router.delete("/responses/{response_id}", responses=errors(404))
async def remove_response(
    response_id: str,
    service: Service = Depends(get_service),
    principal: Principal = Depends(require("chat")),
) -> JSONResponse:
    owner = principal.owner_filter
    if not await service.db.write(lambda s: delete_response(s, response_id, owner)):
        raise response_not_found(response_id)
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})


@router.get("/mcp/servers")
async def list_mcp_servers(
    service: Service = Depends(get_service), principal: Principal = Depends(require("tools"))
) -> dict:
    """The MCP servers an admin registered (`chatworks mcp add`): what `server_label` may name.
    Their command lines and URLs are shown to admins only."""
    found = await service.db.read(registered)
    data = [{"label": s.label, "transport": s.transport,
             **({"target": s.target, "write_tools": list(s.write_tools)}
                if principal.sees_all else {})} for s in found]  # fmt: skip
    return {"object": "list", "data": data}

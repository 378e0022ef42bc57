"""The OpenAI-compatible endpoints: chat completions (with chatworks' `collection` extension,
answered by the grounded pipeline, `api/grounded.py`), text completions and models."""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from chatworks.api.access import CollectionAccess, collection_in_body
from chatworks.api.auth import require
from chatworks.api.cache import cached_chat
from chatworks.api.generation import GenerationResponse, collect, start_generation
from chatworks.api.grounded import GroundedRequest, GroundedRun, answer
from chatworks.api.openapi import GENERATION_ERRORS, streamed
from chatworks.api.quota import Lease, chat_quota
from chatworks.api.schemas import (
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    ResponseMessage,
    ToolCallOut,
    UsageOut,
)
from chatworks.api.service import Service, get_service
from chatworks.api.sse import CHAT_CHUNK, TEXT_CHUNK, ChunkShape, encode_stream
from chatworks.providers.base import Delta, GenerationRequest
from chatworks.security.principal import Principal

router = APIRouter(prefix="/v1", tags=["openai"])


def _usage(delta: Delta) -> UsageOut:
    u = delta.usage
    assert u is not None, "the final delta always carries usage"
    return UsageOut.of(u)


async def _generate(
    service: Service,
    http_request: Request,
    request: GenerationRequest,
    lease: Lease,
    *,
    stream: bool,
    include_usage: bool,
    shape: ChunkShape,
    id_prefix: str,
) -> tuple[str, str, Delta] | Response:
    """Streams, or returns (id, text, final delta) for the caller to shape."""
    await service.check_model(request.model)
    generation = await start_generation(
        service.provider, service.gate, request, lease, service.settings.log_content
    )
    completion_id = f"{id_prefix}-{uuid.uuid4().hex}"
    if stream:
        body = encode_stream(
            generation.deltas(),
            shape=shape,
            completion_id=completion_id,
            model=request.model,
            created=int(time.time()),
            include_usage=include_usage,
        )
        return GenerationResponse(body, generation)
    text, final = await collect(generation, http_request)
    return completion_id, text, final


@router.post(
    "/chat/completions",
    response_model=ChatCompletionResponse,
    responses=streamed(*GENERATION_ERRORS),
    dependencies=[cached_chat],
)
async def chat_completions(
    body: ChatCompletionRequest,
    http_request: Request,
    service: Service = Depends(get_service),
    _: Principal = Depends(require("chat")),
    collection: CollectionAccess | None = Depends(collection_in_body),
    lease: Lease = Depends(chat_quota),
):
    request = service.chat_request(body)
    if collection is not None:  # the `collection` extension: the grounded pipeline
        question = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        grounded = GroundedRequest(question, collection, request)
        return await _chat_answer(body, await answer(service, grounded, lease), http_request)
    request = await service.guard_messages(request)
    result = await _generate(
        service,
        http_request,
        request,
        lease,
        stream=body.stream,
        include_usage=body.include_usage,
        shape=CHAT_CHUNK,
        id_prefix="chatcmpl",
    )
    if isinstance(result, Response):
        return result
    completion_id, text, final = result
    return ChatCompletionResponse(
        id=completion_id,
        created=int(time.time()),
        model=body.model,
        choices=[ChatChoice(message=_message(text, final), finish_reason=final.finish_reason)],
        usage=_usage(final),
    )


def _message(text: str, final: Delta) -> ResponseMessage:
    """A reply that called tools has `content: null` when it said nothing else, as OpenAI's."""
    if not final.tool_calls:
        return ResponseMessage(content=text)
    calls = [ToolCallOut.of(c) for c in final.tool_calls]
    return ResponseMessage(content=text or None, tool_calls=calls)


async def _chat_answer(
    body: ChatCompletionRequest, run: GroundedRun, http_request: Request
) -> Response | ChatCompletionResponse:
    """A grounded run in the chat shape: the last user message answered from the collection's
    passages (earlier turns are not sent: the sources take the context), `citations` on the
    response, or on the finishing chunk when streaming."""
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    if body.stream:

        def cited(text: str) -> dict:
            return {"citations": [asdict(c) for c in run.ground(text).citations]}

        chunks = encode_stream(
            run.deltas(), shape=CHAT_CHUNK, completion_id=completion_id, model=body.model,
            created=created, include_usage=body.include_usage, finish_fields=cited,
        )  # fmt: skip
        return GenerationResponse(chunks, run)
    text, final = await run.collect(http_request)
    grounded = run.ground(text)
    if grounded.leaked:  # it recited the system prompt (rag/leak.py): the refusal instead
        text = grounded.answer
    return ChatCompletionResponse(
        id=completion_id, created=created, model=body.model,
        choices=[ChatChoice(message=ResponseMessage(content=text),
                            finish_reason=final.finish_reason)],
        usage=_usage(final), citations=grounded.citations,
    )  # fmt: skip


@router.post(
    "/completions", response_model=CompletionResponse, responses=streamed(*GENERATION_ERRORS)
)
async def completions(
    body: CompletionRequest,
    http_request: Request,
    service: Service = Depends(get_service),
    lease: Lease = Depends(chat_quota),
):
    result = await _generate(
        service,
        http_request,
        await service.completion_request(body),
        lease,
        stream=body.stream,
        include_usage=body.include_usage,
        shape=TEXT_CHUNK,
        id_prefix="cmpl",
    )
    if isinstance(result, Response):
        return result
    completion_id, text, final = result
    return CompletionResponse(
        id=completion_id,
        created=int(time.time()),
        model=body.model,
        choices=[CompletionChoice(text=text, finish_reason=final.finish_reason)],
        usage=_usage(final),
    )


@router.get("/models", response_model=ModelList)
async def list_models(
    service: Service = Depends(get_service), principal: Principal = Depends(require("chat"))
) -> ModelList:
    models = await service.provider.models() if service.provider.ready else []
    return ModelList(
        data=[ModelCard(id=m, created=service.started_at) for m in principal.usable_models(models)]
    )

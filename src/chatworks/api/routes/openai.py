"""The OpenAI-compatible endpoints: chat completions, text completions and models."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, replace

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from chatworks.api.auth import Principal, require
from chatworks.api.cache import cached_chat
from chatworks.api.generation import GenerationResponse, collect, start_generation
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
from chatworks.providers.base import Delta, GenerationRequest, Usage
from chatworks.rag.answer import Citation, Grounded, Prepared, Source, ground

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
    finish_fields: Callable[[str], dict] | None = None,
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
            finish_fields=finish_fields,
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
    principal: Principal = Depends(require("chat")),
    lease: Lease = Depends(chat_quota),
):
    # The moderation guard runs in there: regexes and a linear model over up to 100k
    # characters, kept off the event loop.
    request = await asyncio.to_thread(service.chat_request, body)
    sources: list[Source] | None = None
    question = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
    if body.collection:
        prepared = await _grounded(service, principal, body, request, question)
        if prepared.messages is None:
            return _known_answer(body, prepared.answer)
        request, sources = replace(request, messages=prepared.messages), prepared.sources

    def citations_of(text: str) -> list[Citation]:
        return ground(text, sources, question).citations

    result = await _generate(
        service,
        http_request,
        request,
        lease,
        stream=body.stream,
        include_usage=body.include_usage,
        shape=CHAT_CHUNK,
        id_prefix="chatcmpl",
        finish_fields=(
            (lambda text: {"citations": [asdict(c) for c in citations_of(text)]})
            if sources
            else None
        ),
    )
    if isinstance(result, Response):
        return result
    completion_id, text, final = result
    grounded = ground(text, sources, question) if sources else None
    if grounded is not None and grounded.leaked:  # it recited the system prompt (rag/leak.py)
        text = grounded.answer
    return ChatCompletionResponse(
        id=completion_id,
        created=int(time.time()),
        model=body.model,
        choices=[ChatChoice(message=_message(text, final), finish_reason=final.finish_reason)],
        usage=_usage(final),
        citations=grounded.citations if grounded is not None else None,
    )


def _message(text: str, final: Delta) -> ResponseMessage:
    """A reply that called tools has `content: null` when it said nothing else, as OpenAI's."""
    if not final.tool_calls:
        return ResponseMessage(content=text)
    calls = [ToolCallOut.of(c) for c in final.tool_calls]
    return ResponseMessage(content=text or None, tool_calls=calls)


async def _grounded(
    service: Service,
    principal: Principal,
    body: ChatCompletionRequest,
    request: GenerationRequest,
    question: str,
) -> Prepared:
    """The `collection` extension: the last user message is answered from the collection's
    passages (earlier turns are not sent: the sources take the context). Reading a collection
    needs the `documents` scope and the collection's owner, as `/v1/ask` does."""
    principal.require("documents")
    principal.check_collection(body.collection)
    await service.check_model(request.model)  # before the retrieval work, not after it
    service.require_collection(body.collection, principal.owner_filter)
    return await asyncio.to_thread(
        service.library.prepare, question, body.collection, owner=principal.owner_filter
    )


def _known_answer(
    body: ChatCompletionRequest, known: Grounded
) -> Response | ChatCompletionResponse:
    """An answer known without generating: the refusal when nothing in the collection is
    relevant, or the extractive quote."""
    completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
    final = Delta(known.answer, 0, "stop", Usage())
    cited = [asdict(c) for c in known.citations]

    async def once() -> AsyncIterator[Delta]:
        yield final

    if body.stream:
        chunks = encode_stream(
            once(), shape=CHAT_CHUNK, completion_id=completion_id, model=body.model,
            created=created, include_usage=body.include_usage,
            finish_fields=lambda _: {"citations": cited},
        )  # fmt: skip
        return StreamingResponse(chunks, media_type="text/event-stream")
    return ChatCompletionResponse(
        id=completion_id, created=created, model=body.model,
        choices=[
            ChatChoice(message=ResponseMessage(content=known.answer), finish_reason="stop")
        ],
        usage=_usage(final), citations=known.citations,
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
        await asyncio.to_thread(service.completion_request, body),
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
    allowed = principal.key.models if principal.key else None
    models = [m for m in models if allowed is None or m in allowed]
    return ModelList(data=[ModelCard(id=m, created=service.started_at) for m in models])

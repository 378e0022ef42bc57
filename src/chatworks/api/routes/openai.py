"""The OpenAI-compatible endpoints: chat completions, text completions and models."""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from chatworks.api.generation import GenerationResponse, collect, start_generation
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
    UsageOut,
)
from chatworks.api.service import Service, get_service
from chatworks.api.sse import CHAT_CHUNK, TEXT_CHUNK, ChunkShape, encode_stream
from chatworks.providers.base import Delta, GenerationRequest

router = APIRouter(prefix="/v1", tags=["openai"])


def _usage(delta: Delta) -> UsageOut:
    u = delta.usage
    assert u is not None, "the final delta always carries usage"
    return UsageOut(
        prompt_tokens=u.prompt_tokens,
        completion_tokens=u.completion_tokens,
        total_tokens=u.total_tokens,
    )


async def _generate(
    service: Service,
    http_request: Request,
    request: GenerationRequest,
    *,
    stream: bool,
    include_usage: bool,
    shape: ChunkShape,
    id_prefix: str,
) -> tuple[str, str, Delta] | Response:
    """Streams, or returns (id, text, final delta) for the caller to shape."""
    await service.check_model(request.model)
    generation = await start_generation(service.provider, service.gate, request)
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


@router.post("/chat/completions", response_model=ChatCompletionResponse)
async def chat_completions(
    body: ChatCompletionRequest, http_request: Request, service: Service = Depends(get_service)
):
    result = await _generate(
        service,
        http_request,
        service.chat_request(body),
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
        choices=[
            ChatChoice(message=ResponseMessage(content=text), finish_reason=final.finish_reason)
        ],
        usage=_usage(final),
    )


@router.post("/completions", response_model=CompletionResponse)
async def completions(
    body: CompletionRequest, http_request: Request, service: Service = Depends(get_service)
):
    result = await _generate(
        service,
        http_request,
        service.completion_request(body),
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
async def list_models(service: Service = Depends(get_service)) -> ModelList:
    models = await service.provider.models() if service.provider.ready else []
    return ModelList(data=[ModelCard(id=m, created=service.started_at) for m in models])

"""Collections, documents, grounded answers (`/v1/ask`) and embeddings (`/v1/embeddings`).

Tenancy: a caller sees only collections its key's owner owns (admins see all); another
tenant's collection or document answers 404 exactly as a missing one does, so ids and names
cannot be probed. Creating, uploading and deleting are written to the audit log.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import asdict

import numpy as np
from fastapi import APIRouter, Depends, File, Request, Response, UploadFile
from fastapi.responses import StreamingResponse

from chatworks.api.audit import audited
from chatworks.api.auth import Principal, require
from chatworks.api.cache import cached_ask
from chatworks.api.errors import APIError, error_body
from chatworks.api.generation import Generation, GenerationResponse, collect, start_generation
from chatworks.api.openapi import GENERATION_ERRORS, errors, streamed
from chatworks.api.quota import Lease, ask_quota, chat_quota
from chatworks.api.schemas import (
    AskRequest,
    AskResponse,
    CollectionCreate,
    CollectionOut,
    DocumentOut,
    EmbeddingItem,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    IngestOut,
    UsageOut,
)
from chatworks.api.service import Service, get_service
from chatworks.api.sse import DONE, event
from chatworks.providers.base import GenerationRequest, ProviderError
from chatworks.rag.answer import Grounded, ground
from chatworks.rag.errors import FileTooLarge, IngestError, UnsupportedFileType
from chatworks.rag.ingest import check_limits
from chatworks.storage import documents as docs
from chatworks.storage.db import write_transaction
from chatworks.telemetry import metrics
from chatworks.telemetry import tracing as t

router = APIRouter(prefix="/v1", tags=["documents"])
documents_scope = Depends(require("documents"))


def _visible(service: Service, principal: Principal, name: str) -> None:
    """403 if the key is limited to other collections, 404 unless the caller's owner has it."""
    principal.check_collection(name)
    service.require_collection(name, principal.owner_filter)


@router.get("/collections")
async def list_collections(
    service: Service = Depends(get_service), principal: Principal = documents_scope
) -> dict:
    with service.library.session() as session:
        found = docs.list_collections(session, principal.owner_filter)
    data = [
        CollectionOut(name=c.name, documents=c.documents, owner=c.owner)
        for c in found
        if principal.may_use_collection(c.name)
    ]
    return {"object": "list", "data": data}


def _claim(service: Service, principal: Principal, name: str) -> bool:
    """Create `name` for the caller, or find theirs; False if another owner has the name."""
    with write_transaction(service.library.engine) as session:
        row = docs.get_or_create_collection(session, name, principal.owner)
        return principal.sees_all or row.owner == principal.owner


async def _claimed(service: Service, principal: Principal, name: str) -> None:
    principal.check_collection(name)
    if not await asyncio.to_thread(_claim, service, principal, name):
        # Names are unique across tenants: this says the name exists, nothing about its content.
        raise APIError(409, f"collection name '{name}' is taken", "collection_exists", "name")


@router.post("/collections", status_code=201, response_model=CollectionOut, responses=errors(409))
async def create_collection(
    body: CollectionCreate,
    service: Service = Depends(get_service),
    principal: Principal = documents_scope,
) -> CollectionOut:
    await _claimed(service, principal, body.name)
    await audited(service, principal, "collection.create", body.name)
    return CollectionOut(name=body.name, documents=0, owner=principal.owner)


@router.delete("/collections/{name}", status_code=204, responses=errors(404))
async def delete_collection(
    name: str, service: Service = Depends(get_service), principal: Principal = documents_scope
) -> Response:
    principal.check_collection(name)
    with service.library.session() as session, session.begin():
        deleted = docs.delete_collection(session, name, principal.owner_filter)
    await audited(service, principal, "collection.delete", name, "ok" if deleted else "not_found")
    if not deleted:
        raise APIError(404, f"collection '{name}' not found", "collection_not_found")
    return Response(status_code=204)


def _document_out(d: docs.DocumentInfo) -> DocumentOut:
    return DocumentOut(
        id=d.id, collection=d.collection, source=d.source, title=d.title, chunks=d.chunks,
        status=d.status, metadata=dict(d.metadata),
    )  # fmt: skip


@router.get("/collections/{name}/documents", responses=errors(404))
async def list_documents(
    name: str, service: Service = Depends(get_service), principal: Principal = documents_scope
) -> dict:
    _visible(service, principal, name)
    with service.library.session() as session:
        found = docs.list_documents(session, name, principal.owner_filter)
    return {"object": "list", "data": [_document_out(d) for d in found]}


@router.post(
    "/collections/{name}/documents",
    status_code=201,
    response_model=IngestOut,
    responses=errors(409, 415),
)
async def upload_document(
    name: str,
    file: UploadFile = File(...),
    service: Service = Depends(get_service),
    principal: Principal = documents_scope,
) -> IngestOut:
    """Ingest one file (txt, md, html, pdf, docx). Re-uploading the same file is a no-op;
    a changed file under the same name replaces the old version atomically."""
    filename = file.filename or "upload.txt"
    try:
        check_limits(filename, file.size or 0, service.settings)
        await _claimed(service, principal, name)  # the collection exists, and is the caller's
        data = await file.read(service.settings.max_upload_bytes + 1)  # ingest checks the size
        outcome = await asyncio.to_thread(service.library.ingest, data, filename, name)
    except (FileTooLarge, UnsupportedFileType, IngestError) as exc:
        await audited(service, principal, "document.ingest", f"{name}/{filename}", "failed")
        raise _ingest_error(exc) from exc
    await audited(service, principal, "document.ingest", f"{name}/{filename}",
                  document_id=outcome.document_id, status=outcome.status)  # fmt: skip
    return IngestOut(**asdict(outcome))


def _ingest_error(exc: Exception) -> APIError:
    if isinstance(exc, FileTooLarge):
        return APIError(413, str(exc), "file_too_large")
    if isinstance(exc, UnsupportedFileType):
        return APIError(415, str(exc), "unsupported_file_type")
    return APIError(400, str(exc), "unreadable_document")


@router.delete("/documents/{document_id}", status_code=204, responses=errors(404))
async def delete_document(
    document_id: str,
    service: Service = Depends(get_service),
    principal: Principal = documents_scope,
) -> Response:
    def delete() -> bool:
        with write_transaction(service.library.engine) as session:
            found = docs.get_document(session, document_id, principal.owner_filter)
            if found is None or not principal.may_use_collection(found.collection):
                return False
            return docs.delete_document(session, document_id, principal.owner_filter)

    deleted = await asyncio.to_thread(delete)
    outcome = "ok" if deleted else "not_found"
    await audited(service, principal, "document.delete", document_id, outcome)
    if not deleted:
        raise APIError(404, f"document '{document_id}' not found", "document_not_found")
    return Response(status_code=204)


def _ask_response(grounded: Grounded, usage: UsageOut) -> AskResponse:
    return AskResponse(
        answer=grounded.answer,
        citations=grounded.citations,
        refused=grounded.refused,
        usage=usage,
    )


def _usage(prompt: int = 0, completion: int = 0) -> UsageOut:
    return UsageOut(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


@router.post(
    "/ask",
    response_model=AskResponse,
    responses=streamed(*GENERATION_ERRORS),
    dependencies=[cached_ask],
)
async def ask(
    body: AskRequest,
    http_request: Request,
    service: Service = Depends(get_service),
    principal: Principal = documents_scope,
    lease: Lease = Depends(ask_quota),
):
    """Answer from a collection with citations, or refuse when nothing relevant is found.
    With `stream: true`, text arrives as `{"delta": ...}` events and the final event carries
    the answer, citations, refusal flag and usage."""
    _visible(service, principal, body.collection)
    (question,) = await asyncio.to_thread(service.guard_input, [body.question])
    prepared = await asyncio.to_thread(
        service.library.prepare, question, body.collection, body.top_k,
        owner=principal.owner_filter,
    )  # fmt: skip
    if prepared.answer is not None:  # a refusal or an extractive quote: nothing to generate
        known = _ask_response(prepared.answer, _usage())
        if not body.stream:
            return known
        return StreamingResponse(
            iter([event(known.model_dump()), DONE]), media_type="text/event-stream"
        )
    await service.check_model(service.settings.model)
    request = GenerationRequest(
        model=service.settings.model, messages=prepared.messages,
        max_tokens=min(body.max_tokens, service.settings.max_tokens_limit),
        temperature=body.temperature,
    )  # fmt: skip
    generation = await start_generation(
        service.provider, service.gate, request, lease, service.settings.log_content
    )
    if not body.stream:
        text, final = await collect(generation, http_request)
        usage = _usage(final.usage.prompt_tokens, final.usage.completion_tokens)
        return _ask_response(ground(text, prepared.sources, question), usage)
    events = _ask_events(generation, prepared.sources, question)
    return GenerationResponse(events, generation)


async def _ask_events(generation: Generation, sources, question: str) -> AsyncIterator[bytes]:
    parts: list[str] = []
    try:
        async for delta in generation.deltas():
            if delta.text:
                parts.append(delta.text)
                yield event({"delta": delta.text})
            if delta.finish_reason is not None:
                u = delta.usage
                usage = _usage(u.prompt_tokens, u.completion_tokens) if u else _usage()
                grounded = ground("".join(parts), sources, question)
                yield event(_ask_response(grounded, usage).model_dump())
    except ProviderError as exc:
        yield event(error_body(exc.status_code, str(exc), exc.code))
        return
    yield DONE


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode()
    return vector.tolist()


@router.post("/embeddings", response_model=EmbeddingResponse, responses=errors(404))
async def embeddings(
    body: EmbeddingRequest,
    service: Service = Depends(get_service),
    lease: Lease = Depends(chat_quota),
) -> EmbeddingResponse:
    # The first call loads the embedding model: seconds of work that must not hold the event loop.
    context = await asyncio.to_thread(lambda: service.library.context)
    embedder = context.embedder
    if body.model != embedder.model_id:
        raise APIError(
            404, f"embedding model '{body.model}' not found; available: {embedder.model_id}",
            "model_not_found", "model",
        )  # fmt: skip
    texts = body.texts()
    if not texts or len(texts) > 2048:
        raise APIError(400, "input must hold 1 to 2048 texts", "invalid_input", "input")

    def embed_and_count() -> tuple[np.ndarray, int]:
        counted = context.tokenizer.encode_batch(texts)
        return embedder.embed(texts), sum(len(encoding.ids) for encoding in counted)

    attributes = {t.OPERATION: "embeddings", t.REQUEST_MODEL: embedder.model_id}
    with t.tracer().start_as_current_span(f"embeddings {embedder.model_id}", attributes=attributes):
        vectors, tokens = await asyncio.to_thread(embed_and_count)
    metrics.EMBEDDING_INPUTS.labels(embedder.model_id).inc(len(texts))
    metrics.EMBEDDING_TOKENS.labels(embedder.model_id).inc(tokens)
    lease.add_tokens(tokens)
    return EmbeddingResponse(
        data=[
            EmbeddingItem(index=i, embedding=_encode(v, body.encoding_format))
            for i, v in enumerate(vectors)
        ],
        model=embedder.model_id,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )

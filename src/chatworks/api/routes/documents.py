"""Collections, documents, grounded answers (`/v1/ask`) and embeddings (`/v1/embeddings`).

Tenancy: a caller sees only collections its key's owner owns (admins see all); another
tenant's collection or document answers 404 exactly as a missing one does, so ids and names
cannot be probed. Which collection a route may touch is its access dependency's business
(`api/access.py`); `/v1/ask` is the grounded pipeline (`api/grounded.py`) in its own wire
shape. Creating, uploading and deleting are written to the audit log.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import asdict

import numpy as np
from fastapi import APIRouter, Depends, File, Request, Response, UploadFile

from chatworks.api.access import (
    CollectionAccess,
    claimed_in_body,
    claimed_in_path,
    collection_in_body,
    collection_in_path,
    not_found,
)
from chatworks.api.auth import require
from chatworks.api.cache import cached_ask
from chatworks.api.errors import APIError, error_body
from chatworks.api.generation import GenerationResponse
from chatworks.api.grounded import GroundedRequest, GroundedRun, answer
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
from chatworks.rag.answer import Grounded
from chatworks.rag.errors import FileTooLarge, IngestError, UnsupportedFileType
from chatworks.rag.ingest import check_limits
from chatworks.security.principal import Principal
from chatworks.storage import documents as docs

router = APIRouter(prefix="/v1", tags=["documents"])
documents_scope = Depends(require("documents"))


@router.get("/collections")
async def list_collections(
    service: Service = Depends(get_service), principal: Principal = documents_scope
) -> dict:
    found = await service.db.read(lambda s: docs.list_collections(s, principal.owner_filter))
    data = [
        CollectionOut(name=c.name, documents=c.documents, owner=c.owner)
        for c in found
        if principal.may_use_collection(c.name)
    ]
    return {"object": "list", "data": data}


async def _claim(service: Service, principal: Principal, name: str) -> None:
    """Create `name` for the caller, or find theirs; 409 if another owner has the name."""

    def claim(session) -> bool:
        row = docs.get_or_create_collection(session, name, principal.owner)
        return principal.sees_all or row.owner == principal.owner

    if not await service.db.write(claim):
        # Names are unique across tenants: this says the name exists, nothing about its content.
        raise APIError(409, f"collection name '{name}' is taken", "collection_exists", "name")


@router.post("/collections", status_code=201, response_model=CollectionOut, responses=errors(409))
async def create_collection(
    body: CollectionCreate,
    service: Service = Depends(get_service),
    principal: Principal = documents_scope,
    _: CollectionAccess = Depends(claimed_in_body),
) -> CollectionOut:
    await _claim(service, principal, body.name)
    await service.audit(principal, "collection.create", body.name)
    return CollectionOut(name=body.name, documents=0, owner=principal.owner)


@router.delete("/collections/{name}", status_code=204, responses=errors(404))
async def delete_collection(
    service: Service = Depends(get_service),
    principal: Principal = documents_scope,
    collection: CollectionAccess = Depends(collection_in_path),
) -> Response:
    deleted = await service.db.write(
        lambda s: docs.delete_collection(s, collection.name, collection.owner)
    )
    outcome = "ok" if deleted else "not_found"
    await service.audit(principal, "collection.delete", collection.name, outcome)
    if not deleted:  # deleted by another request since the access check
        raise not_found(collection.name)
    return Response(status_code=204)


def _document_out(d: docs.DocumentInfo) -> DocumentOut:
    return DocumentOut(
        id=d.id, collection=d.collection, source=d.source, title=d.title, chunks=d.chunks,
        status=d.status, metadata=dict(d.metadata),
    )  # fmt: skip


@router.get("/collections/{name}/documents", responses=errors(404))
async def list_documents(
    service: Service = Depends(get_service),
    _: Principal = documents_scope,
    collection: CollectionAccess = Depends(collection_in_path),
) -> dict:
    found = await service.db.read(
        lambda s: docs.list_documents(s, collection.name, collection.owner)
    )
    return {"object": "list", "data": [_document_out(d) for d in found]}


@router.post(
    "/collections/{name}/documents",
    status_code=201,
    response_model=IngestOut,
    responses=errors(409, 415),
)
async def upload_document(
    file: UploadFile = File(...),
    service: Service = Depends(get_service),
    principal: Principal = documents_scope,
    collection: CollectionAccess = Depends(claimed_in_path),
) -> IngestOut:
    """Ingest one file (txt, md, html, pdf, docx). Re-uploading the same file is a no-op;
    a changed file under the same name replaces the old version atomically."""
    filename, name = file.filename or "upload.txt", collection.name
    try:
        check_limits(filename, file.size or 0, service.settings)
        await _claim(service, principal, name)  # the collection exists, and is the caller's
        data = await file.read(service.settings.max_upload_bytes + 1)  # ingest checks the size
        outcome = await asyncio.to_thread(service.library.ingest, data, filename, name)
    except (FileTooLarge, UnsupportedFileType, IngestError) as exc:
        await service.audit(principal, "document.ingest", f"{name}/{filename}", "failed")
        raise _ingest_error(exc) from exc
    await service.audit(principal, "document.ingest", f"{name}/{filename}",
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
    def delete(session) -> bool:
        found = docs.get_document(session, document_id, principal.owner_filter)
        if found is None or not principal.may_use_collection(found.collection):
            return False
        return docs.delete_document(session, document_id, principal.owner_filter)

    deleted = await service.db.write(delete)
    outcome = "ok" if deleted else "not_found"
    await service.audit(principal, "document.delete", document_id, outcome)
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
    _: Principal = documents_scope,
    collection: CollectionAccess = Depends(collection_in_body),
    lease: Lease = Depends(ask_quota),
):
    """Answer from a collection with citations, or refuse when nothing relevant is found.
    With `stream: true`, text arrives as `{"delta": ...}` events and the final event carries
    the answer, citations, refusal flag and usage."""
    generation = GenerationRequest(
        model=service.settings.model,
        max_tokens=min(body.max_tokens, service.settings.max_tokens_limit),
        temperature=body.temperature,
    )
    request = GroundedRequest(body.question, collection, generation, body.top_k)
    run = await answer(service, request, lease)
    if body.stream:
        return GenerationResponse(_ask_events(run), run)
    text, final = await run.collect(http_request)
    return _ask_response(run.ground(text), UsageOut.of(final.usage))


async def _ask_events(run: GroundedRun) -> AsyncIterator[bytes]:
    parts: list[str] = []
    try:
        async for delta in run.deltas():
            if delta.text:
                parts.append(delta.text)
                yield event({"delta": delta.text})
            if delta.finish_reason is not None:
                grounded = run.ground("".join(parts))
                yield event(_ask_response(grounded, UsageOut.of(delta.usage)).model_dump())
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
    vectors, tokens = await service.embed(body.model, body.texts())
    lease.add_tokens(tokens)
    return EmbeddingResponse(
        data=[
            EmbeddingItem(index=i, embedding=_encode(v, body.encoding_format))
            for i, v in enumerate(vectors)
        ],
        model=body.model,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )

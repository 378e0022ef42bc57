"""What the chat UI offers before the first message: prompts the default model answers well
(`GET /v1/suggestions`, the model probes flagged `suggest`, `evals/probes.py`) and questions a
collection answers from its own headings (`GET /v1/collections/{name}/suggestions`,
`rag/suggest.py`)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Query

from chatworks.api.access import CollectionAccess, collection_in_path
from chatworks.api.auth import require
from chatworks.api.openapi import errors
from chatworks.api.schemas import ChatSuggestion, ChatSuggestionList, GroundedSuggestionList
from chatworks.api.service import Service, get_service
from chatworks.evals.probes import suggested_prompts
from chatworks.security.principal import Principal

router = APIRouter(prefix="/v1", tags=["suggestions"])


@router.get("/suggestions", response_model=ChatSuggestionList)
async def chat_suggestions(_: Principal = Depends(require("chat"))) -> ChatSuggestionList:
    return ChatSuggestionList(data=[ChatSuggestion(prompt=p) for p in suggested_prompts()])


@router.get(
    "/collections/{name}/suggestions", response_model=GroundedSuggestionList,
    responses=errors(404),
)  # fmt: skip
async def collection_suggestions(
    service: Service = Depends(get_service),
    _: Principal = Depends(require("documents")),
    collection: CollectionAccess = Depends(collection_in_path),
    n: int = Query(3, ge=1, le=10, description="How many questions, at most"),
) -> GroundedSuggestionList:
    """Questions made from the collection's headings, each answered from the section it came
    from (checked by retrieval before it is offered); cached until the documents change. The
    first call after a change takes seconds: it asks every candidate."""
    found = await asyncio.to_thread(
        service.library.suggestions, collection.name, collection.owner, n
    )
    return GroundedSuggestionList(data=found)

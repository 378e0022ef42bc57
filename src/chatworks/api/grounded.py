"""The grounded-answer pipeline: a question answered from a collection, with citations.

`/v1/ask`, chat completions with `collection`, the response cache's view of them and the
Responses API's file search (`search`) go through here, so what a grounded answer is (the
guard on the question, the passages, the refusal, the citations, the usage) is decided once.
The steps: guard the question; check the model is served, before any retrieval work; retrieve
and prepare off the event loop; then either the answer is known without generating (the
refusal when nothing relevant was found, or the extractive quote) or the prepared prompt is
generated through the admission gate; the text is grounded at the end (markers checked,
citations resolved, a recited system prompt replaced). Usage is charged to the caller's lease
as the generation runs (`api/generation.py`).

Does not cover: whether the caller may use the collection (the `api/access.py` dependency
settled that before the handler ran), or the wire format (each route shapes a `GroundedRun`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

from starlette.requests import Request

from chatworks.api.access import CollectionAccess, not_found
from chatworks.api.generation import Generation, collect, start_generation
from chatworks.api.quota import Lease
from chatworks.api.service import Service
from chatworks.providers.base import Delta, GenerationRequest, Usage
from chatworks.rag.answer import Grounded, Source, ground
from chatworks.storage import documents as docs


@dataclass(frozen=True)
class GroundedRequest:
    """A question for a collection. `generation` carries the model and its sampling
    parameters; its messages are replaced by the prompt built from the sources."""

    question: str
    collection: CollectionAccess
    generation: GenerationRequest
    top_k: int | None = None


@dataclass
class GroundedRun:
    """A grounded answer under way: known already, or a started generation. Read it whole
    (`collect`) or as deltas (`deltas`, then `ground` the text they made); `close` it either
    way (a streaming response does, when it ends)."""

    question: str
    sources: list[Source]
    known: Grounded | None = None
    generation: Generation | None = None

    async def deltas(self) -> AsyncIterator[Delta]:
        """The generated deltas, or the known answer as one final delta (nothing generated)."""
        if self.generation is None:
            assert self.known is not None
            yield Delta(self.known.answer, 0, "stop", Usage())
            return
        async for delta in self.generation.deltas():
            yield delta

    def ground(self, text: str) -> Grounded:
        """The final answer for the text the deltas made."""
        if self.known is not None:
            return self.known
        return ground(text, self.sources, self.question)

    async def collect(self, http_request: Request) -> tuple[str, Delta]:
        """The whole text and the final delta (finish reason, usage), as `api/generation.py`'s
        `collect` gives them: a client that leaves cancels the generation."""
        if self.generation is None:
            assert self.known is not None
            return self.known.answer, Delta("", 0, "stop", Usage())
        return await collect(self.generation, http_request)

    async def close(self) -> None:
        if self.generation is not None:
            await self.generation.close()


async def answer(service: Service, request: GroundedRequest, lease: Lease) -> GroundedRun:
    """Run `request` up to its first delta (so a failure still has its status code)."""
    (question,) = await service.guard_input([request.question])
    model = request.generation.model
    await service.check_served(model)  # before the retrieval work, not after it
    collection = request.collection
    prepared = await asyncio.to_thread(
        service.library.prepare, question, collection.name, request.top_k, owner=collection.owner
    )
    if prepared.messages is None:  # the refusal, or the extractive quote
        assert prepared.answer is not None
        return GroundedRun(question, prepared.sources, known=prepared.answer)
    service.check_ready()
    generation = await start_generation(
        service.provider, service.gate, replace(request.generation, messages=prepared.messages),
        lease, service.settings.log_content,
    )  # fmt: skip
    return GroundedRun(question, prepared.sources, generation=generation)


async def collection_version(service: Service, collection: CollectionAccess) -> str:
    """The collection's version (it changes whenever its documents do): what the response
    cache keys a grounded answer on."""
    name, owner = collection.name, collection.owner
    version = await service.db.read(lambda s: docs.collection_version(s, name, owner))
    if version is None:  # deleted since the access check
        raise not_found(name)
    return version


async def search(
    service: Service, query: str, collections: list[CollectionAccess], limit: int
) -> list[dict[str, Any]]:
    """File search for agents (the Responses API's `file_search` tool): the passages that
    retrieval finds relevant in `collections` (already access-checked), best first, in the
    shape of OpenAI's file search results (`file_id` is the document's id)."""

    def find() -> list[dict[str, Any]]:
        found = []
        for collection in collections:
            examined = service.library.examine(query, collection.name, top_k=limit,
                                               owner=collection.owner)  # fmt: skip
            for passage in examined.passages:
                hit = passage.hit
                attributes = {"collection": collection.name, "section": hit.chunk.section,
                              "page": hit.chunk.page, "start": hit.chunk.start,
                              "end": hit.chunk.end}  # fmt: skip
                found.append({"file_id": hit.chunk.document_id, "filename": hit.source,
                              "score": round(passage.score, 4), "text": hit.chunk.text,
                              "attributes": attributes})  # fmt: skip
        return sorted(found, key=lambda f: -f["score"])[:limit]

    return await asyncio.to_thread(find)

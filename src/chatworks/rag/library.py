"""The document library a process serves: its database, index and embedder, opened once, and
the two things callers do with it, ingest and prepare a grounded prompt.

The API and the CLI ingest and retrieve through this (deleting a document and `/v1/embeddings`
use its index and embedder). The embedder loads on first use (it takes seconds), so a server
that never sees a document never pays for it. Generation is not here: callers run the prepared
messages through their provider (the API through its admission gate) and finish with
`answer.ground`.
"""

from __future__ import annotations

import threading
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from chatworks.rag.answer import NO_SOURCES, Prepared, build_messages, extract, select_sources
from chatworks.rag.evidence import focus
from chatworks.rag.index_sql import SqlIndex, open_index
from chatworks.rag.ingest import FileOutcome, IngestContext, ingest_bytes
from chatworks.rag.retrieve import RetrievalConfig, retrieve
from chatworks.settings import Settings
from chatworks.storage.db import open_database


def _approx_tokens(text: str) -> int:
    # The budget only has to be roughly right; ~4 characters per token for English BPE.
    return len(text) // 4 + 1


class Library:
    def __init__(self, settings: Settings, engine: Engine | None = None):
        self.settings = settings
        self._engine = engine
        self._lock = threading.Lock()

    @cached_property
    def engine(self) -> Engine:
        return self._engine or open_database(self.settings)

    @cached_property
    def index(self) -> SqlIndex:
        """Search and deletes need no embedder; only ingesting and questions load it."""
        return open_index(self.engine)

    def session(self) -> Session:
        return Session(self.engine)

    @property
    def context(self) -> IngestContext:
        with self._lock:  # one model load even when the first requests arrive together
            if "_context" not in self.__dict__:
                self._context = IngestContext.from_settings(self.settings, self.engine)
            return self._context

    def ingest(self, data: bytes, filename: str, collection: str, metadata=None) -> FileOutcome:
        return ingest_bytes(self.context, data, filename, collection, metadata=metadata)

    def retrieval_config(self, top_k: int | None = None) -> RetrievalConfig:
        s = self.settings
        return RetrievalConfig(
            top_k=top_k or s.rag_top_k, candidates=max(s.rag_candidates, top_k or 0),
            keyword_weight=s.rag_keyword_weight, vector_weight=s.rag_vector_weight,
            mmr_lambda=s.rag_mmr_lambda, min_similarity=s.rag_min_similarity,
        )  # fmt: skip

    def prepare(
        self, question: str, collection: str, top_k: int | None = None, filters=None,
        owner: str | None = None,
    ) -> Prepared:  # fmt: skip
        """`owner` (None: any) scopes the search to that tenant's collections."""
        ctx = self.context
        index = ctx.index.for_owner(owner)
        found = retrieve(
            question, index=index, embedder=ctx.embedder, collection=collection,
            config=self.retrieval_config(top_k), filters=filters,
        )  # fmt: skip
        if not found.relevant:
            return Prepared([], None, found.best_similarity, NO_SOURCES)
        passages = found.passages
        if self.settings.rag_focus_windows:
            passages = focus(question, passages, ctx.embedder, keep=self.settings.rag_focus_windows,
                             neighbours=self.settings.rag_focus_neighbours)  # fmt: skip
        sources = select_sources(passages, self.settings.rag_context_tokens, _approx_tokens)
        if self.settings.rag_answer == "extract":
            return Prepared(sources, None, found.best_similarity, extract(sources))
        return Prepared(sources, build_messages(question, sources), found.best_similarity)

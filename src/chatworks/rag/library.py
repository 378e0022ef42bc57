"""The document library a process serves: its database, index and embedder, opened once, and
what callers do with it: ingest, prepare a grounded prompt, suggest questions.

The API and the CLI ingest, retrieve and get suggested questions through this (deleting a
document and `/v1/embeddings` use its index and embedder). The embedder loads on first use (it
takes seconds), so a server that never sees a document never pays for it. Generation is not
here: callers run the prepared messages through their provider (the API through its admission
gate) and finish with `answer.ground`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from chatworks.rag.answer import NO_SOURCES, Prepared, build_messages, extract, select_sources
from chatworks.rag.answerability import (
    AnswerabilityModel,
    Features,
    features,
    question_terms,
    relevance_floor,
    topic_weights,
    unknown_terms,
)
from chatworks.rag.evidence import focus
from chatworks.rag.index_sql import SqlIndex, open_index
from chatworks.rag.ingest import FileOutcome, IngestContext, ingest_bytes
from chatworks.rag.retrieve import RetrievalConfig, Retrieved, retrieve
from chatworks.rag.suggest import Suggestion, suggest
from chatworks.rag.types import Hit
from chatworks.settings import Settings
from chatworks.storage.db import open_database
from chatworks.storage.documents import collection_version, list_sections
from chatworks.telemetry import metrics
from chatworks.telemetry import tracing as t


@dataclass(frozen=True)
class Examined:
    """A question after retrieval: the passages an answer may use (sentence windows when they
    are on; empty when nothing passed the relevance floor), and the answerability features
    (None when there are no windows to measure)."""

    passages: list[Retrieved]
    best_similarity: float
    features: Features | None


def _approx_tokens(text: str) -> int:
    # The budget only has to be roughly right; ~4 characters per token for English BPE.
    return len(text) // 4 + 1


class Library:
    def __init__(self, settings: Settings, engine: Engine | None = None):
        self.settings = settings
        self._engine = engine
        self._lock = threading.Lock()
        self._floors: dict[tuple[str, int], float] = {}  # (collection, chunks) -> floor
        self._suggested: dict[tuple[str, str | None, int], list[Suggestion]] = {}

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
        with t.tracer().start_as_current_span("ingest", attributes={t.DATA_SOURCE: collection}):
            try:
                outcome = ingest_bytes(self.context, data, filename, collection, metadata=metadata)
            except Exception:
                metrics.INGESTED_DOCUMENTS.labels("failed").inc()
                raise
        metrics.INGESTED_DOCUMENTS.labels(outcome.status).inc()
        if outcome.status != "unchanged":  # an unchanged file writes no chunks
            metrics.INGESTED_CHUNKS.inc(outcome.chunks)
        return outcome

    @cached_property
    def answerability(self) -> AnswerabilityModel:
        return AnswerabilityModel.load()

    def relevance_floor(self, collection: str, chunks: int | None = None) -> float:
        """The configured floor, or the one calibrated on `collection` (recomputed when its
        number of chunks changes; `chunks` saves the count query when the caller has it)."""
        if self.settings.rag_min_similarity is not None:
            return self.settings.rag_min_similarity
        ctx = self.context
        if chunks is None:
            chunks = ctx.index.term_counts([], collection)[0]
        key = (collection, chunks)
        if key not in self._floors:
            self._floors[key] = relevance_floor(ctx.index, ctx.embedder, collection)
        return self._floors[key]

    def retrieval_config(
        self, collection: str, top_k: int | None = None, chunks: int | None = None
    ) -> RetrievalConfig:
        s = self.settings
        return RetrievalConfig(
            top_k=top_k or s.rag_top_k, candidates=max(s.rag_candidates, top_k or 0),
            keyword_weight=s.rag_keyword_weight, vector_weight=s.rag_vector_weight,
            mmr_lambda=s.rag_mmr_lambda, min_similarity=self.relevance_floor(collection, chunks),
            quarantine=s.rag_quarantine,
        )  # fmt: skip

    def examine(
        self, question: str, collection: str, top_k: int | None = None, filters=None,
        owner: str | None = None,
    ) -> Examined:  # fmt: skip
        """Retrieval, then the sentence windows and their answerability features (what
        `prepare` decides on, and what `chatworks eval calibrate` fits the model to). `owner`
        (None: any) scopes the search to that tenant's collections."""
        ctx, s = self.context, self.settings
        index = ctx.index.for_owner(owner)
        terms = index.term_counts(question_terms(question), collection)
        config = self.retrieval_config(collection, top_k, chunks=terms[0])
        found = retrieve(
            question, index=index, embedder=ctx.embedder, collection=collection,
            config=config, filters=filters,
        )  # fmt: skip
        if not found.relevant or not s.rag_focus_windows:
            return Examined(found.passages, found.best_similarity, None)
        windows = focus(question, found.passages, ctx.embedder, keep=s.rag_focus_windows,
                        neighbours=s.rag_focus_neighbours)  # fmt: skip
        # Words the collection never uses count against answering only as far as they carry the
        # question's topic: one more embedding call, and only for questions that have such words.
        topic = topic_weights(question, unknown_terms(terms), ctx.embedder)
        measured = features(question, found.best_similarity, windows, config.min_similarity, terms,
                            topic)  # fmt: skip
        return Examined(windows, found.best_similarity, measured)

    def answers(self, examined: Examined) -> bool:
        """Whether the examined passages answer their question: something passed the
        relevance floor, and the answerability model (when on) says they hold the answer."""
        check = self.settings.rag_answerability and examined.features is not None
        return bool(examined.passages) and not (
            check and not self.answerability.answerable(examined.features)
        )

    def suggestions(self, collection: str, owner: str | None, count: int) -> list[Suggestion]:
        """Questions made from the collection's headings that it answers (`rag/suggest.py`),
        cached until its documents change."""
        with self.session() as session:
            version = collection_version(session, collection, owner)
        key = (collection, version, count)
        if key not in self._suggested:  # the sections are read only when the answer is not known
            with self.session() as session:
                sections = list_sections(session, collection, owner)

            def answered_from(question: str) -> Hit | None:
                examined = self.examine(question, collection, owner=owner)
                return examined.passages[0].hit if self.answers(examined) else None

            self._suggested[key] = suggest(sections, answered_from, count)
        return self._suggested[key]

    def prepare(
        self, question: str, collection: str, top_k: int | None = None, filters=None,
        owner: str | None = None,
    ) -> Prepared:  # fmt: skip
        started = time.perf_counter()
        attributes = {t.OPERATION: "retrieval", t.DATA_SOURCE: collection}
        with t.tracer().start_as_current_span(f"retrieval {collection}", attributes=attributes):
            examined = self.examine(question, collection, top_k, filters, owner)
            refused = not self.answers(examined)
        metrics.RETRIEVAL_LATENCY.labels("total").observe(time.perf_counter() - started)
        if refused:
            metrics.GROUNDED_ANSWERS.labels("refused").inc()
            return Prepared([], None, examined.best_similarity, NO_SOURCES)
        with t.tracer().start_as_current_span("prompt build"):
            sources = select_sources(examined.passages, self.settings.rag_context_tokens,
                                     _approx_tokens)  # fmt: skip
            if self.settings.rag_answer == "extract":
                metrics.GROUNDED_ANSWERS.labels("extracted").inc()
                return Prepared(sources, None, examined.best_similarity, extract(sources))
            messages = build_messages(question, sources)
        metrics.GROUNDED_ANSWERS.labels("generated").inc()
        return Prepared(sources, messages, examined.best_similarity)

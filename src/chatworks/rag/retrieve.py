"""Hybrid retrieval: a relevance floor on the vector search, then keyword (BM25) and vector
results fused by reciprocal rank, then optional de-duplication (MMR).

Covers: turning a question into the ranked passages an answer may use, and deciding that none
is relevant enough (the caller then refuses instead of letting the model improvise). Does not
cover: storage or search itself (`Index`), prompts and citations (`answer.py`).

Why RRF: BM25 scores and cosine similarities live on different scales; reciprocal rank fusion
(Cormack et al. 2009) needs only ranks, so neither side needs calibrating. Why the floor uses
cosine similarity, not the fused score: RRF scores say how an item ranks, not whether anything
relevant exists at all.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from chatworks.rag.types import Embedder, Hit, Index
from chatworks.telemetry import metrics
from chatworks.telemetry import tracing as t


@dataclass(frozen=True)
class RetrievalConfig:
    top_k: int = 5
    candidates: int = 20  # per search, before fusion
    rrf_k: int = 60  # the constant of Cormack et al.; damps the weight of the very top ranks
    keyword_weight: float = 1.0
    vector_weight: float = 1.0
    # 1.0 keeps pure relevance order; lower values trade relevance for variety (MMR).
    mmr_lambda: float = 0.8
    # Below this best cosine similarity nothing retrieved counts as relevant.
    min_similarity: float = 0.25
    # Chunks ingestion flagged as instruction-like (`rag/injection.py`) are stored, so a
    # reviewer can see them, but never retrieved: what cannot reach a prompt cannot steer it.
    quarantine: bool = True


@dataclass(frozen=True)
class Retrieved:
    hit: Hit
    score: float  # fused


@dataclass(frozen=True)
class Retrieval:
    passages: list[Retrieved]
    best_similarity: float

    @property
    def relevant(self) -> bool:
        return bool(self.passages)


def reciprocal_rank_fusion(
    rankings: list[tuple[list[Hit], float]], rrf_k: int
) -> list[tuple[Hit, float]]:
    """Fuses ranked lists: score(d) = sum over lists of weight / (rrf_k + rank(d))."""
    fused: dict[str, float] = {}
    first_seen: dict[str, Hit] = {}
    for hits, weight in rankings:
        for rank, hit in enumerate(hits, start=1):
            key = hit.chunk.id
            fused[key] = fused.get(key, 0.0) + weight / (rrf_k + rank)
            first_seen.setdefault(key, hit)
    order = sorted(fused, key=lambda key: fused[key], reverse=True)
    return [(first_seen[key], fused[key]) for key in order]


_WORD = re.compile(r"\w+")


def _words(text: str) -> frozenset[str]:
    return frozenset(w.lower() for w in _WORD.findall(text))


def _overlap(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def mmr(items: list[Retrieved], k: int, lam: float) -> list[Retrieved]:
    """Maximal marginal relevance (Carbonell & Goldstein 1998) with word-set (Jaccard) overlap
    as the redundancy measure: cheap, and it catches what chunk overlap and near-duplicate
    documents produce. Relevance is the fused score rescaled to [0, 1]."""
    if lam >= 1.0 or len(items) <= 1:
        return items[:k]
    top = items[0].score
    words = [_words(item.hit.chunk.text) for item in items]
    chosen: list[int] = []
    rest = list(range(len(items)))
    while rest and len(chosen) < k:

        def gain(i: int) -> float:
            redundancy = max((_overlap(words[i], words[j]) for j in chosen), default=0.0)
            return lam * items[i].score / top - (1 - lam) * redundancy

        best = max(rest, key=gain)
        chosen.append(best)
        rest.remove(best)
    return [items[i] for i in chosen]


def _admitted(hits: list[Hit], config: RetrievalConfig) -> list[Hit]:
    # After the search, not in it: flagged chunks are rare (0.2% of news paragraphs, measured
    # in docs/benchmarks.md), so top-k loses at most a candidate or two, and both index
    # backends stay as they are.
    if not config.quarantine:
        return hits
    return [hit for hit in hits if not hit.chunk.metadata.get("injection")]


@contextlib.contextmanager
def _stage(span_name: str, stage: str, **attributes: object) -> Iterator[None]:
    """One retrieval stage: a child span and its latency histogram."""
    started = time.perf_counter()
    with t.tracer().start_as_current_span(span_name, attributes=attributes or None):
        yield
    metrics.RETRIEVAL_LATENCY.labels(stage).observe(time.perf_counter() - started)


def retrieve(
    question: str,
    *,
    index: Index,
    embedder: Embedder,
    collection: str,
    config: RetrievalConfig = RetrievalConfig(),
    filters: Mapping[str, object] | None = None,
) -> Retrieval:
    # Span names: the GenAI "embeddings" operation, then one span per search and the fusion.
    with _stage("embeddings", "embed", **{t.OPERATION: "embeddings"}):
        vector = embedder.embed([question])[0]
    with _stage("vector search", "vector"):
        by_vector = _admitted(
            index.vector_search(vector, config.candidates, collection, filters), config
        )
    best = max((hit.score for hit in by_vector), default=0.0)
    if best < config.min_similarity:  # refused: no keyword search needed
        metrics.RETRIEVALS.labels("empty").inc()
        metrics.RETRIEVAL_CHUNKS.observe(0)
        return Retrieval([], best)
    with _stage("keyword search", "keyword"):
        by_keyword = _admitted(
            index.keyword_search(question, config.candidates, collection, filters), config
        )
    with _stage("fusion", "fusion"):
        fused = reciprocal_rank_fusion(
            [(by_keyword, config.keyword_weight), (by_vector, config.vector_weight)], config.rrf_k
        )
        items = [Retrieved(hit, score) for hit, score in fused]
        chosen = mmr(items, config.top_k, config.mmr_lambda)
    metrics.RETRIEVALS.labels("found").inc()
    metrics.RETRIEVAL_CHUNKS.observe(len(chosen))
    return Retrieval(chosen, best)

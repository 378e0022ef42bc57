"""Running a dataset against a collection: retrieval only, or full grounded answers.

Covers: asking each question the way the product does (`retrieve` with the library's settings,
or `Library.prepare` + a provider + `ground` for answers), judging the results against the gold
passages, and the per-question records and averages a report is made of. Retrieval can also
run vector-only or keyword-only, to show what fusion adds. Does not cover: ingesting the corpus
(the caller does, e.g. with `datasets.corpus_files`), files and thresholds (`report.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from chatworks.evals import metrics
from chatworks.evals.datasets import EvalItem, passage_matches, source_matches
from chatworks.providers.base import Provider
from chatworks.rag.answer import Grounded, answer_greedily
from chatworks.rag.library import Library, Prepared
from chatworks.rag.retrieve import retrieve
from chatworks.rag.types import Hit

Mode = Literal["hybrid", "vector", "keyword"]
T = TypeVar("T")
R = TypeVar("R")
Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class RetrievalResult:
    id: str
    answerable: bool
    refused: bool  # hybrid only: best cosine similarity below the relevance floor
    best_similarity: float | None
    recall: float | None  # None for unanswerable questions
    reciprocal_rank: float | None
    ndcg: float | None
    sources: list[str]  # the retrieved chunks' document sources, in rank order


@dataclass
class EvalReport:
    """What a run measured: `metrics` (name -> value; None when undefined, e.g. no unanswerable
    questions) and one record per question."""

    kind: Literal["retrieval", "answers", "probes", "run"]
    dataset: str
    collection: str
    params: dict[str, object]
    metrics: dict[str, float | None]
    questions: list[object] = field(default_factory=list)


def _search(
    item: EvalItem, library: Library, collection: str, k: int, mode: Mode
) -> tuple[list[Hit], float | None, bool]:
    """(hits best first, best cosine similarity if known, refused by the floor)."""
    ctx = library.context
    if mode == "hybrid":
        found = retrieve(
            item.question, index=ctx.index, embedder=ctx.embedder, collection=collection,
            config=library.retrieval_config(collection, top_k=k),
        )  # fmt: skip
        return [p.hit for p in found.passages], found.best_similarity, not found.relevant
    if mode == "vector":
        vector = ctx.embedder.embed([item.question])[0]
        hits = ctx.index.vector_search(vector, k, collection)
        return hits, (hits[0].score if hits else None), False
    return ctx.index.keyword_search(item.question, k, collection), None, False


def _judge(item: EvalItem, hits: list[Hit]) -> metrics.Judgement:
    def covers(hit: Hit, g: int) -> bool:
        return passage_matches(item.gold[g], hit.source, hit.chunk.text)

    return metrics.judge(hits, len(item.gold), covers)


def run_retrieval_eval(
    items: Sequence[EvalItem],
    library: Library,
    collection: str,
    *,
    k: int = 10,
    mode: Mode = "hybrid",
    dataset: str = "",
    progress: Progress | None = None,
) -> EvalReport:
    """recall@k, MRR and nDCG@10 over the answerable questions; with `mode="hybrid"` also
    how the relevance floor splits answerable from unanswerable questions."""
    results: list[RetrievalResult] = []
    for done, item in enumerate(items):
        hits, best, refused = _search(item, library, collection, max(k, 10), mode)
        scores: tuple[float | None, float | None, float | None] = (None, None, None)
        if item.answerable:
            judged = _judge(item, hits)
            scores = (
                metrics.recall_at_k(judged, len(item.gold), k),
                metrics.reciprocal_rank(judged[:k]),
                metrics.ndcg_at_k(judged, len(item.gold), 10),
            )
        results.append(RetrievalResult(item.id, item.answerable, refused, best, *scores,
                                       sources=[h.source for h in hits[:k]]))  # fmt: skip
        if progress:
            progress(done + 1, len(items))
    answerable = [r for r in results if r.answerable]
    summary: dict[str, float | None] = {
        f"recall@{k}": metrics.mean(r.recall for r in answerable),
        "mrr": metrics.mean(r.reciprocal_rank for r in answerable),
        "ndcg@10": metrics.mean(r.ndcg for r in answerable),
    }
    if mode == "hybrid":
        summary["floor_refusal_accuracy"] = metrics.refusal_accuracy(
            [r.refused for r in results if not r.answerable]
        )
        summary["floor_false_refusal_rate"] = metrics.mean(float(r.refused) for r in answerable)
    return EvalReport(
        "retrieval", dataset, collection, {"k": k, "mode": mode, "questions": len(items)},
        summary, list(results),
    )  # fmt: skip


@dataclass(frozen=True)
class AnswerResult:
    id: str
    answerable: bool
    answer: str
    refused: bool
    contains_answer: bool | None  # None for unanswerable questions
    cited_sources: list[str]
    citation_precision: float | None
    citation_recall: float | None
    invalid_citations: int  # citations naming a passage the model was not given
    dropped_markers: int  # [n] markers the model wrote that named no source


def gold_cited(cited: list[str], item: EvalItem) -> list[str]:
    """Cited document sources mapped onto the gold's relative names where they match, so they
    compare with `item.gold_sources`; other documents keep their own (wrong) names."""
    mapped = []
    for source in cited:
        gold = next((g for g in item.gold_sources if source_matches(source, g)), None)
        mapped.append(gold or source)
    return mapped


def invalid_citations(grounded: Grounded, prepared: Prepared) -> int:
    """Citations naming a passage the model was not given. Checked here independently of
    `ground`: a citation is valid only if it names, by number, exactly a passage that was in
    the prompt (same chunk, same quoted text)."""
    given = {s.number: s.passage.hit for s in prepared.sources}
    return sum(
        1
        for c in grounded.citations
        if c.index not in given
        or (given[c.index].chunk.document_id, given[c.index].chunk.text) != (c.document_id, c.quote)
    )


async def _answer(
    item: EvalItem, prepared: Prepared, provider: Provider, model: str, max_tokens: int
) -> AnswerResult:
    grounded = await answer_greedily(provider, model, item.question, prepared, max_tokens)
    invalid = invalid_citations(grounded, prepared)
    cited = gold_cited(list(dict.fromkeys(c.source for c in grounded.citations)), item)
    contained = None
    if item.answerable and item.answer is not None:
        contained = not grounded.refused and metrics.contains_answer(grounded.answer, item.answer)
    return AnswerResult(
        item.id, item.answerable, grounded.answer, grounded.refused, contained, cited,
        metrics.citation_precision(cited, item.gold_sources) if item.answerable else None,
        metrics.citation_recall(cited, item.gold_sources) if item.answerable else None,
        invalid, grounded.dropped_markers,
    )  # fmt: skip


def ask_all(
    provider: Provider,
    items: Sequence[T],
    ask: Callable[[T], Awaitable[R]],
    progress: Progress | None = None,
) -> list[R]:
    """`ask` for every item, concurrently up to the provider's concurrency (so a batching engine
    decodes several at once), results in item order. The provider is loaded and closed here."""
    limit = asyncio.Semaphore(max(1, provider.max_concurrency))
    done = 0

    async def one(item: T) -> R:
        nonlocal done
        async with limit:
            result = await ask(item)
        done += 1
        if progress:
            progress(done, len(items))
        return result

    async def run_all() -> list[R]:
        await provider.load()
        try:
            return list(await asyncio.gather(*map(one, items)))
        finally:
            await provider.close()

    return asyncio.run(run_all())


def run_answer_eval(
    items: Sequence[EvalItem],
    library: Library,
    provider: Provider,
    collection: str,
    *,
    model: str,
    max_tokens: int = 64,
    dataset: str = "",
    progress: Progress | None = None,
) -> EvalReport:
    """Grounded answers, greedy, as `chatworks ask` makes them. Retrieval runs first, one
    question at a time; then the generations, through `ask_all`."""
    prepared = [library.prepare(item.question, collection) for item in items]
    results = ask_all(
        provider, list(zip(items, prepared, strict=True)),
        lambda pair: _answer(*pair, provider, model, max_tokens), progress,
    )  # fmt: skip
    answerable = [r for r in results if r.answerable]
    summary: dict[str, float | None] = {
        "refusal_accuracy": metrics.refusal_accuracy(
            [r.refused for r in results if not r.answerable]
        ),
        "false_refusal_rate": metrics.mean(float(r.refused) for r in answerable),
        "containment": metrics.mean(
            float(bool(r.contains_answer)) for r in answerable if r.contains_answer is not None
        ),
        "citation_precision": metrics.mean(r.citation_precision for r in answerable),
        "citation_recall": metrics.mean(r.citation_recall for r in answerable),
        "invalid_citations": float(sum(r.invalid_citations for r in results)),
        "dropped_markers": float(sum(r.dropped_markers for r in results)),
    }
    return EvalReport(
        "answers", dataset, collection,
        {"model": model, "max_tokens": max_tokens, "questions": len(items)},
        summary, list(results),
    )  # fmt: skip

"""Eval metrics as pure functions over plain values, so each can be checked by hand.

Retrieval (per question, then averaged): recall@k, reciprocal rank (MRR when averaged) and
nDCG@k with binary gains. Ranking metrics take a *judgement*: for each retrieved result, in
rank order, the index of the gold passage it is the first to cover, or None. A gold passage
counts once: a second chunk containing the same snippet (chunk overlap, a repeated paragraph)
earns nothing, so a system cannot score by returning near-duplicates.

Answers: citation precision/recall against the gold *documents* (a citation is right when it
names a document that holds a gold passage; chunk-level correctness is the retrieval metrics'
job), refusal accuracy on unanswerable questions, and containment of the short gold answer.
Not covered: judging free-text answers with a model (no judge model is available offline).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from chatworks.evals.datasets import normalize

R = TypeVar("R")  # a retrieved result, whatever its type
Judgement = list[int | None]  # per result, in rank order: gold index first covered, or None


def judge(results: Sequence[R], n_gold: int, covers: Callable[[R, int], bool]) -> Judgement:
    """For each result, the lowest-numbered gold passage it covers that no higher-ranked
    result covered already; `covers(result, g)` says whether result covers gold passage g."""
    found: set[int] = set()
    judged: Judgement = []
    for result in results:
        new = next((g for g in range(n_gold) if g not in found and covers(result, g)), None)
        if new is not None:
            found.add(new)
        judged.append(new)
    return judged


def recall_at_k(judged: Judgement, n_gold: int, k: int) -> float:
    """Fraction of the gold passages covered within the first k results."""
    if n_gold == 0:
        raise ValueError("recall is undefined without gold passages")
    return sum(g is not None for g in judged[:k]) / n_gold


def reciprocal_rank(judged: Judgement) -> float:
    """1 / rank of the first relevant result, 0 if none."""
    return next((1.0 / rank for rank, g in enumerate(judged, 1) if g is not None), 0.0)


def ndcg_at_k(judged: Judgement, n_gold: int, k: int) -> float:
    """DCG of the first k results (gain 1 per newly covered gold passage, discounted by
    log2(rank + 1)) over the DCG of an ideal ranking that covers all gold passages first."""
    if n_gold == 0:
        raise ValueError("nDCG is undefined without gold passages")
    dcg = sum(1 / math.log2(rank + 1) for rank, g in enumerate(judged[:k], 1) if g is not None)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(n_gold, k) + 1))
    return dcg / ideal


def citation_precision(cited: Iterable[str], gold: Iterable[str]) -> float | None:
    """Fraction of the distinct cited documents that are gold documents; None when nothing
    is cited (precision of an empty set is undefined, and averaging it as 0 or 1 would lie)."""
    cited_set, gold_set = set(cited), set(gold)
    if not cited_set:
        return None
    return len(cited_set & gold_set) / len(cited_set)


def citation_recall(cited: Iterable[str], gold: Iterable[str]) -> float | None:
    """Fraction of the gold documents that are cited; None without gold documents."""
    cited_set, gold_set = set(cited), set(gold)
    if not gold_set:
        return None
    return len(cited_set & gold_set) / len(gold_set)


def refusal_accuracy(refused: Sequence[bool]) -> float | None:
    """Over unanswerable questions: the fraction that were refused; None if there are none."""
    return sum(refused) / len(refused) if refused else None


def contains_answer(answer: str, gold: str) -> bool:
    """Whether the generated answer contains the short gold answer, case- and
    whitespace-insensitively, not as part of a longer word ("re" is not found in "return")."""
    needle = re.escape(normalize(gold).casefold())
    # Word boundaries only where the gold itself starts/ends with a word character: a gold
    # answer like "**" or "'a'" has no word edge to anchor to.
    left = r"(?<!\w)" if re.match(r"\w", gold.strip()) else ""
    right = r"(?!\w)" if re.search(r"\w$", gold.strip()) else ""
    return re.search(left + needle + right, normalize(answer).casefold()) is not None


def mean(values: Iterable[float | None]) -> float | None:
    """Average of the defined values; None if there are none."""
    defined = [v for v in values if v is not None]
    return sum(defined) / len(defined) if defined else None

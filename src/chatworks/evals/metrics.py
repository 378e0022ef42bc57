"""Eval metrics as pure functions over plain values, so each can be checked by hand.

Retrieval (per question, then averaged): recall@k, reciprocal rank (MRR when averaged) and
nDCG@k with binary gains. Ranking metrics take a *judgement*: for each retrieved result, in
rank order, the index of the gold passage it is the first to cover, or None. A gold passage
counts once: a second chunk containing the same snippet (chunk overlap, a repeated paragraph)
earns nothing, so a system cannot score by returning near-duplicates.

Answers: citation precision/recall against the gold *documents* (a citation is right when it
names a document that holds a gold passage; chunk-level correctness is the retrieval metrics'
job), refusal accuracy on unanswerable questions, containment of the short gold answer, token
F1 against it, and groundedness (a lexical proxy: are the answer's sentences made of the cited
quotes' words). Latency percentiles for the suite reports.
Not covered: judging answers with a model (`judge.py`, optional and measured against humans).
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from chatworks.evals.datasets import normalize
from chatworks.rag.evidence import content_words, sentences

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


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def answer_tokens(text: str) -> list[str]:
    """SQuAD-style normalisation: lower case, no punctuation, no articles, split on whitespace."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(answer: str, gold: str) -> float:
    """F1 of the answer's tokens against the gold's, counting shared tokens with multiplicity
    (SQuAD's definition). Long answers pay in precision: a 40-word quote holding the 1-word gold
    scores about 0.05, where containment says 1; the two together tell a short right answer
    from a long one that merely includes it."""
    ours, theirs = answer_tokens(answer), answer_tokens(gold)
    if not ours or not theirs:
        return float(ours == theirs)
    shared = sum((Counter(ours) & Counter(theirs)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(ours), shared / len(theirs)
    return 2 * precision * recall / (precision + recall)


_MARKER = re.compile(r"\[\d{1,3}\]")


def groundedness(answer: str, quotes: Sequence[str], support: float = 0.5) -> float | None:
    """Share of the answer's claims supported by the cited quotes, as a lexical proxy.

    A claim is a sentence of the answer (citation markers removed) with at least one content
    word (stop words and 1-letter words dropped, lower-cased). It is supported when at least
    `support` of its distinct content words occur among the content words of the cited quotes
    taken together. The score is supported claims / claims; None when the answer has no claim
    (an empty answer); 0.0 when it has claims but cites nothing.

    This checks words, not meaning: a negated or reordered sentence built from the quote's
    words passes, and a faithful paraphrase with other words fails. Extractive answers (the
    quote itself) score 1 by construction; it is most telling for generated answers.
    """
    claims = [words for s in sentences(_MARKER.sub("", answer)) if (words := content_words(s.text))]
    if not claims:
        return None
    cited = set().union(*map(content_words, quotes)) if quotes else set()
    supported = sum(len(words & cited) / len(words) >= support for words in claims)
    return supported / len(claims)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between the two nearest ranks
    (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

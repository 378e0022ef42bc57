"""Fitting the answerability model (`rag/answerability.py`) to golden sets.

Each question is examined the way `Library.prepare` examines it (retrieval, relevance floor,
sentence windows, features); questions the floor already refuses carry no features and are
left out, so the model learns only the decision the floor cannot make. The label is the
dataset's `answerable`. Held-out questions (tag `heldout`) must not be passed in: they are
what the fitted model is judged on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chatworks.evals.datasets import EvalItem
from chatworks.rag.answerability import AnswerabilityModel, Features, fit
from chatworks.rag.library import Library


@dataclass(frozen=True)
class Examples:
    features: list[Features]
    answerable: list[bool]
    floor_refused: int  # questions the relevance floor refused (not examples)


def collect(items: Sequence[EvalItem], library: Library, collection: str) -> Examples:
    features, labels, refused = [], [], 0
    for item in items:
        measured = library.examine(item.question, collection).features
        if measured is None:
            refused += 1
            continue
        features.append(measured)
        labels.append(item.answerable)
    return Examples(features, labels, refused)


def calibrate(
    examples: Sequence[Examples], max_false_refusals: float, trained_on: str
) -> AnswerabilityModel:
    features = [f for e in examples for f in e.features]
    labels = [a for e in examples for a in e.answerable]
    return fit(features, labels, max_false_refusals=max_false_refusals, trained_on=trained_on)


def refusal_rates(model: AnswerabilityModel, examples: Examples) -> dict[str, float | None]:
    """How the model splits examples: answerable ones refused, unanswerable ones refused."""
    verdicts = [(model.answerable(f), a) for f, a in zip(examples.features, examples.answerable,
                                                          strict=True)]  # fmt: skip
    answerable = [ok for ok, a in verdicts if a]
    unanswerable = [ok for ok, a in verdicts if not a]
    return {
        "false_refusal_rate": 1 - sum(answerable) / len(answerable) if answerable else None,
        "refusal_accuracy": 1 - sum(unanswerable) / len(unanswerable) if unanswerable else None,
    }

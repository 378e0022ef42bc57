"""Fitting the answerability model (`rag/answerability.py`) to golden sets, and the trade-off
its threshold makes between refusing answerable questions and answering unanswerable ones.

Each question is examined the way `Library.prepare` examines it (retrieval, relevance floor,
sentence windows, features); questions the floor already refuses carry no features and are
left out of the fit, so the model learns only the decision the floor cannot make. They still
count in the refusal rates: a user sees a refusal either way. The label is the dataset's
`answerable`. Questions tagged `heldout` or `paraphrase` must not be fitted on (`split` keeps
them apart): they are what the fitted model is judged on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chatworks.evals.datasets import EvalItem
from chatworks.rag.answerability import AnswerabilityModel, Features, fit
from chatworks.rag.library import Library

# The parts of a golden set: fitted on, and judged on (never fitted on).
TRAINING, HELDOUT, PARAPHRASE = "training", "heldout", "paraphrase"


def split(items: Sequence[EvalItem]) -> dict[str, list[EvalItem]]:
    """Paraphrases (tag `paraphrase`, rewordings of other questions of the set), the other
    held-out questions (tag `heldout`), and the rest (untagged or `dev`), which a fit may use.
    A paraphrase is judged even when the question it rewords was fitted on: what it measures
    is whether rewording flips the decision."""
    parts: dict[str, list[EvalItem]] = {TRAINING: [], HELDOUT: [], PARAPHRASE: []}
    for item in items:
        part = next((p for p in (PARAPHRASE, HELDOUT) if p in item.tags), TRAINING)
        parts[part].append(item)
    return parts


@dataclass(frozen=True)
class Examples:
    features: list[Features]  # of the questions past the relevance floor
    answerable: list[bool]  # their labels
    floor_labels: list[bool]  # labels of the questions the floor refused (no features)

    @property
    def floor_refused(self) -> int:
        return len(self.floor_labels)


def collect(items: Sequence[EvalItem], library: Library, collection: str) -> Examples:
    features, labels, floored = [], [], []
    for item in items:
        measured = library.examine(item.question, collection).features
        if measured is None:
            floored.append(item.answerable)
            continue
        features.append(measured)
        labels.append(item.answerable)
    return Examples(features, labels, floored)


def pooled(examples: Sequence[Examples]) -> Examples:
    return Examples([f for e in examples for f in e.features],
                    [a for e in examples for a in e.answerable],
                    [a for e in examples for a in e.floor_labels])  # fmt: skip


def calibrate(
    examples: Sequence[Examples], max_false_refusals: float, trained_on: str
) -> AnswerabilityModel:
    both = pooled(examples)
    return fit(both.features, both.answerable, max_false_refusals=max_false_refusals,
               trained_on=trained_on)  # fmt: skip


@dataclass(frozen=True)
class Rates:
    threshold: float
    false_refusals: float | None  # share of answerable questions refused (floor or model)
    unanswerable_refused: float | None  # share of unanswerable questions refused (floor or model)


def refusal_rates(model: AnswerabilityModel, examples: Examples,
                  threshold: float | None = None) -> Rates:  # fmt: skip
    """What a user sees at `threshold` (default: the model's): every question the floor
    refuses is refused, the others when their probability is below the threshold."""
    cut = model.threshold if threshold is None else threshold
    refused = [model.probability(f) < cut for f in examples.features] + [True] * len(
        examples.floor_labels
    )
    labels = examples.answerable + examples.floor_labels

    def share(answerable: bool) -> float | None:
        picked = [r for r, a in zip(refused, labels, strict=True) if a == answerable]
        return sum(picked) / len(picked) if picked else None

    return Rates(cut, share(True), share(False))


# Where the curve is drawn: 0.100 .. 0.500 (plus the model's own threshold).
THRESHOLDS = tuple(round(0.1 + 0.025 * i, 3) for i in range(17))


def tradeoff(model: AnswerabilityModel, parts: dict[str, Examples]) -> dict[str, list[Rates]]:
    """The refusal rates of each set of questions at each threshold: the curve the default
    threshold is chosen on."""
    thresholds = sorted({*THRESHOLDS, model.threshold})
    return {name: [refusal_rates(model, found, t) for t in thresholds]
            for name, found in parts.items()}  # fmt: skip


def tradeoff_table(curves: dict[str, list[Rates]], chosen: float) -> str:
    """The trade-off as a Markdown table: one row a threshold, false refusals / unanswerable
    refused per set of questions; the chosen threshold's row in bold."""

    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    names = list(curves)
    head = "| threshold | " + " | ".join(f"{n}: false refusals / unanswerable refused"
                                          for n in names) + " |"  # fmt: skip
    lines = [head, "|---" * (len(names) + 1) + "|"]
    for row in zip(*curves.values(), strict=True):
        text = f"{row[0].threshold:.3f} | " + " | ".join(
            f"{cell(r.false_refusals)} / {cell(r.unanswerable_refused)}" for r in row
        )
        lines.append(f"| **{text}** |" if abs(row[0].threshold - chosen) < 1e-9 else f"| {text} |")
    return "\n".join(lines) + "\n"


def write_tradeoff(curves: dict[str, list[Rates]], chosen: float, directory: Path) -> list[Path]:
    """`answerability-tradeoff.md` (the table) and `.png` (the plot, with matplotlib) in
    `directory`; returns the files written."""
    from chatworks.evals.plots import refusal_tradeoff

    directory.mkdir(parents=True, exist_ok=True)
    table = directory / "answerability-tradeoff.md"
    table.write_text(tradeoff_table(curves, chosen), encoding="utf-8")
    points = {name: [(r.threshold, r.false_refusals, r.unanswerable_refused) for r in rates
                     if r.false_refusals is not None and r.unanswerable_refused is not None]
              for name, rates in curves.items()}  # fmt: skip
    plot = refusal_tradeoff(points, chosen, directory / "answerability-tradeoff.png",
                            "refusal trade-off")  # fmt: skip
    return [table, plot] if plot else [table]

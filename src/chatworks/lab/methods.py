"""Every method the lab knows, by name: which data it takes, how to build it, how it is saved.

A method is a name, the kind of data set it applies to (`text` or `tabular`), a family
(`sklearn`: saved with skops; `torch`: saved as safetensors) and a builder. `--methods` picks
by name; by default every method of the data set's kind runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chatworks.lab import classic
from chatworks.lab.data import Columns


@dataclass(frozen=True)
class Method:
    name: str
    kind: str  # "text" | "tabular"
    family: str  # "sklearn" | "torch"
    title: str
    build: Callable[[Columns, int, int, bool], Any]  # (columns, n_classes, seed, balanced)


def _sk(builder: classic.Builder) -> Callable[[Columns, int, int, bool], Any]:
    return lambda columns, _n, seed, balanced: builder(columns, seed, balanced)


def _neural(mode: str, **overrides: Any) -> Callable[[Columns, int, int, bool], Any]:
    def build(_columns: Columns, n_classes: int, seed: int, _balanced: bool) -> Any:
        from chatworks.lab.neural import NeuralConfig, NeuralText

        config = NeuralConfig(mode=mode, labels=n_classes, seed=seed, **overrides)
        return NeuralText(config)

    return build


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("tfidf-logreg", "text", "sklearn", "TF-IDF + logistic regression",
           _sk(classic.tfidf_logreg)),
    Method("tfidf-svm", "text", "sklearn", "TF-IDF + linear SVM (sigmoid-calibrated)",
           _sk(classic.tfidf_svm)),
    Method("tfidf-chars-logreg", "text", "sklearn",
           "TF-IDF chars 3-5 + words 1-2 + logistic regression", _sk(classic.tfidf_chars_logreg)),
    Method("setfit", "text", "torch", "SetFit-style few-shot on MiniLM (16 per class)",
           _neural("setfit", normalize=True)),
    Method("minilm-finetune", "text", "torch", "MiniLM fine-tuned (all weights)",
           _neural("finetune")),
    Method("minilm-lora", "text", "torch", "MiniLM + LoRA (r=8, query/value)",
           _neural("lora", lr=5e-4)),
    Method("linear", "tabular", "sklearn", "logistic regression (one-hot, scaled)",
           _sk(classic.linear)),
    Method("random-forest", "tabular", "sklearn", "random forest (300 trees)",
           _sk(classic.random_forest)),
    Method("hist-gbm", "tabular", "sklearn", "histogram gradient boosting",
           _sk(classic.hist_gradient_boosting)),
    Method("lightgbm", "tabular", "sklearn", "LightGBM", _sk(classic.lightgbm)),
    Method("xgboost", "tabular", "sklearn", "XGBoost", _sk(classic.xgboost)),
)}  # fmt: skip


# Run when asked for by name, not by default (the default text set is the five).
OPT_IN = {"tfidf-chars-logreg"}


def methods_for(kind: str, names: list[str] | None = None) -> list[Method]:
    """The methods to run: `names` in order (checked against the kind), or all of `kind`."""
    if not names:
        return [m for m in METHODS.values() if m.kind == kind and m.name not in OPT_IN]
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
    wrong = [n for n in names if METHODS[n].kind != kind]
    if wrong:
        raise ValueError(f"{', '.join(wrong)}: not for {kind} data")
    return [METHODS[n] for n in names]

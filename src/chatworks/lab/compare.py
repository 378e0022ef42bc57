"""The leaderboard: every method on the same seeded, stratified folds.

For each method and fold: fit on the other folds, predict the fold (out-of-fold probabilities
for the report), record accuracy, macro-F1 and training seconds. Then, on the first fold's
model (every fold's model has the same shape), the size of its saved files and its latency
on single records, one at a time, as a served model sees them. A time budget (FLAML's idea)
is shared out: each method gets an equal part of what is left when it starts, its neural
training stops at its deadline, and a method that has no time left is listed as skipped.
Not covered: nested hyper-parameter search, repeated CV.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold

from chatworks.lab import artifacts
from chatworks.lab.data import Dataset
from chatworks.lab.methods import Method

LATENCY_RECORDS = 30  # single-record predictions timed per method


@dataclass
class Result:
    method: Method
    accuracy: list[float] = field(default_factory=list)  # per fold
    macro_f1: list[float] = field(default_factory=list)
    train_s: list[float] = field(default_factory=list)
    p50_ms: float | None = None
    size_bytes: int | None = None
    oof: np.ndarray | None = None  # out-of-fold probabilities, [rows, classes]
    note: str = ""  # "skipped: time budget", "stopped by early stopping", ...

    @property
    def done(self) -> bool:
        return bool(self.accuracy)

    def mean(self, name: str) -> float:
        return float(np.mean(getattr(self, name)))

    def std(self, name: str) -> float:
        return float(np.std(getattr(self, name)))

    def summary(self) -> dict[str, Any]:
        if not self.done:
            return {"method": self.method.name, "note": self.note}
        return {
            "method": self.method.name, "title": self.method.title,
            "accuracy_mean": self.mean("accuracy"), "accuracy_std": self.std("accuracy"),
            "macro_f1_mean": self.mean("macro_f1"), "macro_f1_std": self.std("macro_f1"),
            "train_s_mean": self.mean("train_s"), "p50_ms": self.p50_ms,
            "size_bytes": self.size_bytes, "folds": len(self.accuracy), "note": self.note,
        }  # fmt: skip


@dataclass
class Comparison:
    data: Dataset
    folds: list[tuple[np.ndarray, np.ndarray]]
    results: list[Result]
    seed: int

    def ranked(self) -> list[Result]:
        """Done methods by mean macro-F1, then accuracy, then faster single-record latency."""
        done = [r for r in self.results if r.done]
        return sorted(done, key=lambda r: (
            -round(r.mean("macro_f1"), 4), -round(r.mean("accuracy"), 4), r.p50_ms or 0
        ))  # fmt: skip

    @property
    def best(self) -> Result:
        ranked = self.ranked()
        if not ranked:
            raise RuntimeError("no method finished within the time budget")
        return ranked[0]


def make_folds(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    smallest = int(np.bincount(y).min())
    if smallest < k:
        raise ValueError(f"the rarest class has {smallest} rows: too few for {k} folds")
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(y, y))


def inputs(data: Dataset, method: Method, rows: np.ndarray) -> Any:
    return data.texts(rows) if method.kind == "text" else data.frame.iloc[rows]


def fit(method: Method, data: Dataset, rows: np.ndarray, seed: int, balanced: bool,
        deadline: float | None = None) -> Any:  # fmt: skip
    estimator = method.build(data.columns, len(data.labels), seed, balanced)
    x = inputs(data, method, rows)
    if method.family == "torch":
        return estimator.fit(x, data.y[rows], deadline=deadline)
    return estimator.fit(x, data.y[rows])


def _latency_ms(estimator: Any, data: Dataset, method: Method, rows: np.ndarray) -> float:
    """p50 of single-record predictions (the first call, which warms caches, not counted)."""
    rows = rows[: LATENCY_RECORDS + 1]
    times = []
    for row in rows:
        one = inputs(data, method, np.array([row]))
        started = time.perf_counter()
        estimator.predict_proba(one)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[1:] or times)


def _size(estimator: Any, method: Method) -> int:
    with tempfile.TemporaryDirectory() as folder:
        artifacts.save(estimator, Path(folder), {"family": method.family})
        return sum(p.stat().st_size for p in Path(folder).iterdir()
                   if p.name != artifacts.MANIFEST)  # fmt: skip


def run(
    data: Dataset,
    methods: list[Method],
    *,
    folds: int = 5,
    seed: int = 0,
    balanced: bool = True,
    budget_s: float | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Comparison:
    splits = make_folds(data.y, folds, seed)
    started = time.monotonic()
    results = []
    for i, method in enumerate(methods):
        result = Result(method, oof=np.zeros((len(data), len(data.labels))))
        results.append(result)
        deadline = None
        if budget_s is not None:
            left = budget_s - (time.monotonic() - started)
            if left <= 0:
                result.note = "skipped: time budget"
                progress(f"{method.name}: skipped (time budget spent)")
                continue
            deadline = time.monotonic() + left / (len(methods) - i)
        for k, (train, test) in enumerate(splits):
            fold_deadline = None
            if deadline is not None:  # this fold's equal share of the method's time
                fold_deadline = time.monotonic() + (deadline - time.monotonic()) / (folds - k)
            t0 = time.perf_counter()
            estimator = fit(method, data, train, seed, balanced, fold_deadline)
            result.train_s.append(time.perf_counter() - t0)
            proba = np.asarray(estimator.predict_proba(inputs(data, method, test)))
            result.oof[test] = proba
            predicted = proba.argmax(1)
            result.accuracy.append(accuracy_score(data.y[test], predicted))
            result.macro_f1.append(f1_score(data.y[test], predicted, average="macro"))
            stopped = getattr(estimator, "stopped_by", "")
            if stopped and stopped not in result.note:
                result.note = ", ".join(filter(None, [result.note, f"stopped by {stopped}"]))
            if k == 0:
                result.p50_ms = _latency_ms(estimator, data, method, test)
                result.size_bytes = _size(estimator, method)
            progress(f"{method.name}: fold {k + 1}/{folds} accuracy "
                     f"{result.accuracy[-1]:.4f} macro-F1 {result.macro_f1[-1]:.4f}")  # fmt: skip
            if deadline is not None and time.monotonic() > deadline and k < folds - 1:
                result.note = ", ".join(
                    filter(None, [result.note, f"{k + 1} of {folds} folds (time budget)"])
                )
                break
    return Comparison(data, splits, results, seed)

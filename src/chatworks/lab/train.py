"""`chatworks lab train` as a function: compare the methods, write the report, fit the best
on every row, save it with its manifest, and record it all in MLflow (a run with the
leaderboard as metrics, the report and the model as artifacts, and a registry version).

The model registered is trained on all rows with the best method's settings; its quality is
the cross-validated estimate from the leaderboard (the same method on the same data, each
row judged out of fold), which the manifest carries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from chatworks.lab import artifacts, compare, registry, report
from chatworks.lab.data import Dataset
from chatworks.lab.methods import methods_for


@dataclass
class TrainOptions:
    methods: list[str] = field(default_factory=list)  # empty: every method of the data's kind
    folds: int = 5
    seed: int = 0
    balanced: bool = True
    budget_s: float | None = None
    register_as: str | None = None  # registered model name; None: no registry
    store: Path = Path("mlruns")
    track: bool = True


@dataclass
class TrainOutcome:
    comparison: compare.Comparison
    run_dir: Path
    files: dict[str, Path]
    model_dir: Path
    run_id: str | None = None
    version: registry.Version | None = None


def train(data: Dataset, out: Path, options: TrainOptions, command: str,
          progress: Callable[[str], None] = lambda _: None) -> TrainOutcome:  # fmt: skip
    methods = methods_for(data.columns.kind, options.methods)
    comparison = compare.run(data, methods, folds=options.folds, seed=options.seed,
                             balanced=options.balanced, budget_s=options.budget_s,
                             progress=progress)  # fmt: skip
    title = f"chatworks lab: {Path(data.source).name or 'data'} -> {data.target}"
    files = report.write(comparison, out, title, command)
    leaderboard = [r.summary() for r in comparison.results]
    files["leaderboard"] = out / "leaderboard.json"
    files["leaderboard"].write_text(json.dumps(leaderboard, indent=1) + "\n", encoding="utf-8")

    best = comparison.best
    progress(f"fitting {best.method.name} on all {len(data)} rows")
    started = time.perf_counter()
    estimator = compare.fit(best.method, data, np.arange(len(data)), options.seed,
                            options.balanced)  # fmt: skip
    model_dir = out / "model"
    artifacts.save(estimator, model_dir, {
        "name": options.register_as or Path(data.source).stem, "method": best.method.name,
        "family": best.method.family, "kind": data.columns.kind, "labels": data.labels,
        "target": data.target, "columns": data.columns.as_dict(), "rows": len(data),
        "cv": best.summary(), "train_s": time.perf_counter() - started, "command": command,
    })  # fmt: skip
    outcome = TrainOutcome(comparison, out, files, model_dir)
    if options.track:
        outcome.run_id = _track(outcome, options, data)
        if options.register_as:
            outcome.version = registry.register(
                options.store, options.register_as, outcome.run_id, "model", best.method.name,
                best.mean("macro_f1"),
            )  # fmt: skip
    return outcome


def _track(outcome: TrainOutcome, options: TrainOptions, data: Dataset) -> str:
    """One MLflow run in experiment `chatworks-lab`: settings as params, every method's means
    as metrics, the report and the model as artifacts."""
    c = registry.client(options.store)
    found = c.get_experiment_by_name("chatworks-lab")
    experiment = found.experiment_id if found else c.create_experiment(
        "chatworks-lab", artifact_location=(options.store / "artifacts").resolve().as_uri()
    )  # fmt: skip
    run_id = c.create_run(experiment, run_name=f"lab-{Path(data.source).stem}").info.run_id
    params = {"data": data.source, "rows": len(data), "target": data.target,
              "folds": options.folds, "seed": options.seed,
              "class_weight": "balanced" if options.balanced else "none",
              "budget_s": options.budget_s or "none",
              "best": outcome.comparison.best.method.name}  # fmt: skip
    for key, value in params.items():
        c.log_param(run_id, key, value)
    for r in outcome.comparison.results:
        if r.done:
            for name, value in (
                ("accuracy", r.mean("accuracy")),
                ("macro_f1", r.mean("macro_f1")),
                ("train_s", r.mean("train_s")),
                ("p50_ms", r.p50_ms or 0.0),
            ):
                c.log_metric(run_id, f"{r.method.name}.{name}", value)  # fmt: skip
    for path in outcome.files.values():
        c.log_artifact(run_id, str(path))
    c.log_artifacts(run_id, str(outcome.model_dir), "model")
    c.set_terminated(run_id)
    return run_id

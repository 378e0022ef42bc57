"""The lab: column detection, the same folds for every method, the leaderboard, the report,
artifacts that load back to the same predictions (and refuse tampering), the registry's
aliases, and the time budget. Fast methods on small data; neural runs are marked `slow`."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chatworks.lab import artifacts, compare, registry, report
from chatworks.lab.data import Columns, detect_columns, load_csv, make_dataset
from chatworks.lab.methods import methods_for
from chatworks.lab.samples import write_sample
from chatworks.lab.train import TrainOptions, train

TOPICS = {
    "sport": ["match", "goal", "team", "league", "coach", "season", "striker", "referee"],
    "money": ["bank", "shares", "market", "profit", "investor", "inflation", "bond", "loan"],
    "tech": ["software", "chip", "phone", "network", "startup", "cloud", "robot", "code"],
}
FILLER = ["the", "a", "new", "report", "says", "after", "week", "people", "today", "more"]


def topic_frame(n_per_class: int = 30, seed: int = 0) -> pd.DataFrame:
    """Short synthetic articles: topic words among filler, one in ten with a wrong topic word."""
    rng = random.Random(seed)
    rows = []
    for label, words in TOPICS.items():
        for _ in range(n_per_class):
            text = [rng.choice(words if rng.random() < 0.4 else FILLER) for _ in range(25)]
            rows.append({"text": " ".join(text), "label": label})
    return pd.DataFrame(rows)


@pytest.fixture
def text_data(tmp_path: Path):
    path = tmp_path / "topics.csv"
    topic_frame().to_csv(path, index=False)
    return load_csv(path, "label")


def test_columns_are_detected_and_overridable(tmp_path: Path) -> None:
    frame = pd.DataFrame({
        "id": [f"r{i}" for i in range(40)],
        "body": [f"a longer piece of free text number {i} about something" for i in range(40)],
        "colour": ["red", "blue"] * 20,
        "size": np.arange(40.0),
        "y": ["a", "b"] * 20,
    })  # fmt: skip
    found = detect_columns(frame.drop(columns="y"))
    assert (found.text, found.categorical, found.numeric, found.dropped) == (
        ["body"], ["colour"], ["size"], ["id"])  # fmt: skip
    frame.to_csv(tmp_path / "d.csv", index=False)
    forced = load_csv(tmp_path / "d.csv", "y", categorical=["size"], drop=["body"])
    assert forced.columns.kind == "tabular" and "size" in forced.columns.categorical
    with pytest.raises(ValueError, match="no column"):
        load_csv(tmp_path / "d.csv", "nope")


def test_every_method_runs_on_the_same_folds_and_the_leaderboard_ranks_them(text_data) -> None:
    methods = methods_for("text", ["tfidf-logreg", "tfidf-svm"])
    result = compare.run(text_data, methods, folds=3, seed=1)
    again = compare.make_folds(text_data.y, 3, 1)
    assert all((a == b).all() for (a, _), (b, _) in zip(result.folds, again, strict=True))
    for r in result.results:
        assert len(r.accuracy) == 3 and r.mean("accuracy") > 0.8  # separable topics
        assert r.oof.sum(1) == pytest.approx(np.ones(len(text_data)))  # every row predicted
        assert r.p50_ms > 0 and r.size_bytes > 0
    ranked = result.ranked()
    assert ranked[0].mean("macro_f1") >= ranked[-1].mean("macro_f1")


def test_a_spent_time_budget_skips_methods(text_data) -> None:
    result = compare.run(text_data, methods_for("text", ["tfidf-logreg"]), folds=3, budget_s=0)
    assert result.results[0].note == "skipped: time budget" and not result.results[0].done
    with pytest.raises(RuntimeError):
        result.best  # noqa: B018


def test_report_has_plots_per_class_table_and_grouped_errors(text_data, tmp_path: Path) -> None:
    result = compare.run(text_data, methods_for("text", ["tfidf-logreg"]), folds=3)
    files = report.write(result, tmp_path, "topics", "chatworks lab train topics.csv")
    for name in ("confusion", "calibration"):
        assert files[name].read_bytes()[:4] == b"\x89PNG"
    md = files["md"].read_text()
    assert "## Leaderboard" in md and "### Per class" in md and "worst errors" in md
    errors = report.worst_errors(result, result.best)
    assert len(errors) <= 20 and all(e.true != e.predicted for e in errors)
    assert all(e.kind in {"confidently wrong", "near tie", "true class far down", "unsure"}
               for e in errors)  # fmt: skip
    assert "<img" in files["html"].read_text()


def test_failure_kinds() -> None:
    assert report.failure_kind(np.array([0.9, 0.1, 0.0]), true=1) == "confidently wrong"
    assert report.failure_kind(np.array([0.5, 0.4, 0.1]), true=1) == "near tie"
    assert report.failure_kind(np.array([0.5, 0.3, 0.2]), true=2) == "true class far down"
    assert report.failure_kind(np.array([0.6, 0.4, 0.0]), true=1) == "unsure"


def _trained(data, method: str):
    chosen = methods_for(data.columns.kind, [method])[0]
    return chosen, compare.fit(chosen, data, np.arange(len(data)), 0, True)


def test_text_artifact_loads_back_to_the_same_predictions(text_data, tmp_path: Path) -> None:
    method, estimator = _trained(text_data, "tfidf-svm")
    manifest = {"method": method.name, "family": "sklearn", "kind": "text",
                "labels": text_data.labels, "columns": text_data.columns.as_dict()}  # fmt: skip
    artifacts.save(estimator, tmp_path, manifest)
    saved = json.loads((tmp_path / "manifest.json").read_text())
    assert saved["format"] == "skops" and set(saved["files"]) == {"model.skops", "vocabulary.json"}
    assert estimator.steps[0][1].vocabulary_  # saving left the live model whole
    loaded = artifacts.load(tmp_path)
    texts = text_data.texts()[:10]
    assert np.allclose(loaded.predict_proba(texts), estimator.predict_proba(texts))


def test_tampered_or_foreign_artifacts_are_refused(text_data, tmp_path: Path, monkeypatch) -> None:
    _, estimator = _trained(text_data, "tfidf-logreg")
    manifest = {"method": "tfidf-logreg", "family": "sklearn", "kind": "text",
                "labels": text_data.labels, "columns": text_data.columns.as_dict()}  # fmt: skip
    artifacts.save(estimator, tmp_path, manifest)
    import skops.io

    monkeypatch.setattr(skops.io, "get_untrusted_types", lambda file: ["os.system"])
    with pytest.raises(ValueError, match="never uses"):
        artifacts.load(tmp_path)
    (tmp_path / "vocabulary.json").write_text("[]")
    with pytest.raises(ValueError, match="sha256"):
        artifacts.load(tmp_path)


def test_tabular_sample_trains_registers_and_serves(tmp_path: Path) -> None:
    csv_path = tmp_path / "penguins.csv"
    assert write_sample("penguins", csv_path) == 344
    data = load_csv(csv_path, "species")
    assert (
        data.columns.categorical == ["island", "sex"] and "bill_length_mm" in data.columns.numeric
    )
    store = tmp_path / "mlruns"
    options = TrainOptions(methods=["linear", "lightgbm"], folds=3,
                           register_as="penguins", store=store)  # fmt: skip
    first = train(data, tmp_path / "run", options, "test")
    assert first.comparison.best.mean("accuracy") > 0.9
    assert {"champion", "candidate"} <= set(first.version.aliases)
    # A worse second version stays the candidate; the champion does not move by itself.
    options.methods = ["linear"]
    worse = make_dataset(data.frame.assign(species=data.frame["island"].astype(str)),
                         "species", Columns(numeric=["year"]), source="noise")  # fmt: skip
    second = train(worse, tmp_path / "run2", options, "test")
    assert second.version.aliases == ["candidate"]
    assert registry.resolve(store, "penguins").version == first.version.version
    registry.promote(store, "penguins", second.version.version)
    assert registry.resolve(store, "penguins").version == second.version.version
    listed = registry.versions(store)
    assert [v.version for v in listed] == ["2", "1"] and listed[1].path.is_dir()

    from chatworks.lab.serving import ClassifierStore, UnknownModel

    served, proba = ClassifierStore(store, "champion").predict(
        "penguins@1", [{"island": "Biscoe", "bill_length_mm": 47.5, "bill_depth_mm": 15.0,
                        "flipper_length_mm": 218, "body_mass_g": 4950, "sex": "male"}])  # fmt: skip
    assert served.version == "1" and served.classifier.labels[int(proba.argmax())] == "Gentoo"
    with pytest.raises(UnknownModel):
        ClassifierStore(store, "champion").get("penguins@9")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["setfit", "lora", "finetune"])
def test_neural_methods_learn_and_load_back(mode: str, tmp_path: Path) -> None:
    from chatworks.lab.neural import NeuralConfig, NeuralText

    path = tmp_path / "topics.csv"
    topic_frame(n_per_class=16).to_csv(path, index=False)
    data = load_csv(path, "label")
    texts = data.texts()
    # Short inputs and few pairs: the method's machinery, not its best score.
    config = NeuralConfig(mode=mode, labels=3, max_length=32, epochs=4, shots=8,
                          pairs_per_shot=4, normalize=mode == "setfit",
                          lr=5e-4 if mode == "lora" else 5e-5)  # fmt: skip
    estimator = NeuralText(config).fit(texts, data.y)
    accuracy = (estimator.predict_proba(texts).argmax(1) == data.y).mean()
    assert accuracy > 0.6, accuracy  # well above chance (1/3) on what it trained on
    artifacts.save(estimator, tmp_path / "m", {"method": mode, "family": "torch",
                                                "kind": "text", "labels": data.labels,
                                                "columns": data.columns.as_dict()})  # fmt: skip
    loaded = artifacts.load(tmp_path / "m")
    assert np.allclose(loaded.predict_proba(texts[:5]), estimator.predict_proba(texts[:5]),
                       atol=1e-5)  # fmt: skip
    assert estimator.config.history  # epochs (or the pair stage) were recorded

"""A trained classifier on disk, and back: the model file (skops for scikit-learn, safetensors
for torch) plus `manifest.json`, which says everything needed to use it without the run that
made it: method, labels, columns, metrics, library versions and each file's sha256.

skops rather than pickle: loading a skops file builds only the types it is allowed to, and
here those are the libraries the lab's own methods use (checked before loading), so a swapped
file cannot run code. The sha256s are checked too.
Not covered: signing; models made outside the lab.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from chatworks.lab.data import Columns, join_text, records_frame

MANIFEST = "manifest.json"
SKOPS_FILE = "model.skops"
VOCABULARY_FILE = "vocabulary.json"
# Types a lab model may be built from (skops refuses anything else unless trusted).
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "lightgbm.", "xgboost.", "builtins.",
                    "chatworks.lab.", "collections.", "functools.")  # fmt: skip
LIBRARIES = ("scikit-learn", "skops", "torch", "transformers", "peft", "lightgbm", "xgboost")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


@dataclass
class Classifier:
    """A loaded lab model: `predict_proba` over records (strings or column dicts)."""

    estimator: Any
    manifest: dict[str, Any]

    @property
    def labels(self) -> list[str]:
        return self.manifest["labels"]

    @property
    def columns(self) -> Columns:
        return Columns(**self.manifest["columns"])

    def inputs(self, records: list[dict | str]) -> Any:
        """What the estimator takes: joined text for text models, a frame for tabular ones."""
        frame = records_frame(records, self.columns)
        if self.manifest["kind"] == "text":
            return join_text(frame, self.columns.text)
        return frame

    def predict_proba(self, records: list[dict | str]) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(self.inputs(records)))


def _vectorizers(estimator: Any) -> list[tuple[int, Any]]:
    """The fitted TF-IDF steps of a pipeline, by step index."""
    from sklearn.feature_extraction.text import CountVectorizer

    steps = getattr(estimator, "steps", [])
    return [(i, step) for i, (_, step) in enumerate(steps)
            if isinstance(step, CountVectorizer) and hasattr(step, "vocabulary_")]  # fmt: skip


def _dump_sklearn(estimator: Any, folder: Path) -> list[Path]:
    """skops for the estimator, but a TF-IDF vocabulary as a JSON list of terms beside it:
    skops writes a dict entry by entry, and BBC News' 118k-term vocabulary took 8 minutes
    and 82 MB that way (a list of strings: well under a second)."""
    import skops.io

    detached = {str(i): step.vocabulary_ for i, step in _vectorizers(estimator)}
    files = [folder / SKOPS_FILE]
    try:
        for _, step in _vectorizers(estimator):
            step.vocabulary_ = {}
        skops.io.dump(estimator, folder / SKOPS_FILE)
    finally:
        for i, step in enumerate(getattr(estimator, "steps", [])):
            if str(i) in detached:
                step[1].vocabulary_ = detached[str(i)]
    if detached:
        terms = {i: sorted(vocabulary, key=vocabulary.__getitem__)
                 for i, vocabulary in detached.items()}  # fmt: skip
        (folder / VOCABULARY_FILE).write_text(json.dumps(terms), encoding="utf-8")
        files.append(folder / VOCABULARY_FILE)
    return files


def _load_sklearn(folder: Path) -> Any:
    import skops.io

    path = folder / SKOPS_FILE
    types = skops.io.get_untrusted_types(file=path)
    refused = [t for t in types if not t.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise ValueError(f"{path} holds types a lab model never uses: {', '.join(refused)}")
    estimator = skops.io.load(path, trusted=types)
    if (folder / VOCABULARY_FILE).exists():
        terms = json.loads((folder / VOCABULARY_FILE).read_text(encoding="utf-8"))
        for i, words in terms.items():
            estimator.steps[int(i)][1].vocabulary_ = {w: n for n, w in enumerate(words)}
    return estimator


def save(estimator: Any, folder: Path, manifest: dict[str, Any]) -> Path:
    """Writes the model and its manifest into `folder`; returns the manifest's path."""
    folder.mkdir(parents=True, exist_ok=True)
    if manifest["family"] == "sklearn":
        files = _dump_sklearn(estimator, folder)
    else:
        files = estimator.save(folder)
    manifest = {
        **manifest,
        "format": "skops" if manifest["family"] == "sklearn" else "safetensors",
        "files": {p.name: _sha256(p) for p in files},
        "bytes": sum(p.stat().st_size for p in files),
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, default=str) + "\n", encoding="utf-8")
    return path


def load(folder: Path) -> Classifier:
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    for name, digest in manifest["files"].items():
        if _sha256(folder / name) != digest:
            raise ValueError(f"{folder / name} does not match its manifest's sha256")
    if manifest["format"] == "skops":
        estimator = _load_sklearn(folder)
    else:
        from chatworks.lab.neural import NeuralText

        estimator = NeuralText.load(folder)
    return Classifier(estimator, manifest)

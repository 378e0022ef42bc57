"""Registered lab models for serving: `name` (the alias CHATWORKS_CLASSIFY_ALIAS, champion by
default), `name@alias` or `name@3` (a version) resolved through the MLflow registry, loaded
once per version and kept.

An alias is looked up again after `REFRESH_S`, so `chatworks lab promote` reaches a running
server within that time without a registry query on every request. Everything here blocks
(SQLite, files, the model): the API calls it in a worker thread.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the lab's libraries (pandas, skops) load with the first model, not before
    import numpy as np

    from chatworks.lab.artifacts import Classifier

REFRESH_S = 10.0


class UnknownModel(LookupError):
    """No registered model (or version, or alias) by that name."""


@dataclass(frozen=True)
class Served:
    name: str
    version: str
    classifier: Classifier


class ClassifierStore:
    def __init__(self, store: Path, alias: str):
        self.store, self.alias = store, alias
        self._resolved: dict[tuple[str, str], tuple[float, str, Path]] = {}
        self._loaded: dict[tuple[str, str], Classifier] = {}
        self._lock = threading.Lock()

    def _resolve(self, name: str, alias: str) -> tuple[str, Path]:
        now = time.monotonic()
        hit = self._resolved.get((name, alias))
        if hit is not None and now - hit[0] < REFRESH_S:
            return hit[1], hit[2]
        if not (self.store / "mlflow.db").exists():
            raise UnknownModel(f"no lab models registered in {self.store}")
        try:
            from mlflow.exceptions import MlflowException

            from chatworks.lab import registry
        except ImportError:
            raise UnknownModel("serving lab models needs `pip install chatworks[lab]`") from None
        try:
            version = registry.resolve(self.store, name, alias)
        except MlflowException:
            raise UnknownModel(f"no registered model '{name}@{alias}'") from None
        self._resolved[(name, alias)] = (now, version.version, version.path)
        return version.version, version.path

    def get(self, model: str) -> Served:
        name, _, alias = model.partition("@")
        with self._lock:  # one load per version even when requests race for it
            version, path = self._resolve(name, alias or self.alias)
            classifier = self._loaded.get((name, version))
            if classifier is None:
                from chatworks.lab.artifacts import load

                classifier = self._loaded[(name, version)] = load(path)
        return Served(name, version, classifier)

    def predict(self, model: str, records: list[str | dict]) -> tuple[Served, np.ndarray]:
        """Probabilities per record, columns in the order of `served.classifier.labels`."""
        served = self.get(model)
        return served, served.classifier.predict_proba(records)

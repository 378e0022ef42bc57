"""The MLflow Model Registry as the lab uses it: one registered model per data set, a version
per `chatworks lab train`, and aliases that say which version serves.

A new version gets the alias `candidate`; it also gets `champion` (what `/v1/classify` loads
by default) when there is none yet or when its cross-validated macro-F1 is at least the
current champion's, so a worse retrain never replaces a better model by itself. `promote`
moves an alias by hand. The store is the same SQLite file and artifact folder as the other
MLflow runs (`./mlruns`, `training/tracking.py`).
Not covered: remote registries beyond passing their URI, stage transitions (deprecated by
MLflow in favour of aliases).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlparse

CHAMPION, CANDIDATE = "champion", "candidate"
F1_TAG = "cv_macro_f1"


def client(store: Path):
    store.mkdir(parents=True, exist_ok=True)
    return _client(str(store.resolve()))


@cache  # opening a store checks its schema (a second or more): once per process
def _client(store: str):
    import mlflow

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    uri = f"sqlite:///{store}/mlflow.db"
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


@dataclass
class Version:
    name: str
    version: str
    aliases: list[str]
    method: str
    macro_f1: float | None
    source: str
    created_ms: int

    @property
    def path(self) -> Path:
        return local_path(self.source)


def local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(uri)


def _version(v) -> Version:
    f1 = v.tags.get(F1_TAG)
    return Version(v.name, str(v.version), list(getattr(v, "aliases", []) or []),
                   v.tags.get("method", ""), float(f1) if f1 else None, v.source,
                   int(v.creation_timestamp or 0))  # fmt: skip


def register(store: Path, name: str, run_id: str, artifact_path: str, method: str,
             macro_f1: float) -> Version:  # fmt: skip
    """A new version of `name` from the run's artifact folder; aliases as described above."""
    c = client(store)
    from mlflow.exceptions import MlflowException

    try:
        c.get_registered_model(name)
    except MlflowException:
        c.create_registered_model(name, description="made by chatworks lab train")
    source = f"{c.get_run(run_id).info.artifact_uri}/{artifact_path}"
    made = c.create_model_version(name, source, run_id=run_id,
                                  tags={"method": method, F1_TAG: f"{macro_f1:.6f}"})  # fmt: skip
    c.set_registered_model_alias(name, CANDIDATE, made.version)
    try:
        champion = _version(c.get_model_version_by_alias(name, CHAMPION))
    except MlflowException:
        champion = None
    if champion is None or (champion.macro_f1 or 0.0) <= macro_f1:
        c.set_registered_model_alias(name, CHAMPION, made.version)
    return _version(c.get_model_version(name, made.version))


def promote(store: Path, name: str, version: str, alias: str = CHAMPION) -> None:
    client(store).set_registered_model_alias(name, alias, version)


def resolve(store: Path, name: str, alias: str = CHAMPION) -> Version:
    """`name` at `alias`, or at a version number (`name` with alias "3")."""
    c = client(store)
    if alias.isdigit():
        return _version(c.get_model_version(name, alias))
    return _version(c.get_model_version_by_alias(name, alias))


def versions(store: Path) -> list[Version]:
    """Every version of every registered model, newest first per model."""
    c = client(store)
    found = []
    for model in c.search_registered_models():
        for v in c.search_model_versions(f"name='{model.name}'"):
            found.append(_version(c.get_model_version(model.name, v.version)))
    return sorted(found, key=lambda v: (v.name, -int(v.version)))

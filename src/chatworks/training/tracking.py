"""Experiment tracking: MLflow with a local store by default, or nothing.

The store is a SQLite file and an artifact folder under `./mlruns` (MLflow 3 retired its plain
file store), so `mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db` browses the runs with
no server. Does not cover: choosing what to log (the training loops do), remote servers beyond
passing their URI.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any


class Tracker:
    """Tracking turned off: every call does nothing."""

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: str | Path) -> None: ...

    def close(self) -> None: ...


class MlflowTracker(Tracker):
    def __init__(self, store: Path, experiment: str, run_name: str):
        import mlflow

        # MLflow logs a line per schema migration when it creates the store: not news to users.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        store.mkdir(parents=True, exist_ok=True)
        self.client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store.resolve()}/mlflow.db")
        found = self.client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id
            if found
            else self.client.create_experiment(
                experiment, artifact_location=(store / "artifacts").resolve().as_uri()
            )
        )
        self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        for key, value in params.items():
            self.client.log_param(self.run_id, key, value)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.client.log_metric(self.run_id, key, value, step=step)

    def log_artifact(self, path: str | Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def start_tracking(
    enabled: bool, run_name: str, store: str | Path = "mlruns", experiment: str = "chatworks"
) -> Tracker:
    return MlflowTracker(Path(store), experiment, run_name) if enabled else Tracker()

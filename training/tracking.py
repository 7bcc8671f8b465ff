"""Each training run tracked with MLflow, where data scientists compare runs by their parameters.

`train` opens an MLflow run (parameters, the crop record, loss and accuracy per epoch), `evaluate`
adds the test metrics beside the majority baseline's and the confusion matrices and learning curves
as images, `export` adds the bundle as an artifact; the run's id is kept in <run>/config.json
(`mlflow`) and the bundle's model card names it (`run`), so a model on a box says where it came from.

The store: MLFLOW_TRACKING_URI (MLflow's own variable; the Kubernetes chain points it at the
tracking server), else a SQLite file beside the runs (<runs root>/mlflow.db: `mlflow ui
--backend-store-uri sqlite:///<runs root>/mlflow.db` shows them). Without mlflow installed, runs are
not tracked and one line says so; results.csv and TensorBoard are written either way.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

EXPERIMENT = "engagement"
STORE_FILE = "mlflow.db"


def tracking_uri(runs_root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(runs_root).resolve() / STORE_FILE}"


def available() -> bool:
    if importlib.util.find_spec("mlflow") is None:
        log.warning("mlflow is not installed: this run is not tracked (pip install -e '.[train]')")
        return False
    return True


def _client(uri: str) -> MlflowClient:
    import mlflow  # noqa: PLC0415 - heavy, and optional

    return mlflow.MlflowClient(tracking_uri=uri)


def _flat(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out |= _flat(f"{prefix}.{k}" if prefix else str(k), v)
        return out
    return {prefix: value}


def start_run(runs_root: Path, name: str, params: dict[str, Any]) -> dict[str, str] | None:
    """A new tracked run with its parameters: {"tracking_uri", "run_id"}, or None when untracked."""
    if not available():
        return None
    uri = tracking_uri(runs_root)
    client = _client(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    # A local store keeps its artifacts beside it, not in the working directory; a server decides its own.
    local = uri.startswith(("sqlite:", "file:"))
    artifacts = (Path(runs_root).resolve() / "mlartifacts").as_uri() if local else None
    experiment_id = (experiment.experiment_id if experiment
                     else client.create_experiment(EXPERIMENT, artifact_location=artifacts))
    run = client.create_run(experiment_id, run_name=name)
    from mlflow.entities import Param  # noqa: PLC0415

    flat = {k: str(v)[:6000] for k, v in _flat("", params).items()}
    items = [Param(k, v) for k, v in sorted(flat.items())]
    for i in range(0, len(items), 100):  # MLflow takes at most 100 parameters a call
        client.log_batch(run.info.run_id, params=items[i:i + 100])
    log.info("tracked as MLflow run %s in %s", run.info.run_id, uri)
    return {"tracking_uri": uri, "run_id": run.info.run_id}


def log_history(tracked: dict[str, str] | None, history: dict[str, list[float]]) -> None:
    """Loss and accuracy per epoch (the learning curves MLflow draws)."""
    if not tracked:
        return
    from mlflow.entities import Metric  # noqa: PLC0415

    now = int(time.time() * 1000)
    metrics = [Metric(key, float(v), now, step) for key, values in history.items() for step, v in enumerate(values)]
    client = _client(tracked["tracking_uri"])
    for i in range(0, len(metrics), 1000):
        client.log_batch(tracked["run_id"], metrics=metrics[i:i + 1000])


def log_metrics(tracked: dict[str, str] | None, metrics: dict[str, float], images: list[Path]) -> None:
    """Evaluation metrics and their pictures (confusion matrices, learning curves)."""
    if not tracked:
        return
    client = _client(tracked["tracking_uri"])
    for key, value in metrics.items():
        client.log_metric(tracked["run_id"], key, float(value))
    for image in images:
        if image.is_file():
            client.log_artifact(tracked["run_id"], str(image), artifact_path="plots")


def log_bundle(tracked: dict[str, str] | None, bundle: Path) -> None:
    if tracked:
        _client(tracked["tracking_uri"]).log_artifacts(tracked["run_id"], str(bundle), artifact_path="bundle")


def end_run(tracked: dict[str, str] | None, status: str = "FINISHED") -> None:
    if tracked:
        _client(tracked["tracking_uri"]).set_terminated(tracked["run_id"], status)

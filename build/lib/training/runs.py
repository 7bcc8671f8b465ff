"""Run directories and the one results table that compares every experiment."""

from __future__ import annotations

import csv
import fcntl
import json
import time
from pathlib import Path
from typing import Any

RESULTS = "results.csv"
RESULT_COLUMNS = [
    "run", "finished", "family", "base", "data_type", "fps", "image_size", "sequence_length", "weights", "freeze",
    "epochs", "epochs_run", "batch_size", "learning_rate", "decay", "dropout", "l2", "class_weights",
    "trained_on", "test_samples",
    "boredom_accuracy", "boredom_balanced_accuracy", "boredom_macro_f1", "boredom_baseline_accuracy",
    "beats_baseline",
    "engagement_accuracy", "confusion_accuracy", "frustration_accuracy",
]


def new_run_dir(runs_root: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = Path(runs_root) / f"{stamp}-{name}"
    n = 1
    while path.exists():
        n += 1
        path = Path(runs_root) / f"{stamp}-{name}-{n}"
    path.mkdir(parents=True)
    return path


def write_json(path: Path, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def append_result(runs_root: Path, row: dict[str, Any]) -> Path:
    """Append one row to <runs>/results.csv (locked: parallel jobs may finish at once)."""
    path = Path(runs_root) / RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", newline="") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        # A table started by an older version keeps its own columns, so its rows stay aligned.
        columns = next(csv.reader(fh), None) or RESULT_COLUMNS
        fh.seek(0, 2)
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        if fh.tell() == 0:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in columns})
    return path


def read_results(runs_root: Path) -> list[dict[str, str]]:
    path = Path(runs_root) / RESULTS
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))

"""The `evaluate` step: honest metrics per head against the constant guess, plots, one results row.

The majority-class baseline is the best constant guess: the most frequent level of the evaluated
split itself (not of the training set, which `augment` balances on purpose), so no constant
answer can score higher than it.
DAiSEE boredom is 43% level 0, so the reference's 0.36 accuracy was below that guess: the
report says so in plain words whenever a model does not beat its baseline.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import keras
import matplotlib
import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, recall_score

from training import tracking
from training.data import majority_levels
from training.runs import append_result, write_json
from training.train import load_config, pipelines_for

matplotlib.use("Agg")  # files only, no display on batch machines
import matplotlib.pyplot as plt  # noqa: E402

log = logging.getLogger(__name__)

LEVELS = [0, 1, 2, 3]


def head_metrics(y_true: np.ndarray, y_pred: np.ndarray, majority: int) -> dict:
    baseline = np.full_like(y_true, majority)
    acc = float(accuracy_score(y_true, y_pred))
    base_acc = float(accuracy_score(y_true, baseline))
    return {
        "accuracy": acc,
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=LEVELS, average="macro", zero_division=0)),
        "recall_per_level": [float(r) for r in recall_score(y_true, y_pred, labels=LEVELS, average=None,
                                                              zero_division=0)],
        "majority_level": majority,
        "baseline_accuracy": base_acc,
        "baseline_macro_f1": float(f1_score(y_true, baseline, labels=LEVELS, average="macro", zero_division=0)),
        "beats_baseline": acc > base_acc,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=LEVELS).tolist(),
        "samples": int(len(y_true)),
    }


def verdict(head: str, m: dict) -> str:
    if m["beats_baseline"]:
        return (f"{head}: accuracy {m['accuracy']:.3f} beats the majority baseline {m['baseline_accuracy']:.3f} "
                f"(always level {m['majority_level']})")
    return (f"{head}: accuracy {m['accuracy']:.3f} does NOT beat the majority baseline "
            f"{m['baseline_accuracy']:.3f} (always predicting level {m['majority_level']}): "
            f"this model is no better than a constant guess")


def plot_confusion(matrix: list[list[int]], head: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(4, 4))
    values = np.array(matrix)
    ax.imshow(values, cmap="Blues")
    for i in range(4):
        for j in range(4):
            dark = values[i, j] > values.max() / 2
            ax.text(j, i, str(matrix[i][j]), ha="center", va="center", color="white" if dark else "black")
    ax.set_xticks(LEVELS)
    ax.set_yticks(LEVELS)
    ax.set_xlabel("predicted level")
    ax.set_ylabel("true level")
    ax.set_title(f"{head} confusion (test)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_history(history_csv: Path, path: Path) -> None:
    if not history_csv.is_file():
        return
    with history_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, kind in zip(axes, ("loss", "accuracy"), strict=True):
        for key in rows[0]:
            if key != "epoch" and key.endswith(kind):
                ax.plot(epochs, [float(r[key]) for r in rows], label=key)
        ax.set_xlabel("epoch")
        ax.set_title(kind)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def evaluate(run: Path, split: str = "Test") -> dict:
    """Metrics of a run on a split; writes metrics.json and plots, appends the results row."""
    run = Path(run)
    cfg, raw = load_config(run)
    pipes = pipelines_for(cfg)
    model = keras.models.load_model(run / "model.keras", compile=False)
    _, y_true = pipes.samples(split)
    majority = majority_levels(y_true, pipes.heads)
    probs = model.predict(pipes.dataset(split, cfg.batch_size), verbose=0)
    probs = probs if isinstance(probs, list | tuple) else [probs]
    metrics: dict = {"split": split, "heads": {}}
    for i, head in enumerate(pipes.heads):
        m = head_metrics(y_true[:, i], np.argmax(probs[i], axis=1), majority[head])
        metrics["heads"][head] = m
        plot_confusion(m["confusion_matrix"], head, run / f"confusion_{head}.png")
        print(verdict(head, m))
    plot_history(run / "history.csv", run / "training_curves.png")
    write_json(run / "metrics.json", metrics)
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "baseline_accuracy", "baseline_macro_f1")
    tracking.log_metrics(raw.get("mlflow"), {f"{split.lower()}_{head}_{k}": m[k] for head, m in metrics["heads"].items()
                                             for k in keys},
                         [run / f"confusion_{head}.png" for head in pipes.heads] + [run / "training_curves.png"])
    append_result(Path(cfg.runs_root), results_row(cfg, raw, metrics))
    return metrics


def results_row(cfg, raw: dict, metrics: dict) -> dict:
    m = cfg.model
    row = {
        "run": raw.get("run", ""), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "family": m.family,
        "base": "" if m.family == "convlstm" else m.base, "data_type": cfg.data_type, "fps": cfg.fps,
        "image_size": m.image_size, "sequence_length": m.sequence_length if m.family in ("cnn_lstm", "convlstm") else 1,
        "weights": m.weights, "freeze": m.freeze, "epochs": cfg.epochs, "epochs_run": raw.get("epochs_run", ""),
        "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate, "decay": cfg.decay,
        "dropout": m.dropout, "l2": m.l2, "class_weights": cfg.class_weights,
        "trained_on": cfg.trained_on,
    }
    heads = metrics["heads"]
    primary = heads.get("boredom") or next(iter(heads.values()))
    row["test_samples"] = primary["samples"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "baseline_accuracy"):
        row[f"boredom_{key}"] = round(primary[key], 4)
    row["beats_baseline"] = primary["beats_baseline"]
    for head in ("engagement", "confusion", "frustration"):
        if head in heads:
            row[f"{head}_accuracy"] = round(heads[head]["accuracy"], 4)
    return row

"""The `train` step: one configuration in, one run directory out.

<run>/config.json      every option, the strategy, the data counts and the crop record of the faces
<run>/model.keras      the best weights (early stopping restores them)
<run>/checkpoint.keras best-so-far during training (val_loss)
<run>/history.csv      loss and accuracy per epoch; logs/ for TensorBoard; the MLflow run (training/tracking.py)
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from shared.ops.tf_gpu import enable_memory_growth
from training import tracking
from training.data import Pipelines, tree_manifest
from training.faces import read_crop
from training.manifest import fps_root
from training.models import BASES, ModelOptions, build_model, family_heads
from training.runs import new_run_dir, write_json

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    out_root: str  # the extraction root holding <N>FPS/
    runs_root: str = "runs"
    data_type: str = "faces"  # whole | faces | augmented
    detector: str = "auto"  # the faces tree; auto: the one `faces` cut with the edge's default detector
    fps: int = 1
    model: ModelOptions = field(default_factory=ModelOptions)
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-4
    decay: float = 1e-6
    patience: int = 10
    class_weights: bool = True
    online_augment: bool = True
    trained_on: str = "DAiSEE"
    name: str = ""
    precision: str = "float32"  # float32 | mixed_float16 (float16 compute on GPUs with tensor cores)

    def run_name(self) -> str:
        m = self.model
        base = "" if m.family == "convlstm" else f"-{m.base}"
        return self.name or f"{m.family}{base}-{self.data_type}-{self.fps}fps-{m.image_size}px"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        data = dict(data)
        model = data.pop("model", {})
        if "dense_units" in model:
            model["dense_units"] = tuple(model["dense_units"])
        return cls(model=ModelOptions(**model), **data)


PRECISIONS = ("float32", "mixed_float16")


def pick_strategy() -> tf.distribute.Strategy:
    """Several workers when TF_CONFIG describes a cluster, all local GPUs when there are any, else one device."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def worker_suffix() -> str:
    """"" on the chief; "-worker<i>" on the other workers of a TF_CONFIG cluster, whose copies are scratch."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return ""
    config = json.loads(raw)
    task = config.get("task", {})
    has_chief = "chief" in config.get("cluster", {})
    chief = task.get("type") == "chief" or (not has_chief and task.get("type") == "worker" and task.get("index") == 0)
    return "" if chief else f"-{task.get('type', 'worker')}{task.get('index', 0)}"


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def lr_schedule(cfg: TrainConfig) -> keras.optimizers.schedules.LearningRateSchedule:
    # Keras 3 dropped `decay=`; the legacy rule lr / (1 + decay * step) is exactly InverseTimeDecay.
    return keras.optimizers.schedules.InverseTimeDecay(cfg.learning_rate, decay_steps=1, decay_rate=cfg.decay)


def optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    return keras.optimizers.Adam(learning_rate=lr_schedule(cfg))


def pipelines_for(cfg: TrainConfig) -> Pipelines:
    m = cfg.model
    root = fps_root(cfg.out_root, cfg.fps)
    seq = m.sequence_length if m.family in ("cnn_lstm", "convlstm") else 1
    preprocessing = "unit" if m.family == "convlstm" else BASES[m.base].preprocessing
    channels = 3 if m.family == "convlstm" else BASES[m.base].channels
    return Pipelines(root, tree_manifest(root, cfg.data_type, cfg.detector), m.image_size, channels,
                     preprocessing, family_heads(m.family), seq)


def crop_of(cfg: TrainConfig) -> dict:
    """How the run's images were cut (faces/crop.json, shared/data/crop_record.py); {} for whole frames or
    crops cut before it was recorded. The export step puts it in the model card."""
    if cfg.data_type == "whole":
        return {}
    return read_crop(tree_manifest(fps_root(cfg.out_root, cfg.fps), cfg.data_type, cfg.detector).parent)


def train(cfg: TrainConfig) -> Path:
    """Train one configuration; returns its run directory."""
    keras.utils.set_random_seed(cfg.model.seed)
    gpus = enable_memory_growth()
    set_precision(cfg.precision, gpus)
    try:
        return _train(cfg)
    finally:
        keras.mixed_precision.set_global_policy("float32")  # a later step in this process starts clean


def set_precision(precision: str, gpus: list[str]) -> None:
    """Mixed precision: float16 compute, float32 weights and heads (softmax stays float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: use one of {PRECISIONS}")
    if precision == "mixed_float16" and not gpus:
        log.warning("mixed_float16 without a GPU: float16 is emulated on the CPU and slower than float32")
    keras.mixed_precision.set_global_policy(precision)


def _train(cfg: TrainConfig) -> Path:
    strategy = pick_strategy()
    with strategy.scope():
        model = build_model(cfg.model)  # resolves the image size of fixed-size bases first
        model.compile(optimizer=optimizer(cfg), loss="sparse_categorical_crossentropy",
                      loss_weights=None, metrics=["accuracy"] * len(model.outputs) if len(model.outputs) > 1
                      else ["accuracy"])
    pipes = pipelines_for(cfg)
    run = new_run_dir(Path(cfg.runs_root), cfg.run_name() + worker_suffix())
    weights = pipes.train_weights() if cfg.class_weights else None
    batch = cfg.batch_size * strategy.num_replicas_in_sync
    train_ds = pipes.dataset("Train", batch, training=True, seed=cfg.model.seed, weights=weights,
                             augment=cfg.online_augment)
    val_ds = pipes.dataset("Validation", batch)
    counts = {s: len(pipes.samples(s)[0]) for s in ("Train", "Validation", "Test")}
    config = cfg.to_dict() | {"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
                              "samples": counts, "class_weights": weights, "run": run.name,
                              "crop": crop_of(cfg)}
    tracked = tracking.start_run(Path(cfg.runs_root), run.name, {k: v for k, v in config.items()
                                                                 if k not in ("class_weights", "run")})
    if tracked:
        config["mlflow"] = tracked
    write_json(run / "config.json", config)
    log.info("train %s: %s samples, strategy %s", run.name, counts, type(strategy).__name__)
    callbacks = [
        keras.callbacks.ModelCheckpoint(run / "checkpoint.keras", monitor="val_loss", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(run / "history.csv")),
    ]
    if tensorboard_available():
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run / "logs")))
    else:
        log.warning("tensorboard is not installed: no TensorBoard logs (pip install tensorboard)")
    # shuffle=False: tf.data already shuffles every epoch; Keras would only warn it cannot.
    try:
        history = model.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, callbacks=callbacks, verbose=2,
                            shuffle=False)
    except BaseException:
        tracking.end_run(tracked, "FAILED")
        raise
    tracking.log_history(tracked, history.history)
    tracking.end_run(tracked)  # evaluate and export add to it later, by its id
    model.save(run / "model.keras")
    config["epochs_run"] = len(history.history.get("loss", []))
    write_json(run / "config.json", config)
    log.info("train %s: %d epochs, model in %s", run.name, config["epochs_run"], run / "model.keras")
    return run


def load_config(run: Path) -> tuple[TrainConfig, dict]:
    raw = json.loads((Path(run) / "config.json").read_text())
    known = {k: v for k, v in raw.items() if k in TrainConfig.__dataclass_fields__}
    return TrainConfig.from_dict(known), raw

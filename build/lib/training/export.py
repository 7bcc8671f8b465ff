"""The `export` step: the bundle the edge inference service loads (shared/model_card.py).

model.keras + model_card.json + model.tflite (for LiteRT on the Jetson; optional in the
contract, so a conversion failure is logged, not fatal).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from shared.model_card import ModelCard
from training.models import BASES, family_heads, family_kind
from training.runs import read_json
from training.train import load_config

log = logging.getLogger(__name__)


def card_for(run: Path) -> ModelCard:
    cfg, raw = load_config(run)
    m = cfg.model
    heads = family_heads(m.family)
    sequence = m.family in ("cnn_lstm", "convlstm")
    channels = 3 if m.family == "convlstm" else BASES[m.base].channels
    metrics_path = Path(run) / "metrics.json"
    summary = {}
    if metrics_path.is_file():
        for head, h in read_json(metrics_path)["heads"].items():
            summary[head] = {k: h[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "baseline_accuracy",
                                               "beats_baseline", "samples")}
    return ModelCard(
        name=raw.get("run", Path(run).name),
        kind=family_kind(m.family),
        input={"size": [m.image_size, m.image_size], "channels": channels,
               "color": "gray" if channels == 1 else "rgb",  # tf.io.decode_jpeg gives RGB in training
               "sequence_length": m.sequence_length if sequence else 1},
        preprocessing="unit" if m.family == "convlstm" else BASES[m.base].preprocessing,
        heads=heads,
        affect=True,  # trained on DAiSEE affect labels: refused under EU_AI_ACT_MODE
        primary_head="boredom",
        invert_heads=[h for h in heads if h == "engagement"],
        trained_on=cfg.trained_on,
        metrics=summary,
    )


def to_tflite(model: keras.Model, path: Path) -> bool:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    try:
        blob = converter.convert()
    except Exception as exc:  # noqa: BLE001 - recurrent layers may need TF ops; retry with them
        log.info("builtin-only TFLite conversion failed (%s); retrying with SELECT_TF_OPS", str(exc)[:200])
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        try:
            blob = converter.convert()
        except Exception as exc2:  # noqa: BLE001
            log.warning("no model.tflite: conversion failed: %s", str(exc2)[:300])
            return False
    path.write_bytes(blob)
    return True


def export(run: Path, bundle: Path, tflite: bool = True) -> Path:
    run, bundle = Path(run), Path(bundle)
    card = card_for(run)
    bundle.mkdir(parents=True, exist_ok=True)
    shutil.copy2(run / "model.keras", bundle / "model.keras")
    card.save(bundle)
    if tflite:
        to_tflite(keras.models.load_model(run / "model.keras", compile=False), bundle / "model.tflite")
    log.info("export: bundle %s (%s)", bundle, ", ".join(sorted(p.name for p in bundle.iterdir())))
    return bundle

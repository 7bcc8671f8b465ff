"""The `export` step: the bundle the edge inference service loads (shared/data/model_card.py).

model.keras + model_card.json + model.tflite (LiteRT) + model.onnx (ONNX Runtime: CPU, CUDA,
TensorRT on the Jetson). The two extra formats are optional in the contract, so a conversion
failure is logged and written into the card (`exports.<format>.error`), not fatal. Each one
that is written is run on real crops (the run's own Test samples, else LFW faces) and the
largest difference from Keras goes into the card, where `ENGINE=auto` reads it on a machine
without TensorFlow.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from shared.data.model_card import ModelCard
from training import tracking
from training.models import BASES, family_heads, family_kind
from training.onnx_export import OPSET, onnx_outputs, to_onnx
from training.runs import read_json
from training.train import load_config, pipelines_for

CHECK_SAMPLES = 16  # real crops (or sequences of them) each exported format is checked on

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
        crop=raw.get("crop") or {},  # how the training faces were cut: inference compares it with facedetect's
    )


def to_tflite(model: keras.Model, path: Path) -> str | None:
    """Write model.tflite; None when done, else why it could not be converted."""
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
            return _first_line(exc2)
    path.write_bytes(blob)
    return None


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def keras_order(model: keras.Model, heads: list[str]) -> list[int]:
    """Model output index of each head: by output name when they are the head names, else by position."""
    names = [str(n) for n in getattr(model, "output_names", [])]
    return [names.index(h) for h in heads] if sorted(names) == sorted(heads) else list(range(len(heads)))


def float32_model(model: keras.Model) -> keras.Model:
    """The model itself, or a float32 copy of one trained with mixed precision.

    The exporters want float32 graphs (Keras's ONNX export requires the float32 policy, and a
    float16 TFLite graph would differ from what the card promises); the weights of a mixed
    model are float32 already, only the compute policy of its layers changes.
    """
    if all(layer.dtype_policy.name == "float32" for layer in model._flatten_layers(include_self=True)):
        return model

    def to_float32(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("class_name") == "DTypePolicy" and isinstance(node.get("config"), dict):
                return {**node, "config": {**node["config"], "name": "float32"}}
            return {k: to_float32(v) for k, v in node.items()}
        return [to_float32(v) for v in node] if isinstance(node, list) else node

    copy = model.__class__.from_config(to_float32(model.get_config()))
    copy.set_weights(model.get_weights())
    log.info("export: %s was trained with mixed precision; exporting a float32 copy", model.name)
    return copy


def reference_batch(run: Path, card: ModelCard) -> tuple[np.ndarray, str]:
    """Real crops to compare the formats on, prepared as the model takes them.

    The run's own Test samples (decoded and preprocessed exactly as in training) when its data
    is reachable; else LFW faces from scikit-image (an export made away from the data).
    """
    cfg, _ = load_config(run)
    try:
        pipes = pipelines_for(cfg)
        x = next(iter(pipes.dataset("Test", CHECK_SAMPLES)))[0].numpy()
        return x.astype(np.float32), f"{len(x)} Test samples of the run ({cfg.data_type}, {cfg.fps} FPS)"
    except (FileNotFoundError, ValueError, OSError, tf.errors.OpError) as exc:
        log.info("export: the run's data is not reachable (%s); checking on LFW faces", _first_line(exc))
    return lfw_batch(card), f"{CHECK_SAMPLES} LFW faces (scikit-image)"


def lfw_batch(card: ModelCard) -> np.ndarray:
    import cv2  # noqa: PLC0415
    from skimage import data  # noqa: PLC0415

    h, w = card.size
    n = CHECK_SAMPLES * card.sequence_length
    faces = (data.lfw_subset()[:100][:n] * 255).astype(np.uint8)  # the first 100 are faces, gray
    faces = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in faces]).astype(np.float32)
    x = faces[..., None] if card.input.get("channels", 3) == 1 else np.repeat(faces[..., None], 3, axis=-1)
    if card.kind == "sequence":
        x = x.reshape(-1, card.sequence_length, h, w, x.shape[-1])
    return card.preprocess(x).astype(np.float32)


def keras_outputs(model: keras.Model, x: np.ndarray, heads: list[str]) -> dict[str, np.ndarray]:
    outs = model(x, training=False)
    outs = list(outs.values()) if isinstance(outs, dict) else outs
    outs = outs if isinstance(outs, list | tuple) else [outs]
    return {h: np.asarray(outs[i]) for h, i in zip(heads, keras_order(model, heads), strict=True)}


def tflite_outputs(path: Path, x: np.ndarray, reference: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """LiteRT's outputs, matched to the heads by closeness (the converter may reorder outputs)."""
    from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415

    interpreter = Interpreter(model_path=str(path))
    (inp,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], x)
    interpreter.invoke()
    outs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    return {h: min(outs, key=lambda o, r=r: np.inf if o.shape != r.shape else float(np.max(np.abs(o - r))))
            for h, r in reference.items()}


def max_difference(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(np.asarray(outputs[h]) - r))) for h, r in reference.items())


def _checked(file: str, outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray], source: str,
             **extra: Any) -> dict[str, Any]:
    diff = max_difference(outputs, reference)
    log.info("export: %s differs from Keras by at most %.2e on %s", file, diff, source)
    return {"file": file, "max_abs_diff": diff, "checked_on": source, **extra}


def write_formats(model: keras.Model, bundle: Path, card: ModelCard, x: np.ndarray, source: str,
                  tflite: bool = True, onnx: bool = True) -> None:
    """model.tflite and model.onnx beside model.keras, each run on `x` against Keras: card.exports."""
    reference = keras_outputs(model, x, card.heads)
    if tflite:
        error = to_tflite(model, bundle / "model.tflite")
        try:
            card.exports["tflite"] = ({"file": None, "error": error} if error else
                                      _checked("model.tflite", tflite_outputs(bundle / "model.tflite", x, reference),
                                               reference, source))
        except RuntimeError as exc:  # a SELECT_TF_OPS file: LiteRT has no TF-ops delegate
            why = str(exc).split(".")[0].strip()  # "Select TensorFlow op(s) ... not supported by this interpreter"
            card.exports["tflite"] = {"file": "model.tflite", "error": f"LiteRT cannot run it: {why}"}
            log.warning("export: model.tflite needs TensorFlow ops that LiteRT lacks: %s", _first_line(exc))
    if onnx:
        try:
            to_onnx(model, bundle / "model.onnx", card.heads, keras_order(model, card.heads))
            card.exports["onnx"] = _checked("model.onnx", onnx_outputs(bundle / "model.onnx", x), reference, source,
                                            opset=OPSET, converter=f"keras {keras.__version__} export (tf2onnx)")
        except Exception as exc:  # noqa: BLE001 - converters raise anything; the card says why
            (bundle / "model.onnx").unlink(missing_ok=True)
            card.exports["onnx"] = {"file": None, "error": _first_line(exc)}
            log.warning("export: no model.onnx: %s", _first_line(exc))


def export(run: Path, bundle: Path, tflite: bool = True, onnx: bool = True) -> Path:
    run, bundle = Path(run), Path(bundle)
    card = card_for(run)
    bundle.mkdir(parents=True, exist_ok=True)
    trained = keras.models.load_model(run / "model.keras", compile=False)
    model = float32_model(trained)
    if model is trained:
        shutil.copy2(run / "model.keras", bundle / "model.keras")
    else:  # every format of the bundle is the same float32 model
        model.save(bundle / "model.keras")
    x, source = reference_batch(run, card)
    write_formats(model, bundle, card, x, source, tflite, onnx)
    tracked = load_config(run)[1].get("mlflow")
    card.run = dict(tracked or {})  # the bundle names the run that made it
    card.save(bundle)
    tracking.log_bundle(tracked, bundle)
    log.info("export: bundle %s (%s)", bundle, ", ".join(sorted(p.name for p in bundle.iterdir())))
    return bundle

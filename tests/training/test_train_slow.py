"""Bigger variants of the chain (run with -m slow): pretrained-style bases, 2 FPS sequences of 20 frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.data.model_card import ModelCard
from training.cli import main
from training.export import export
from training.extract import extract
from training.faces import crop_faces
from training.manifest import fps_root

pytestmark = pytest.mark.slow

COMMON = ["--no-progress", "train", "--weights", "none", "--batch-size", "16", "--lr", "1e-3",
          "--trained-on", "synth", "--patience", "20"]


def _train(out: Path, runs: Path, *extra: str) -> tuple[Path, dict]:
    before = {p.name for p in runs.iterdir()}
    assert main([*COMMON, "--out", str(out), "--runs", str(runs), *extra]) == 0
    (run,) = [p for p in runs.iterdir() if p.name not in before and (p / "config.json").is_file()]
    return run, json.loads((run / "metrics.json").read_text())["heads"]


def test_fer_backbone_frozen_learns_and_exports_gray(faces_root: Path, runs_root: Path, tmp_path: Path) -> None:
    run, heads = _train(faces_root, runs_root, "--fps", "1", "--family", "cnn", "--base", "fer", "--weights", "fer",
                        "--freeze", "-1", "--epochs", "10")
    assert heads["boredom"]["beats_baseline"], heads["boredom"]
    card = ModelCard.load(export(run, tmp_path / "bundle"))
    assert card.input == {"size": [64, 64], "channels": 1, "color": "gray", "sequence_length": 1}
    assert card.preprocessing == "fer"
    assert card.exports["onnx"]["max_abs_diff"] < 1e-4  # the gray FER graph converts too


def test_mixed_precision_trains_and_exports_float32(faces_root: Path, runs_root: Path, tmp_path: Path) -> None:
    """--precision mixed_float16 (float16 is emulated on this CPU: slow, hence here)."""
    import keras

    run, heads = _train(faces_root, runs_root, "--fps", "1", "--family", "cnn", "--base", "small",
                        "--image-size", "48", "--epochs", "2", "--precision", "mixed_float16")
    assert json.loads((run / "config.json").read_text())["precision"] == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "float32"  # reset for whatever runs next
    trained = keras.models.load_model(run / "model.keras", compile=False)
    assert "mixed_float16" in {layer.dtype_policy.name for layer in trained._flatten_layers()}
    assert trained.outputs[0].dtype == "float32"  # the softmax head stays float32
    card = ModelCard.load(export(run, tmp_path / "bundle"))
    assert card.exports["onnx"]["max_abs_diff"] < 1e-4 and card.exports["tflite"]["max_abs_diff"] < 1e-4


def test_mobilenet_v2_on_augmented_faces(faces_root: Path, runs_root: Path) -> None:
    from training.augment import augment
    augment(fps_root(faces_root, 1), "dnn", progress=False)
    run, heads = _train(faces_root, runs_root, "--fps", "1", "--family", "cnn", "--base", "mobilenet_v2",
                        "--data-type", "augmented", "--image-size", "64", "--epochs", "10", "--freeze", "0")
    assert 0.0 <= heads["boredom"]["accuracy"] <= 1.0 and (run / "training_curves.png").is_file()


def test_multitask_xception(faces_root: Path, runs_root: Path) -> None:
    run, heads = _train(faces_root, runs_root, "--fps", "1", "--family", "multitask", "--base", "xception",
                        "--image-size", "71", "--epochs", "2")
    assert list(heads) == ["boredom", "engagement", "confusion", "frustration"]


def test_sequences_of_20_frames_at_2_fps(synth_root: Path, tmp_path: Path, runs_root: Path) -> None:
    out = tmp_path / "frames"
    extract(synth_root, out, fps=2, progress=False)
    crop_faces(fps_root(out, 2), "dnn", progress=False)
    for family, extra in (("convlstm", ["--image-size", "48", "--data-type", "whole"]),
                          ("cnn_lstm", ["--base", "small", "--image-size", "48", "--lstm-units", "64"])):
        run, heads = _train(out, runs_root, "--fps", "2", "--family", family, "--sequence-length", "20",
                            "--epochs", "4", *extra)
        assert heads["boredom"]["samples"] > 0
        card = ModelCard.load(export(run, tmp_path / f"bundle-{family}", tflite=False))
        assert card.kind == "sequence" and card.sequence_length == 20

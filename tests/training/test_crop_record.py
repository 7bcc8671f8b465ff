"""One crop, recorded: `faces` cuts as the edge does by default, the card says how, inference compares at start.

faces (edge defaults: BlazeFace, CROP_MARGIN, CROP_SIZE) -> train -> export on the synthetic set; then
the real inference service (its own process, real ZeroMQ) accepts the bundle with the default settings,
refuses it with one line under another detector, and runs it with --allow-crop-mismatch.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.inference.crop_check import judge
from shared.bus.messages import Message, encode, make_header
from shared.data.crop_record import crop_record, differences
from shared.data.model_card import CardError, ModelCard
from shared.ops.config import CROP_MARGIN, CROP_SIZE
from shared.vision.baseline_card import baseline_card
from tests.inference.harness import Harness
from training.cli import main
from training.export import export
from training.manifest import MANIFEST, fps_root, read_manifest

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
EDGE = crop_record("blazeface", float(CROP_MARGIN.default), int(CROP_SIZE.default))


def _frames_copy(frames_root: Path, to: Path) -> Path:
    """The session's extracted synth frames, hard-linked: this test's faces trees stay its own."""
    src = fps_root(frames_root, 1)
    dst = fps_root(to, 1)
    dst.mkdir(parents=True)
    shutil.copytree(src / "all", dst / "all", copy_function=os.link)
    shutil.copy2(src / MANIFEST, dst / MANIFEST)
    return to


@pytest.fixture(scope="module")
def edge_chain(frames_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(frames root, bundle) of faces -> train -> export with the edge's defaults."""
    out = _frames_copy(frames_root, tmp_path_factory.mktemp("edge-crop"))
    for name in ("DETECTOR", "CROP_MARGIN", "CROP_SIZE"):
        assert name not in os.environ, f"{name} is set: the test means the defaults"
    assert main(["--no-progress", "faces", "--out", str(out), "--fps", "1", "--workers", "1"]) == 0
    runs = tmp_path_factory.mktemp("edge-runs")
    assert main(["--no-progress", "train", "--out", str(out), "--runs", str(runs), "--fps", "1", "--family", "cnn",
                 "--base", "small", "--image-size", "48", "--epochs", "2", "--weights", "none", "--batch-size", "16",
                 "--trained-on", "synth", "--name", "edge-crop"]) == 0
    (run,) = [p for p in runs.iterdir() if p.is_dir() and p.name != "mlartifacts"]
    return out, export(run, tmp_path_factory.mktemp("edge-bundle") / "bundle", tflite=False, onnx=False)


@pytest.fixture(scope="module")
def edge_bundle(edge_chain: tuple[Path, Path]) -> Path:
    return edge_chain[1]


def test_faces_cuts_the_edge_crop_by_default_and_the_card_records_it(edge_bundle: Path) -> None:
    card = ModelCard.load(edge_bundle)
    assert card.crop == EDGE  # auto resolved to the detector that ran; the edge's margin and crop size
    assert card.input["color"] == "rgb"  # what the model takes; crop.color is the crops' own order (BGR)


def test_faces_tree_is_named_by_the_detector_that_ran(edge_chain: tuple[Path, Path]) -> None:
    root = fps_root(edge_chain[0], 1)
    trees = [p for p in (root / "faces").iterdir() if p.is_dir()]
    assert [t.name for t in trees] == ["blazeface"]
    rows = read_manifest(trees[0] / MANIFEST)
    assert len(rows) > 500  # BlazeFace finds the synthetic students (630 frames)
    assert cv2.imread(str(root / rows[0].path)).shape == (224, 224, 3)


def _batch(seq: int, crop: np.ndarray) -> list[bytes]:
    students = [{"student": 1, "box": [10, 20, 50, 60], "conf": 0.99}]
    header = make_header("batch", f"crop-{os.getpid()}-{time.time_ns()}", "cam0", seq, time.time(),
                         crop=crop.shape[0], length=1, students=students, faces=students, t_media=seq * 0.5)
    return encode(header, np.ascontiguousarray(crop).tobytes())


def _serves(h: Harness) -> Message:
    h.send(_batch(1, np.full((224, 224, 3), 128, np.uint8)))
    return h.receive(timeout=120)


def test_inference_runs_the_bundle_with_the_edge_defaults(edge_bundle: Path) -> None:
    h = Harness("--model", str(edge_bundle), "--engine", "keras")
    try:
        msg = _serves(h)
        assert msg.header.model.name.endswith("edge-crop") and msg.header.model.baseline is False
    finally:
        code, err = h.stop()
    assert code == 0, err[-2000:]
    assert "was trained on the crops facedetect cuts (blazeface, margin 0.25, 224 px)" in err


def test_inference_refuses_another_detector_in_one_line(edge_bundle: Path) -> None:
    h = Harness("--model", str(edge_bundle), "--detector", "dnn")
    try:
        assert h.proc.wait(timeout=120) == 3  # EXIT_GAVE_UP: a restart cannot mend it
    finally:
        code, err = h.stop()
    lines = [line for line in err.splitlines() if "cannot start" in line]
    assert code == 3 and "Traceback" not in err and len(lines) == 1, err[-2000:]
    assert "detector blazeface in the card, dnn at the edge" in lines[0] and "--allow-crop-mismatch" in lines[0]


def test_allow_crop_mismatch_runs_it_and_says_so(edge_bundle: Path) -> None:
    h = Harness("--model", str(edge_bundle), "--engine", "keras", "--crop-margin", "0.4", "--crop-size", "112",
                "--allow-crop-mismatch")
    try:
        assert _serves(h).header.model.name.endswith("edge-crop")
    finally:
        code, err = h.stop()
    assert code == 0, err[-2000:]
    (line,) = [line for line in err.splitlines() if "other crops" in line]
    assert "margin 0.25 in the card, 0.4 at the edge" in line and "size 224 in the card, 112 at the edge" in line
    assert "ALLOW_CROP_MISMATCH=1" in line


def test_a_card_without_a_crop_is_accepted_with_a_note() -> None:
    verdict = judge(baseline_card(), EDGE, allow_mismatch=False)
    assert not verdict.refuse and "records no crop" in verdict.line


def test_crop_differences_name_each_field() -> None:
    assert differences(EDGE, dict(EDGE, margin=0.25 + 1e-9)) == []
    assert differences(EDGE, dict(EDGE, color="rgb")) == ["color bgr in the card, rgb at the edge"]
    with pytest.raises(CardError, match="not auto"):
        ModelCard(name="x", kind="frame", input={"size": [48, 48]}, preprocessing="unit", heads=["boredom"],
                  crop=dict(EDGE, detector="auto"))
    with pytest.raises(CardError, match="lacks margin"):
        ModelCard(name="x", kind="frame", input={"size": [48, 48]}, preprocessing="unit", heads=["boredom"],
                  crop={"detector": "dnn"})


def test_the_run_is_tracked_in_mlflow_and_the_card_names_it(edge_bundle: Path) -> None:
    """The tracking store (SQLite beside the runs) read back: parameters, metrics beside the majority
    baseline's, the plots and the bundle as artifacts; the card names the run."""
    mlflow = pytest.importorskip("mlflow")
    card = ModelCard.load(edge_bundle)
    assert card.run["tracking_uri"].startswith("sqlite:///") and card.run["tracking_uri"].endswith("mlflow.db")
    client = mlflow.MlflowClient(tracking_uri=card.run["tracking_uri"])
    run = client.get_run(card.run["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name.endswith("edge-crop")
    params = run.data.params
    assert params["model.family"] == "cnn" and params["crop.detector"] == "blazeface" and params["epochs"] == "2"
    metrics = run.data.metrics
    for key in ("test_boredom_balanced_accuracy", "test_boredom_macro_f1", "test_boredom_baseline_accuracy"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["test_boredom_accuracy"] == pytest.approx(card.metrics["boredom"]["accuracy"])
    assert len(client.get_metric_history(run.info.run_id, "loss")) == 2  # a point per epoch: the curve
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/confusion_boredom.png", "plots/training_curves.png"}
    bundle = {a.path for a in client.list_artifacts(run.info.run_id, "bundle")}
    assert {"bundle/model.keras", "bundle/model_card.json"} <= bundle

"""The inference service as its own process, over real ZeroMQ sockets: batch in, predictions out."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import cv2
import msgpack
import numpy as np
import pytest

from services.inference.baseline import NAME
from shared.bus.messages import encode, make_header
from shared.data.model_card import CARD_FILE
from tests.inference.faces import astronaut_crop
from tests.inference.harness import Harness
from tests.inference.tiny_bundles import build
from tests.support.metrics import metric_sum

# Keras 3 on NumPy 2 warns from its own saving code; nothing of ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
CROP = 96


def _batch(seq: int, crops: list[np.ndarray], session: str = "test-session", length: int = 1):
    students = [{"student": i + 1, "box": [10 * i, 20, 50, 60], "conf": 0.99} for i in range(len(crops) // length)]
    header = make_header("batch", session, "cam0", seq, time.time(), crop=CROP, length=length, students=students,
                         faces=students, t_media=seq * 0.5)
    payload = b"".join(np.ascontiguousarray(c).tobytes() for c in crops)
    return encode(header, payload)


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return cv2.resize(astronaut_crop(), (CROP, CROP), interpolation=cv2.INTER_AREA)


def test_baseline_service_end_to_end(face):
    h = Harness("--model", "baseline", "--smoothing-window", "3")
    try:
        away = np.zeros_like(face)  # no face in this crop
        h.send([b"batch", b"\xc1 not msgpack", b""])  # garbage: counted and dropped
        lying = _batch(1, [face, face])
        lying[2] = lying[2][:-10]  # payload shorter than the header says
        h.send(lying)
        h.send(_batch(2, [away, away, face], length=3))  # a sequence: the baseline reads its newest crop
        newest = h.receive()
        assert newest.kind == "predictions" and newest.header.seq == 2
        assert [p["level"] for p in newest.header.predictions] == [0]

        h.send(_batch(3, [face, away]))
        msg = h.receive()
        assert msg.kind == "predictions" and msg.header.seq == 3 and msg.header.session == "test-session"
        model = msg.header.model
        assert model.baseline is True and model.name == NAME and model.affect is False
        assert len(msg.header.model.labels) == 4
        engaged, gone = msg.header.predictions
        assert [p["student"] for p in msg.header.predictions] == [1, 2]
        assert engaged["level"] == 0 and gone["level"] == 3
        for p in msg.header.predictions:
            assert abs(sum(p["probs"]) - 1) < 1e-6 and p["level"] == int(np.argmax(p["probs"]))
        assert engaged["signals"]["yaw"] is not None and gone["signals"]["reason"] == "no_face"
        assert msg.header.faces == [{"student": 1, "box": [0, 20, 50, 60], "conf": 0.99},
                                {"student": 2, "box": [10, 20, 50, 60], "conf": 0.99}]
        assert "inference" in msg.header.stamps and msg.header.t_media == 1.5

        h.send(_batch(4, []))  # a frame with no ready student still gets its message
        empty = h.receive()
        assert empty.header.seq == 4 and empty.header.predictions == []

        h.send(encode(make_header("eos", "test-session", "cam0", 5, time.time(), reason="end_of_file")))
        eos = h.receive()
        assert eos.kind == "eos" and eos.header.reason == "end_of_file" and "inference" in eos.header.stamps

        samples = h.metrics()
        assert metric_sum(samples, "engagement_messages_rejected_total", reason="bad_msgpack") == 1
        assert metric_sum(samples, "engagement_messages_rejected_total", reason="payload_size") == 1
        assert metric_sum(samples, "engagement_inference_faces_total") == 3
        assert metric_sum(samples, "engagement_predictions_total", level="0") == 2
        assert metric_sum(samples, "engagement_predictions_total", level="3") == 1
        assert metric_sum(samples, "engagement_inference_batch_size_count") == 2
    finally:
        code, err = h.stop()
    assert code == 0, err[-2000:]
    assert "rejected a message" in err


@pytest.fixture(scope="module")
def lite_bundles(tmp_path_factory) -> dict[str, Path]:
    """Bundles that ship model.tflite (so the service runs them with LiteRT, no TF start-up)."""
    root = tmp_path_factory.mktemp("lite")
    multitask = build("multitask", root / "multitask", tflite=True)
    mismatched = shutil.copytree(multitask, root / "mismatched")
    card = json.loads((mismatched / CARD_FILE).read_text())
    card["input"]["size"] = [48, 48]
    (mismatched / CARD_FILE).write_text(json.dumps(card))
    return {"multitask": multitask, "mismatched": mismatched}


def test_multitask_bundle_service_publishes_every_head(lite_bundles, face):
    h = Harness("--model", str(lite_bundles["multitask"]), "--engine", "tflite")
    try:
        h.send(_batch(1, [face, face[::-1], face[:, ::-1]]))
        msg = h.receive()
        assert msg.header.model.baseline is False and msg.header.model.engine == "tflite"
        assert len(msg.header.predictions) == 3
        for p in msg.header.predictions:
            assert sorted(p["heads"]) == ["boredom", "confusion", "engagement", "frustration"]
            assert p["probs"] == p["heads"]["boredom"] and p["level"] == int(np.argmax(p["probs"]))
    finally:
        code, err = h.stop()
    assert code == 0, err[-2000:]


@pytest.mark.parametrize("case", ["mismatched", "affect_under_eu_mode"])
def test_bad_model_is_reported_once_and_the_baseline_runs_instead(lite_bundles, face, case):
    bundle = lite_bundles["mismatched" if case == "mismatched" else "multitask"]
    env = {"EU_AI_ACT_MODE": "1"} if case == "affect_under_eu_mode" else {}
    h = Harness("--model", str(bundle), "--engine", "tflite", env=env)
    try:
        h.send(_batch(1, [face]))
        msg = h.receive()
        assert msg.header.model.baseline is True and msg.header.model.affect is False
        assert len(msg.header.predictions) == 1
        assert metric_sum(h.metrics(), "engagement_inference_model_errors_total") == 1
    finally:
        code, err = h.stop()
    assert code == 0 and "Traceback" not in err
    lines = [line for line in err.splitlines() if "cannot load MODEL" in line]
    assert len(lines) == 1
    expected = "does not match the card's (48, 48, 3)" if case == "mismatched" else "EU_AI_ACT_MODE is on: refusing"
    assert expected in lines[0] and "attention baseline instead" in lines[0], err[-1000:]


def test_msgpack_header_is_what_the_contract_says(face):
    """Belt and braces: the raw header parses with plain msgpack (no custom types on the bus)."""
    h = Harness("--model", "baseline")
    try:
        h.send(_batch(1, [face]))
        assert h.pull.poll(60000)
        topic, raw, payload = h.pull.recv_multipart()
        header = msgpack.unpackb(raw)
        assert topic == b"predictions" and payload == b"" and header["v"] == 1
        json.dumps(header["predictions"])  # plain values only: a report can store them as JSON
    finally:
        h.stop()


@pytest.fixture(scope="module")
def onnx_bundles(tmp_path_factory) -> dict[str, Path]:
    """Bundles with model.onnx, as `engagement-train export` writes them (ENGINE=onnx)."""
    root = tmp_path_factory.mktemp("onnx")
    return {kind: build(kind, root / kind, onnx=True) for kind in ("frame", "multitask")}


def test_service_runs_onnx_and_names_the_engine_everywhere(onnx_bundles, face):
    h = Harness("--model", str(onnx_bundles["multitask"]), "--engine", "onnx")
    try:
        h.send(_batch(1, [face, face[:, ::-1]]))
        msg = h.receive()
        assert msg.header.model.engine == "onnx" and msg.header.model.device == "cpu"
        assert msg.header.model.baseline is False and len(msg.header.predictions) == 2
        assert sorted(msg.header.predictions[0]["heads"]) == ["boredom", "confusion", "engagement", "frustration"]
        assert metric_sum(h.metrics(), "engagement_inference_engine_info", device="cpu", engine="onnx",
                          model="tiny-multitask") == 1
    finally:
        code, err = h.stop()
    assert code == 0, err[-2000:]
    assert "engine onnx on cpu" in err


def test_service_stops_with_one_line_when_no_engine_can_run_the_bundle(onnx_bundles, tmp_path):
    """Never the baseline in a trained model's place: the start fails, with exit 3 (not restarted)."""
    bundle = shutil.copytree(onnx_bundles["frame"], tmp_path / "frame")
    for name in ("model.keras", "model.onnx", "model.tflite"):
        (bundle / name).unlink(missing_ok=True)
    h = Harness("--model", str(bundle), "--engine", "auto")
    try:
        assert h.proc.wait(timeout=60) == 3
    finally:
        code, err = h.stop()
    assert code == 3 and "Traceback" not in err
    lines = [line for line in err.splitlines() if "cannot start" in line]
    assert len(lines) == 1, err[-2000:]
    assert "no engine on this machine can run 'tiny-frame'" in lines[0] and "onnx: no model.onnx" in lines[0]
    assert "baseline" not in err


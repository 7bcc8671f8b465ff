"""The face-mesh attention baseline on real faces (skimage's astronaut, and her head turned)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.inference.baseline import NAME, BaselinePredictor, baseline_card
from services.inference.baseline.iris import LID_TO_EAR
from services.inference.baseline.smoothing import Smoother
from shared.vision import baseline_rule as levels
from tests.inference.faces import MESH_SIZE, astronaut_crop, turned

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def baseline() -> BaselinePredictor:
    return BaselinePredictor()


@pytest.fixture(scope="module")
def frontal() -> np.ndarray:
    return cv2.resize(astronaut_crop(), (MESH_SIZE, MESH_SIZE), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def turned_faces(baseline, frontal) -> dict[str, np.ndarray]:
    points = baseline.mesh.run(frontal[None]).points[0]
    return {"yaw+25": turned(frontal, points, yaw_deg=25), "yaw+45": turned(frontal, points, yaw_deg=45),
            "yaw-45": turned(frontal, points, yaw_deg=-45), "down40": turned(frontal, points, pitch_deg=40)}


def test_astronaut_reads_attentive_with_sane_pose(baseline):
    signals = baseline.measure(astronaut_crop()[None])[0]
    probs, level, explained = baseline.assess(signals)
    assert signals["mesh_confidence"] > 0.9
    assert abs(signals["yaw"]) < 15 and abs(signals["pitch"]) < 20 and abs(signals["roll"]) < 15
    assert signals["eye_openness"] > 0.2
    assert level == 0 and probs[0] > 0.5
    assert abs(sum(probs) - 1) < 1e-6 and int(np.argmax(probs)) == level
    assert explained["reason"] in ("yaw", "pitch", "eyes")


def test_turned_heads_score_higher_in_order(baseline, frontal, turned_faces):
    crops = np.stack([frontal, *turned_faces.values()])
    measured = dict(zip(["frontal", *turned_faces], baseline.measure(crops), strict=True))
    score = {k: baseline.assess(s)[2]["score"] for k, s in measured.items()}
    p0 = {k: baseline.assess(s)[0][0] for k, s in measured.items()}
    assert score["frontal"] < score["yaw+25"] < score["yaw+45"]
    assert p0["frontal"] > p0["yaw+45"]
    assert baseline.assess(measured["yaw+45"])[1] >= 1
    # opposite turns read as opposite yaw; a head tilted down reads as pitch down
    assert measured["yaw+45"]["yaw"] < measured["frontal"]["yaw"] - 10 < measured["yaw-45"]["yaw"] - 20
    assert measured["down40"]["pitch"] > measured["frontal"]["pitch"] + 10
    assert score["down40"] > score["frontal"]


def test_no_face_in_the_crop_is_looking_away(baseline, frontal):
    forehead_only = cv2.resize(frontal[:70], (MESH_SIZE, MESH_SIZE))  # heavily cropped: hair and forehead
    from skimage import data

    gray = (data.lfw_subset()[150] * 255).astype(np.uint8)  # images 100.. of lfw_subset are non-faces
    not_a_face = cv2.resize(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), (MESH_SIZE, MESH_SIZE))
    for crop in (forehead_only, not_a_face):
        signals = baseline.measure(crop[None])[0]
        probs, level, explained = baseline.assess(signals)
        assert signals["mesh_confidence"] < levels.MIN_MESH_CONFIDENCE
        assert level == 3 and explained["reason"] == "no_face"


def test_predict_batches_and_matches_one_at_a_time(baseline, frontal, turned_faces):
    crops = np.stack([frontal, turned_faces["yaw+45"], frontal[::-1]])
    together = baseline.predict(crops)["attention"]
    alone = np.concatenate([baseline.predict(c[None])["attention"] for c in crops])
    assert together.shape == (3, 4)
    np.testing.assert_allclose(together, alone, atol=1e-6)
    np.testing.assert_allclose(together.sum(axis=1), 1, atol=1e-5)


def test_smoothing_holds_a_glance_away_and_follows_a_lasting_one():
    smoother = Smoother(seconds=1.5)  # 3 frames at 2 FPS
    engaged = {"mesh_confidence": 1.0, "yaw": 2.0, "pitch": 8.0, "roll": 0.0, "eye_openness": 0.3}
    away = {"mesh_confidence": 0.0, "yaw": None, "pitch": None, "roll": None, "eye_openness": None}
    key = ("s1", "cam0", 1)
    for i in range(3):
        smoother.update(key, engaged, i * 0.5)
    glance = smoother.update(key, away, 1.5)
    assert glance["frames"] == 3 and round(levels.assess(glance)[0]) < 3  # averaged with two attentive ones
    smoother.update(key, away, 2.0)
    lasting = smoother.update(key, away, 2.5)
    assert lasting["mesh_confidence"] == 0.0 and levels.assess(lasting)[1] == "no_face"
    assert smoother.drop(lambda k: k[0] == "s1") == 1 and len(smoother) == 0
    smoother.update(("s2", "cam0", 4), engaged, 0.0)
    assert smoother.evict_idle(3600) == 0 and smoother.evict_idle(0) == 1 and len(smoother) == 0


@pytest.mark.parametrize("signal,values", [("yaw", [10, 25, 40, 60]), ("pitch", [5, 25, 35, 50]),
                                           ("pitch", [-5, -25, -35, -50]),
                                           ("eye_openness", [0.3, 0.18, 0.14, 0.08])])
def test_each_threshold_moves_one_level(signal, values):
    for expected, value in enumerate(values):
        signals = {"mesh_confidence": 1.0, signal: value}
        score, _, probs = levels.assess(signals)
        assert int(np.argmax(probs)) == expected == min(3, round(score)), (signal, value, score)


def test_card_and_doc_carry_the_thresholds():
    card = baseline_card()
    assert card.baseline and not card.affect and card.kind == "frame" and card.name == NAME
    assert card.metrics["thresholds_for_levels_1_2_3"] == {k: list(v) for k, v in levels.THRESHOLDS.items()}
    doc = (REPO / "services/inference/BASELINE.md").read_text()
    numbers = set(re.findall(r"\d+(?:\.\d+)?", doc))
    for values in levels.THRESHOLDS.values():
        for v in values:
            assert any(float(n) == v for n in numbers), f"threshold {v} missing from BASELINE.md"


def test_baseline_path_never_imports_tensorflow():
    code = ("import sys, numpy as np\n"
            "from services.inference.service import load_model\n"
            "p = load_model('baseline', 'auto', True)\n"
            "p.predict(np.zeros((2, 1, 96, 96, 3), np.uint8))\n"
            "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
            "print('imported:', bad)\n"
            "sys.exit(1 if bad else 0)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_gaze_from_the_iris_model_reads_centred_eyes(baseline):
    with_gaze = BaselinePredictor(gaze=True)
    signals = with_gaze.measure(astronaut_crop()[None])[0]
    assert abs(signals["gaze_x"]) < 0.3 and abs(signals["gaze_y"]) < 0.5  # she looks into the camera
    assert "gaze_x" not in baseline.measure(astronaut_crop()[None])[0]  # off unless GAZE=1
    plain = baseline.measure(astronaut_crop()[None])[0]
    # The iris model reads the eyes' openness from its lids (on the EAR's scale: open eyes read
    # open by both); gaze changes nothing else.
    assert signals["eye_openness"] == pytest.approx(LID_TO_EAR * signals["lid_opening"], abs=1e-3)
    assert signals["eye_openness"] > levels.THRESHOLDS["eye_openness"][0] and plain["eye_openness"] > 0.2
    iris_only = ("gaze_x", "gaze_y", "lid_opening", "eye_openness")
    without = {k: v for k, v in signals.items() if k not in iris_only}
    assert without == {k: v for k, v in plain.items() if k != "eye_openness"}


def test_smoothing_window_is_seconds_at_any_fps():
    engaged = {"mesh_confidence": 1.0, "yaw": 2.0, "pitch": 8.0, "roll": 0.0, "eye_openness": 0.3}
    for fps, frames in ((1, 1), (2, 2), (10, 10)):
        smoother = Smoother(seconds=1.0)
        for i in range(30):
            out = smoother.update(("s", "c", 1), engaged, i / fps)
        assert out["frames"] == frames, fps
    assert Smoother(seconds=0).update(("s", "c", 1), engaged, 0.0)["frames"] == 1

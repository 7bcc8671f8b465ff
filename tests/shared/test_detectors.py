"""Every face detector on real faces: scikit-image's astronaut, lfw_subset, the 8-student sample.

The BlazeFace anchors and decoding are ours, so these tests check them where it shows: the
box lands on the real face, small faces in a class are found, non-faces mostly are not, and
the default detector finds at least what res10 finds on the same frames.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.detectors import _found, lfw_cases, sample_cases
from shared.ops import assets
from shared.ops.service import EXIT_GAVE_UP
from shared.vision.blazeface import FULL_RANGE, SHORT_RANGE, anchor_centres
from shared.vision.detectors import DetectorUnavailable, make_detector
from tests.support.faces import astronaut, iou

# res10's box on the astronaut (512x512 original).
ASTRONAUT_FACE = (179, 57, 92, 120)
OPENCV_MAJOR = int(cv2.__version__.split(".")[0])


def test_anchor_grids_match_the_models_outputs():
    short, full = anchor_centres(SHORT_RANGE), anchor_centres(FULL_RANGE)
    assert len(short) == 16 * 16 * 2 + 8 * 8 * 6 == 896
    assert len(full) == 48 * 48 == 2304
    # Row-major cells, anchors of a cell adjacent: the first two share the first cell's centre.
    assert np.allclose(short[0], [0.5 / 16, 0.5 / 16]) and np.allclose(short[1], short[0])
    assert np.allclose(short[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(short[512], [0.5 / 8, 0.5 / 8]) and np.allclose(short[512:518], short[512])
    assert np.allclose(full[-1], [47.5 / 48, 47.5 / 48])


@pytest.mark.parametrize("name", ["blazeface", "blazeface_short", "blazeface_full"])
def test_blazeface_boxes_the_astronauts_face(name):
    frame = astronaut()
    found = make_detector(name).detect(frame)
    assert len(found) == 1, found
    assert found[0].confidence > 0.6 and iou(found[0].box, ASTRONAUT_FACE) > 0.6, found
    # Letterboxing is undone: the same face in a wide frame (pasted off-centre) is found where it is.
    wide = np.full((512, 720, 3), 120, np.uint8)
    wide[:, 208:] = frame
    moved = make_detector(name).detect(wide)
    assert len(moved) == 1
    expected = (ASTRONAUT_FACE[0] + 208, *ASTRONAUT_FACE[1:])
    assert iou(moved[0].box, expected) > 0.5, moved


def test_no_face_on_a_plain_frame():
    blank = np.full((480, 640, 3), 128, np.uint8)
    assert make_detector("blazeface").detect(blank) == []


def test_default_finds_at_least_what_res10_finds_on_real_faces():
    faces, negatives = lfw_cases()
    sets = {"lfw": faces, "astronaut": sample_cases(1, 12), "class8": sample_cases(8, 4)}
    auto = make_detector("auto")
    res10 = make_detector("dnn") if OPENCV_MAJOR < 5 else None  # OpenCV 5 cannot load it
    assert auto.name == "blazeface"
    for name, cases in sets.items():
        mine = sum(_found([d.box for d in auto.detect(c.frame)], c.faces) for c in cases)
        total = sum(len(c.faces) for c in cases)
        if res10 is not None:
            theirs = sum(_found([d.box for d in res10.detect(c.frame)], c.faces) for c in cases)
            assert mine >= theirs, (name, mine, theirs, total)
        assert mine >= 0.95 * total, (name, mine, total)
    false_positives = sum(len(auto.detect(c.frame)) for c in negatives)
    assert false_positives <= 5  # of 100 non-faces


def test_short_range_alone_misses_a_class_of_small_faces():
    """Why the default runs both ranges: a measured fact, kept true by this test."""
    cases = sample_cases(8, 4)
    total = sum(len(c.faces) for c in cases)
    assert total >= 16  # at least two frames with the class in them
    short, both = make_detector("blazeface_short"), make_detector("blazeface")
    assert sum(_found([d.box for d in short.detect(c.frame)], c.faces) for c in cases) <= 0.25 * total
    assert sum(_found([d.box for d in both.detect(c.frame)], c.faces) for c in cases) >= 0.9 * total


def test_auto_falls_back_when_the_blazeface_weights_are_missing(tmp_path):
    if OPENCV_MAJOR >= 5:
        pytest.skip("res10 needs OpenCV 4.x")
    for name in ("deploy.prototxt", "res10_300x300_ssd_iter_140000.caffemodel"):
        shutil.copy(assets.require(name), tmp_path / name)
    assert make_detector("auto", models=tmp_path).name == "dnn"
    with pytest.raises(assets.MissingAsset, match="engagement fetch-models"):
        make_detector("blazeface", models=tmp_path)


def test_unknown_detector_names_the_choices():
    with pytest.raises(ValueError, match="blazeface"):
        make_detector("yolo")


def test_res10_and_haar_on_this_opencv():
    """On 4.x both load; on 5.x (no Caffe importer, no cascade in the main package) each says so."""
    for name in ("dnn", "haar"):
        if OPENCV_MAJOR >= 5:
            with pytest.raises(DetectorUnavailable, match="OpenCV 4"):
                make_detector(name)
        else:
            found = make_detector(name).detect(astronaut())
            assert found and iou(found[0].box, ASTRONAUT_FACE) > 0.5


def test_facedetect_without_the_weights_refuses_to_start_in_one_line(tmp_path):
    """A user's error (weights not fetched): one line naming the fix, the no-restart exit code."""
    env = dict(os.environ, MODELS_DIR=str(tmp_path), DETECTOR="blazeface", METRICS_PORT="0")
    out = subprocess.run([str(Path(sys.executable).with_name("engagement")), "facedetect"], env=env,
                         capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert out.returncode == EXIT_GAVE_UP, text
    assert "refusing to start" in text and "engagement fetch-models" in text and "Traceback" not in text

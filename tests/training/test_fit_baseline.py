"""`engagement-train fit-baseline`: the baseline's thresholds fitted to the teacher's marks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from shared.data.marks import Mark, validate_mark
from shared.vision import baseline_rule as levels
from shared.vision.baseline_card import load_baseline_card
from training.fit_baseline import _Signals, fit, fit_thresholds

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REPO = Path(__file__).resolve().parents[2]


def _mark(signals: dict, given: int, predicted: int | None = None, session: str = "s1") -> Mark:
    return Mark(session, "1", 1.0, given, predicted, signals, 1.0, "live")


def _random_signals(rng: np.random.Generator) -> dict:
    s = {"mesh_confidence": float(rng.choice([0.2, 0.9, 1.0]))}
    if rng.random() < 0.9:
        s.update(yaw=float(rng.normal(0, 35)), pitch=float(rng.normal(10, 25)),
                 eye_openness=float(rng.uniform(0.05, 0.4)))
    if rng.random() < 0.5:
        s.update(neutral_yaw=float(rng.normal(0, 20)), neutral_pitch=float(rng.normal(10, 15)))
    return s


def test_the_fast_scoring_gives_exactly_the_rules_levels():
    """The fit scores thresholds on arrays; it must agree with levels.assess everywhere."""
    rng = np.random.default_rng(1)
    marks = [_mark(_random_signals(rng), 0) for _ in range(500)]
    data = _Signals(marks)
    for _ in range(20):
        th = {k: tuple(sorted(rng.uniform(5, 60, 3))) for k in ("yaw", "pitch_down", "pitch_up", "looking_down")}
        th["eye_openness"] = tuple(sorted(rng.uniform(0.05, 0.35, 3), reverse=True))
        fast = data.levels_for({name: data.partial(name, th[name]) for name in th})
        assert fast.tolist() == [levels.level_of(m.signals, th) for m in marks]


def test_the_fast_scoring_reads_a_look_down_at_notes_by_its_own_thresholds():
    """A lowered head facing the screen's side with lowered lids is read by looking_down (and its lids no
    more than the look), a lowered head turned aside by pitch_down: the fast scoring agrees on both."""
    notes = {"mesh_confidence": 1.0, "yaw": 5.0, "pitch": 28.0, "eye_openness": 0.15}
    aside = {**notes, "yaw": 30.0}
    level = {"notes": levels.level_of(notes), "aside": levels.level_of(aside)}
    assert level == {"notes": 1, "aside": 2}
    assert levels.assess(notes)[1] == "looking_down"
    assert levels.level_of({**notes, "eye_openness": 0.10}) == 3  # eyes shut while the head is down: still 3
    marks = [_mark(notes, 1), _mark(aside, 2), _mark({**notes, "eye_openness": 0.10}, 3)]
    data = _Signals(marks)
    th = dict(levels.THRESHOLDS)
    assert data.levels_for({name: data.partial(name, th[name]) for name in th}).tolist() == [1, 2, 3]


def test_the_teachers_marks_fit_the_looking_down_thresholds():
    """A teacher who calls notes taken 10-25 deg below the screen attentive: looking_down's first threshold
    moves past them, pitch_down (a lowered head turned aside) stays."""
    rng = np.random.default_rng(3)
    truth = {**levels.THRESHOLDS, "looking_down": (35.0, 45.0, 58.0)}
    marks = []
    for _ in range(40):
        s = {"mesh_confidence": 1.0, "yaw": float(rng.uniform(-10, 10)), "pitch": float(rng.uniform(0, 55)),
             "eye_openness": 0.15}
        marks.append(_mark(s, levels.level_of(s, truth), levels.level_of(s)))
    result = fit(marks)
    assert result.before["rate"] < 0.9 and result.after["rate"] >= 0.95
    assert 30.0 <= result.thresholds["looking_down"][0] <= 37.0
    assert result.thresholds["pitch_down"] == levels.THRESHOLDS["pitch_down"]


def _class_with_wider_yaw(n: int = 60) -> list[Mark]:
    """A class whose teacher calls a head turned up to 30 deg attentive (the defaults say 20)."""
    rng = np.random.default_rng(2)
    truth = {**levels.THRESHOLDS, "yaw": (30.0, 42.0, 55.0)}
    marks = []
    for _ in range(n):
        s = {"mesh_confidence": 1.0, "yaw": float(rng.uniform(-60, 60)), "pitch": float(rng.uniform(0, 18)),
             "eye_openness": 0.3}
        marks.append(_mark(s, levels.level_of(s, truth), levels.level_of(s)))
    return marks


def test_fitting_recovers_a_class_s_thresholds_and_reports_before_and_after():
    marks = _class_with_wider_yaw()
    result = fit(marks)
    assert result.before["rate"] < 0.8 and result.after["rate"] == 1.0
    assert result.at_the_time["rate"] == result.before["rate"]  # the marks' model levels: the defaults'
    assert 27.0 <= result.thresholds["yaw"][0] <= 31.0
    # Thresholds no mark speaks about stay where they were.
    assert result.thresholds["pitch_up"] == levels.THRESHOLDS["pitch_up"]
    assert result.cross_validated is not None and result.cross_validated >= 0.85


def test_fitted_thresholds_stay_in_order():
    marks = _class_with_wider_yaw(30)
    th = fit_thresholds(marks)
    assert levels.check_thresholds({k: list(v) for k, v in th.items()}) == th


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_cli_writes_a_card_inference_can_load(marks, tmp_path):
    for m in _class_with_wider_yaw(40):
        marks.add(validate_mark({**m.to_dict(), "student": 1, "session": "math-1"}))
    out = tmp_path / "card.json"
    proc = _cli("fit-baseline", "--session", "math-1", "--out", str(out), "--redis-url", REDIS_URL,
                "--redis-prefix", marks.prefix)
    assert proc.returncode == 0, proc.stderr
    assert "agreement with the teacher: at the time" in proc.stdout and "after 100%" in proc.stdout
    assert "yaw: [20.0, 35.0, 50.0] -> [" in proc.stdout
    card, thresholds = load_baseline_card(out)
    assert card.baseline and not card.affect and "fitted to 40 teacher's marks" in card.trained_on
    fitted = json.loads(out.read_text())["metrics"]
    assert fitted["fit"]["agreement_after"] == 1.0 and fitted["fit"]["sessions"] == ["math-1"]
    assert thresholds["yaw"][0] > 25
    # A second fit may start from the first card.
    again = _cli("fit-baseline", "--out", str(tmp_path / "again.json"), "--start", str(out), "--redis-url", REDIS_URL,
                 "--redis-prefix", marks.prefix)
    assert again.returncode == 0 and "before 100%" in again.stdout, again.stdout + again.stderr


def test_too_few_marks_or_a_bad_start_card_is_one_line_and_exit_2(marks, tmp_path):
    marks.add(validate_mark({"session": "s", "student": 1, "t": 1e9, "level_given": 0,
                             "signals": {"yaw": 1.0, "mesh_confidence": 1.0}}))
    marks.add(validate_mark({"session": "s", "student": 1, "t": 1e9, "level_given": 0}))  # no signals: skipped
    common = ["--redis-url", REDIS_URL, "--redis-prefix", marks.prefix]
    proc = _cli("fit-baseline", "--out", str(tmp_path / "c.json"), *common)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "1 marks with the baseline's signals (1 without): at least 4" in proc.stderr
    assert not (tmp_path / "c.json").exists()
    (tmp_path / "bad.json").write_text('{"name": "x"}')
    proc = _cli("fit-baseline", "--out", str(tmp_path / "c.json"), "--start", str(tmp_path / "bad.json"), *common)
    assert proc.returncode == 2 and "not a baseline card" in proc.stderr and "Traceback" not in proc.stderr


def test_a_card_fitted_before_looking_down_still_loads_with_its_default():
    old = {k: list(v) for k, v in levels.THRESHOLDS.items() if k != "looking_down"}
    assert levels.check_thresholds(old)["looking_down"] == levels.THRESHOLDS["looking_down"]
    for bad in ({**old, "looking_down": [40.0, 30.0, 50.0]}, {**old, "sideways": [1.0, 2.0, 3.0]},
                {k: v for k, v in old.items() if k != "yaw"}):
        try:
            levels.check_thresholds(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")

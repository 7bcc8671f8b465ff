"""Attention signals -> a level 0..3 and four probabilities, by documented thresholds.

Each signal maps to a partial score by a piecewise-linear ramp whose knots are its three
thresholds: below the first it stays under 0.5 (level 0), the k-th threshold sits at k - 0.5,
so crossing it moves the level up by one; past the third it rises on to 3.5. The face's
score is the worst (largest) partial score: one reason to be inattentive is enough. Level
= round(score); probabilities are a softmax over the negative squared distances of the
score to the level centres 0, 1, 2, 3 (so they sum to 1 and argmax = level). The same
numbers are in the baseline's model card and in services/inference/BASELINE.md.

Thresholds can be replaced by a fitted set (`engagement-train fit-baseline`, loaded with
BASELINE_THRESHOLDS): every function takes them as an argument, THRESHOLDS by default.

With a student's neutral pose known (signals `neutral_yaw`, `neutral_pitch`: their usual
pose while facing the screen, baseline/neutral.py), yaw and pitch are measured from it:
yaw - neutral_yaw, and pitch - neutral_pitch + NOMINAL_PITCH, since the thresholds already
allow for the ~10 deg a webcam above the screen adds to a student reading it.

Looking down at notes or a keyboard is not looking away (the 2020 paper's future work): a head
lowered with the face still toward the screen's side (|yaw| under NOTES_MAX_YAW) and the eyes
lowered with it (eye openness under LIDS_DOWN: the lids follow a downward gaze) is read by the
`looking_down` thresholds instead of `pitch_down` (reason "looking_down": 10-30 deg below the
neutral pose reads 1, "partly attentive: notes"; further down reads 2-3), and its lowered lids read
no more than the look itself (eyes shut, past the third eye threshold, still read 3).
A head lowered and turned aside, or lowered with the eyes still level (a look at something away
from the desk), is read by `pitch_down` as before.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from shared.data.levels import LEVELS

# signal -> thresholds for levels 1, 2, 3 (degrees for angles, eye aspect ratio for eyes)
THRESHOLDS: dict[str, tuple[float, float, float]] = {
    "yaw": (20.0, 35.0, 50.0),  # |yaw|: head turned left or right
    "pitch_down": (20.0, 30.0, 45.0),  # looking down (a webcam above the screen sees ~10 deg)
    "pitch_up": (20.0, 30.0, 45.0),  # looking up
    # down at notes or a keyboard: face toward the screen's side, eyes lowered (looking_down_at)
    "looking_down": (20.0, 40.0, 55.0),
    "eye_openness": (0.20, 0.16, 0.12),  # eye aspect ratio, lower = more closed
}
Thresholds = dict[str, tuple[float, float, float]]
# The widest pose a camera beside, above or below the screen gives a student facing it: no
# neutral pose is learned beyond, and with a neutral pose a pose beyond reads at least
# "distracted" (OFF_SCREEN_SCORE): head-pose estimates compress large turns, so a look-away
# on the far side of an off-axis camera can measure only ~20 deg from the neutral pose.
MAX_YAW = 40.0
MAX_PITCH_DOWN = 35.0
MAX_PITCH_UP = 20.0
OFF_SCREEN_SCORE = 2.0  # the middle of level 2
NOMINAL_PITCH = 10.0  # the pitch the default thresholds take as facing the screen (webcam above it)
NOTES_MAX_YAW = 20.0  # |yaw| (from the neutral pose) under which a lowered face still faces the screen's side
LIDS_DOWN = 0.20  # eye openness under which the lids are lowered (open eyes read 0.23-0.32 on real footage)
SHUT_SCORE = 2.5  # the eyes' score past their third threshold
OPTIONAL = {"looking_down": THRESHOLDS["looking_down"]}  # a card fitted before it keeps the default
MIN_MESH_CONFIDENCE = 0.5  # below: no face in the crop (turned away, covered): level 3
TEMPERATURE = 0.5  # softness of the probabilities (squared level distances are divided by it)


def ramp(value: float, thresholds: tuple[float, float, float]) -> float:
    t1, t2, t3 = thresholds
    knots = [0.0, t1, t2, t3, t3 + (t3 - t2)]
    return float(np.interp(value, knots, [0.0, 0.5, 1.5, 2.5, 3.5]))


def relative_pose(signals: dict[str, Any]) -> tuple[float | None, float | None]:
    """(yaw, pitch) as the thresholds read them: from the student's neutral pose when known."""
    yaw, pitch = signals.get("yaw"), signals.get("pitch")
    neutral_yaw, neutral_pitch = signals.get("neutral_yaw"), signals.get("neutral_pitch")
    if yaw is not None and neutral_yaw is not None:
        yaw = yaw - neutral_yaw
    if pitch is not None and neutral_pitch is not None:
        pitch = pitch - neutral_pitch + NOMINAL_PITCH
    return yaw, pitch


def off_screen(signals: dict[str, Any]) -> bool:
    """With a neutral pose: the camera's own angles say no screen-facing pose explains this one."""
    if signals.get("neutral_yaw") is None:
        return False
    yaw, pitch = signals.get("yaw"), signals.get("pitch")
    return (yaw is not None and abs(yaw) > MAX_YAW) or \
        (pitch is not None and not -MAX_PITCH_UP <= pitch <= MAX_PITCH_DOWN)


def looking_down_at(yaw: float | None, pitch: float | None, eyes: float | None) -> bool:
    """Head lowered toward the desk, face toward the screen's side, eyes lowered with it (angles as
    the thresholds read them, relative_pose)."""
    return (yaw is not None and pitch is not None and eyes is not None
            and pitch > 0 and abs(yaw) < NOTES_MAX_YAW and eyes < LIDS_DOWN)


def partial_scores(signals: dict[str, Any], thresholds: Thresholds | None = None) -> dict[str, float]:
    """Per-signal scores; missing signals (no mesh) count as nothing but the confidence rule."""
    th = thresholds or THRESHOLDS
    scores: dict[str, float] = {}
    if signals.get("mesh_confidence", 0.0) < MIN_MESH_CONFIDENCE:
        scores["no_face"] = 3.0
    yaw, pitch = relative_pose(signals)
    if off_screen(signals):
        scores["off_screen"] = OFF_SCREEN_SCORE
    eyes = signals.get("eye_openness")
    if yaw is not None:
        scores["yaw"] = ramp(abs(yaw), th["yaw"])
    notes = looking_down_at(yaw, pitch, eyes)
    if pitch is not None and notes:
        scores["looking_down"] = ramp(pitch, th.get("looking_down", OPTIONAL["looking_down"]))
    elif pitch is not None:
        scores["pitch"] = max(ramp(max(pitch, 0.0), th["pitch_down"]),
                              ramp(max(-pitch, 0.0), th["pitch_up"]))
    if eyes is not None:
        t = th["eye_openness"]
        # decreasing signal: measure how far below "fully open" (first threshold + its gap) it is
        top = t[0] + (t[0] - t[1])
        scores["eyes"] = ramp(top - eyes, (top - t[0], top - t[1], top - t[2]))
        if notes and scores["looking_down"] >= 0.5 and scores["eyes"] < SHUT_SCORE:
            scores["eyes"] = min(scores["eyes"], scores["looking_down"])  # lids lowered by the look, not closing
    return scores


def probabilities(score: float) -> list[float]:
    logits = [-((score - level) ** 2) / TEMPERATURE for level in range(LEVELS)]
    peak = max(logits)
    weights = [math.exp(v - peak) for v in logits]
    total = sum(weights)
    return [w / total for w in weights]


def assess(signals: dict[str, Any], thresholds: Thresholds | None = None) -> tuple[float, str, list[float]]:
    """(score, the signal that decided it, probabilities) for one face's (smoothed) signals."""
    scores = partial_scores(signals, thresholds)
    reason, score = max(scores.items(), key=lambda kv: kv[1]) if scores else ("no_face", 3.0)
    return score, reason, probabilities(score)


def level_of(signals: dict[str, Any], thresholds: Thresholds | None = None) -> int:
    return int(np.argmax(assess(signals, thresholds)[2]))


def check_thresholds(raw: Any) -> Thresholds:
    """Thresholds from a card's JSON, or ValueError saying what is wrong with them."""
    if not isinstance(raw, dict) or not set(THRESHOLDS) - set(OPTIONAL) <= set(raw) <= set(THRESHOLDS):
        raise ValueError(f"thresholds must name exactly {sorted(THRESHOLDS)} ({', '.join(OPTIONAL)} may be left out)")
    raw = {**{k: list(v) for k, v in OPTIONAL.items()}, **raw}
    out: Thresholds = {}
    for name, values in raw.items():
        if not (isinstance(values, list | tuple) and len(values) == 3
                and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                        for v in values)):
            raise ValueError(f"thresholds.{name} must be three numbers")
        t1, t2, t3 = (float(v) for v in values)
        ordered = t1 > t2 > t3 > 0 if name == "eye_openness" else 0 < t1 < t2 < t3
        if not ordered:
            raise ValueError(f"thresholds.{name} {values} out of order (levels 1 < 2 < 3)")
        out[name] = (t1, t2, t3)
    return out


def thresholds_doc(thresholds: Thresholds | None = None) -> dict[str, Any]:
    return {"thresholds_for_levels_1_2_3": {k: list(v) for k, v in (thresholds or THRESHOLDS).items()},
            "min_mesh_confidence": MIN_MESH_CONFIDENCE, "temperature": TEMPERATURE,
            "looking_down_when": {"max_abs_yaw": NOTES_MAX_YAW, "eye_openness_under": LIDS_DOWN}}

"""Attention signals -> a level 0..3 and four probabilities, by documented thresholds.

Each signal maps to a partial score by a piecewise-linear ramp whose knots are its three
thresholds: below the first it stays under 0.5 (level 0), the k-th threshold sits at k - 0.5,
so crossing it moves the level up by one; past the third it rises on to 3.5. The face's
score is the worst (largest) partial score: one reason to be inattentive is enough. Level
= round(score); probabilities are a softmax over the negative squared distances of the
score to the level centres 0, 1, 2, 3 (so they sum to 1 and argmax = level). The same
numbers are in the baseline's model card and in services/inference/BASELINE.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from shared.levels import LEVELS

# signal -> thresholds for levels 1, 2, 3 (degrees for angles, eye aspect ratio for eyes)
THRESHOLDS: dict[str, tuple[float, float, float]] = {
    "yaw": (20.0, 35.0, 50.0),  # |yaw|: head turned left or right
    "pitch_down": (20.0, 30.0, 45.0),  # looking down (a webcam above the screen sees ~10 deg)
    "pitch_up": (20.0, 30.0, 45.0),  # looking up
    "eye_openness": (0.20, 0.16, 0.12),  # eye aspect ratio, lower = more closed
}
MIN_MESH_CONFIDENCE = 0.5  # below: no face in the crop (turned away, covered): level 3
TEMPERATURE = 0.5  # softness of the probabilities (squared level distances are divided by it)


def ramp(value: float, thresholds: tuple[float, float, float]) -> float:
    t1, t2, t3 = thresholds
    knots = [0.0, t1, t2, t3, t3 + (t3 - t2)]
    return float(np.interp(value, knots, [0.0, 0.5, 1.5, 2.5, 3.5]))


def partial_scores(signals: dict[str, Any]) -> dict[str, float]:
    """Per-signal scores; missing signals (no mesh) count as nothing but the confidence rule."""
    scores: dict[str, float] = {}
    if signals.get("mesh_confidence", 0.0) < MIN_MESH_CONFIDENCE:
        scores["no_face"] = 3.0
    yaw, pitch, eyes = signals.get("yaw"), signals.get("pitch"), signals.get("eye_openness")
    if yaw is not None:
        scores["yaw"] = ramp(abs(yaw), THRESHOLDS["yaw"])
    if pitch is not None:
        scores["pitch"] = max(ramp(max(pitch, 0.0), THRESHOLDS["pitch_down"]),
                              ramp(max(-pitch, 0.0), THRESHOLDS["pitch_up"]))
    if eyes is not None:
        t = THRESHOLDS["eye_openness"]
        # decreasing signal: measure how far below "fully open" (first threshold + its gap) it is
        top = t[0] + (t[0] - t[1])
        scores["eyes"] = ramp(top - eyes, (top - t[0], top - t[1], top - t[2]))
    return scores


def probabilities(score: float) -> list[float]:
    logits = [-((score - level) ** 2) / TEMPERATURE for level in range(LEVELS)]
    peak = max(logits)
    weights = [math.exp(v - peak) for v in logits]
    total = sum(weights)
    return [w / total for w in weights]


def assess(signals: dict[str, Any]) -> tuple[float, str, list[float]]:
    """(score, the signal that decided it, probabilities) for one face's (smoothed) signals."""
    scores = partial_scores(signals)
    reason, score = max(scores.items(), key=lambda kv: kv[1]) if scores else ("no_face", 3.0)
    return score, reason, probabilities(score)


def thresholds_doc() -> dict[str, Any]:
    return {"thresholds_for_levels_1_2_3": {k: list(v) for k, v in THRESHOLDS.items()},
            "min_mesh_confidence": MIN_MESH_CONFIDENCE, "temperature": TEMPERATURE}

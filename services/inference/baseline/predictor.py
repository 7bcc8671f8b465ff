"""The attention baseline as a predictor: face mesh -> signals -> (smoothed) level.

It needs no engagement data and no TensorFlow. `predict` is stateless (one frame, as the
Predictor interface of bundle.py); the service uses `measure` + a Smoother + `assess` so that
each student's signals are averaged over the last frames before the level is chosen.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from services.inference.baseline import levels
from services.inference.baseline.geometry import eye_openness, head_pose
from services.inference.baseline.iris import IrisGaze
from services.inference.preprocess import resize_crops
from shared.face_mesh import MESH_SIZE, FaceMesh
from shared.model_card import CardError, ModelCard

NAME = "attention-baseline (face mesh; not trained on engagement data)"
HEAD = "attention"
LABELS = ["attentive", "partly attentive", "distracted", "looking away"]


TRAINED_ON = "nothing: rule-based thresholds on MediaPipe face-mesh head pose and eye openness"


def baseline_card(thresholds: levels.Thresholds | None = None, trained_on: str = TRAINED_ON,
                  fit: dict[str, Any] | None = None) -> ModelCard:
    """The baseline's card; with fitted thresholds (fit-baseline) it says what they were fitted to."""
    return ModelCard(
        name=NAME, kind="frame", affect=False, baseline=True,
        input={"size": [MESH_SIZE, MESH_SIZE], "channels": 3, "color": "rgb", "sequence_length": 1},
        preprocessing="unit", heads=[HEAD], labels=list(LABELS), trained_on=trained_on,
        metrics={"note": "not evaluated on engagement labels; see services/inference/BASELINE.md",
                 **levels.thresholds_doc(thresholds), **({"fit": fit} if fit else {})},
    )


def load_baseline_card(path: str | Path) -> tuple[ModelCard, levels.Thresholds]:
    """A baseline card file (engagement-train fit-baseline) and its thresholds, or CardError."""
    try:
        data = json.loads(Path(path).read_text())
        card = ModelCard(**data)
    except FileNotFoundError:
        raise CardError(f"{path} not found") from None
    except (OSError, json.JSONDecodeError, TypeError) as exc:
        raise CardError(f"{path} is not a baseline card: {exc}") from None
    if not card.baseline or card.affect:
        raise CardError(f"{path} is not the attention baseline's card (baseline true, affect false)")
    try:
        thresholds = levels.check_thresholds(card.metrics.get("thresholds_for_levels_1_2_3"))
    except ValueError as exc:
        raise CardError(f"{path}: {exc}") from None
    return card, thresholds


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


class BaselinePredictor:
    engine = "litert-facemesh"

    def __init__(self, models: Path | None = None, gaze: bool = False, thresholds_card: str | Path = "") -> None:
        """`thresholds_card`: a fitted baseline card (BASELINE_THRESHOLDS); CardError if unusable."""
        self.card, self.thresholds = (load_baseline_card(thresholds_card) if thresholds_card
                                      else (baseline_card(), levels.THRESHOLDS))
        self.mesh = FaceMesh(models)
        self.iris = IrisGaze(models) if gaze else None

    def measure(self, crops: np.ndarray) -> list[dict[str, Any]]:
        """Raw per-face signals: yaw, pitch, roll (deg), eye_openness (EAR), mesh_confidence[, gaze_x, gaze_y]."""
        crops = resize_crops(np.asarray(crops), (MESH_SIZE, MESH_SIZE))
        result = self.mesh.run(crops)
        signals = []
        for crop, points, confidence in zip(crops, result.points, result.confidence, strict=True):
            s: dict[str, Any] = {"mesh_confidence": _round(confidence), "yaw": None, "pitch": None,
                                 "roll": None, "eye_openness": None}
            if self.iris is not None:
                s["gaze_x"] = s["gaze_y"] = None
            if confidence >= levels.MIN_MESH_CONFIDENCE:
                pose = head_pose(points, MESH_SIZE)
                if pose is not None:
                    s["yaw"], s["pitch"], s["roll"] = (_round(v) for v in pose)
                s["eye_openness"] = _round(eye_openness(points))
                if self.iris is not None:
                    s["gaze_x"], s["gaze_y"] = (_round(v) for v in self.iris.gaze(crop, points))
            signals.append(s)
        return signals

    def assess(self, signals: dict[str, Any]) -> tuple[list[float], int, dict[str, Any]]:
        """(probabilities, level, signals + score and deciding reason) for one face."""
        score, reason, probs = levels.assess(signals, self.thresholds)
        explained = {**signals, "score": round(score, 4), "reason": reason}
        return probs, int(np.argmax(probs)), explained

    def predict(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        crops = np.asarray(crops)
        if crops.ndim == 5:  # (n, 1, h, w, 3) from a batch of length 1
            crops = crops[:, -1]
        probs = [self.assess(s)[0] for s in self.measure(crops)]
        return {HEAD: np.asarray(probs, np.float32).reshape(len(crops), 4)}

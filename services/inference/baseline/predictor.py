"""The attention baseline as a predictor: face mesh -> signals -> (smoothed) level.

It needs no engagement data and no TensorFlow. `predict_students` (the interface of
services/inference/predictor.py) measures each face, averages each student's signals over the
last frames (a Smoother) and then chooses the level; `predict` is the stateless one-frame form.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from services.inference.baseline import levels
from services.inference.baseline.geometry import eye_openness, head_pose
from services.inference.baseline.iris import IrisGaze
from services.inference.baseline.smoothing import Smoother
from services.inference.predictor import StudentKey
from services.inference.preprocess import resize_crops
from shared.face_mesh import MESH_SIZE, FaceMesh
from shared.model_card import ModelCard

NAME = "attention-baseline (face mesh; not trained on engagement data)"
HEAD = "attention"
LABELS = ["attentive", "partly attentive", "distracted", "looking away"]


def baseline_card() -> ModelCard:
    return ModelCard(
        name=NAME, kind="frame", affect=False, baseline=True,
        input={"size": [MESH_SIZE, MESH_SIZE], "channels": 3, "color": "rgb", "sequence_length": 1},
        preprocessing="unit", heads=[HEAD], labels=list(LABELS),
        trained_on="nothing: rule-based thresholds on MediaPipe face-mesh head pose and eye openness",
        metrics={"note": "not evaluated on engagement labels; see services/inference/BASELINE.md",
                 **levels.thresholds_doc()},
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


class BaselinePredictor:
    engine = "litert-facemesh"

    def __init__(self, models: Path | None = None, gaze: bool = False, smoothing_seconds: float = 1.0) -> None:
        self.card = baseline_card()
        self.mesh = FaceMesh(models)
        self.iris = IrisGaze(models) if gaze else None
        self.smoother = Smoother(smoothing_seconds)

    def accepts(self, length: int) -> bool:
        return True  # reads the newest crop of a sequence of any length

    def predict_students(self, keys: list[StudentKey], crops: np.ndarray,
                         t: float | None = None) -> list[dict[str, Any]]:
        t = time.monotonic() if t is None else t  # no video time given: wall-clock seconds
        out = []
        for key, signals in zip(keys, self.measure(crops[:, -1]), strict=True):
            probs, level, explained = self.assess(self.smoother.update(key, signals, t))
            explained["now"] = signals  # this frame's own reading, next to the window's average
            out.append({"probs": probs, "level": level, "signals": explained})
        return out

    def end_stream(self, session: str, stream: str) -> int:
        return self.smoother.drop(lambda key: key[:2] == (session, stream))

    def evict_idle(self, seconds: float) -> int:
        return self.smoother.evict_idle(seconds)

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

    @staticmethod
    def assess(signals: dict[str, Any]) -> tuple[list[float], int, dict[str, Any]]:
        """(probabilities, level, signals + score and deciding reason) for one face."""
        score, reason, probs = levels.assess(signals)
        explained = {**signals, "score": round(score, 4), "reason": reason}
        return probs, int(np.argmax(probs)), explained

    def predict(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        crops = np.asarray(crops)
        if crops.ndim == 5:  # (n, 1, h, w, 3) from a batch of length 1
            crops = crops[:, -1]
        probs = [self.assess(s)[0] for s in self.measure(crops)]
        return {HEAD: np.asarray(probs, np.float32).reshape(len(crops), 4)}

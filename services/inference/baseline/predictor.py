"""The attention baseline as a predictor: face mesh -> signals -> (smoothed) level.

It needs no engagement data and no TensorFlow. `predict_students` (the interface of
services/inference/predictor.py) measures each face, averages each student's signals over the
last frames (a Smoother), measures head turns from each student's neutral pose (a
NeutralPose, once learned or set by the teacher's mark) and then chooses the level by the
thresholds (the documented ones, or a fitted card); `predict` is the stateless one-frame form.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.inference.baseline.geometry import eye_openness, head_pose
from services.inference.baseline.iris import LID_TO_EAR, IrisGaze
from services.inference.baseline.mesh_pool import MeshPool
from services.inference.baseline.neutral import NeutralPose
from services.inference.baseline.smoothing import Smoother
from services.inference.predictor import StudentKey
from shared.vision import baseline_rule as levels
from shared.vision.baseline_card import HEAD, baseline_card, load_baseline_card
from shared.vision.face_mesh import MESH_SIZE, FaceMesh


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


# One thread for the face mesh, whatever the service's LiteRT budget (2 on a 2-core box, for the
# trained models): a mesh call is about 1 ms a face, a second thread saves 0.2 ms of it and costs
# 0.4 ms more CPU (1.14-1.21 vs 1.58 ms a face, /tmp driver on this machine), CPU that the other
# stages need when the box is busy; the bare loop it is compared with used one thread all along.
# A frame of many faces uses the budget's other threads as interpreters of their own (mesh_pool.py).
MESH_THREADS = 1


class BaselinePredictor:
    engine = "litert-facemesh"

    def __init__(self, models: Path | None = None, gaze: bool = False, smoothing_seconds: float = 1.0,
                 thresholds_card: str | Path = "", neutral: NeutralPose | None = None,
                 mesh_workers: int | None = None) -> None:
        """`thresholds_card`: a fitted baseline card (BASELINE_THRESHOLDS), CardError if unusable;
        `neutral`: each student's neutral pose (None: levels from the camera's angles alone);
        `mesh_workers`: face-mesh interpreters a frame's faces are split over (None: the service's budget)."""
        self.card, self.thresholds = (load_baseline_card(thresholds_card) if thresholds_card
                                      else (baseline_card(), levels.THRESHOLDS))
        self.meshes = MeshPool.build(lambda: FaceMesh(models, num_threads=MESH_THREADS), mesh_workers)
        self.mesh = self.meshes.meshes[0]
        self.iris = IrisGaze(models) if gaze else None
        self.smoother = Smoother(smoothing_seconds)
        self.neutral = neutral
        # (session, stream, student) -> yaw, pitch; stream "" = a mark that names none: any stream
        self._anchors: dict[tuple[str, str, str], tuple[float, float]] = {}

    def accepts(self, length: int) -> bool:
        return True  # reads the newest crop of a sequence of any length

    def predict_students(self, keys: list[StudentKey], crops: np.ndarray,
                         t: float | Sequence[float] | None = None) -> list[dict[str, Any]]:
        t = time.monotonic() if t is None else t  # no video time given: wall-clock seconds
        times = list(t) if isinstance(t, Sequence) else [t] * len(keys)  # one per key: several streams' frames
        out = []
        for key, signals, at in zip(keys, self.measure(crops[:, -1]), times, strict=True):
            smoothed = self.smoother.update(key, signals, at)
            if self.neutral is not None:
                anchor = (self._anchors.get((key[0], key[1], str(key[2])))
                          or self._anchors.get((key[0], "", str(key[2]))))
                if anchor is not None and not self.neutral.known(key):
                    self.neutral.anchor(key, *anchor)  # marked before this process saw the student
                smoothed.update(self.neutral.update(key, at, signals.get("yaw"), signals.get("pitch")))
            probs, level, explained = self.assess(smoothed)
            explained["now"] = signals  # this frame's own reading, next to the window's average
            out.append({"probs": probs, "level": level, "signals": explained})
        return out

    def anchor(self, session: str, student: str, yaw: float, pitch: float, stream: str = "") -> int:
        """The teacher marked this student attentive in this pose: their neutral pose (students seen).

        Ids start at 1 in every stream: a mark naming its stream anchors that stream's student
        only; one without (a one-stream class) anchors that id wherever it is."""
        if self.neutral is None:
            return 0
        self._anchors[(session, stream, student)] = (yaw, pitch)
        keys = [k for k in self.neutral.keys() if isinstance(k, tuple)  # (session, stream, student)
                and k[0] == session and str(k[2]) == student and (not stream or k[1] == stream)]
        for key in keys:
            self.neutral.anchor(key, yaw, pitch)
        return len(keys)

    def end_stream(self, session: str, stream: str) -> int:
        if self.neutral is not None:
            self.neutral.drop(lambda key: key[:2] == (session, stream))
        return self.smoother.drop(lambda key: key[:2] == (session, stream))

    def end_session(self, session: str) -> None:
        self._anchors = {k: v for k, v in self._anchors.items() if k[0] != session}

    def evict_idle(self, seconds: float) -> int:
        if self.neutral is not None:
            self.neutral.evict_idle(seconds)
        return self.smoother.evict_idle(seconds)

    def measure(self, crops: np.ndarray) -> list[dict[str, Any]]:
        """Raw per-face signals: yaw, pitch, roll (deg), eye_openness (EAR), mesh_confidence[, gaze_x, gaze_y,
        lid_opening: with the iris model, eye_openness is read from its lids]."""
        crops, first, result = self.meshes.run(np.asarray(crops), levels.MIN_MESH_CONFIDENCE)
        signals = []
        for crop, points, confidence, framed_by_box in zip(crops, result.points, result.confidence, first.points,
                                                           strict=True):
            s: dict[str, Any] = {"mesh_confidence": _round(confidence), "yaw": None, "pitch": None,
                                 "roll": None, "eye_openness": None}
            if self.iris is not None:
                s["gaze_x"] = s["gaze_y"] = s["lid_opening"] = None
            if confidence >= levels.MIN_MESH_CONFIDENCE:
                pose = head_pose(points, MESH_SIZE)
                if pose is not None:
                    s["yaw"], s["pitch"], s["roll"] = (_round(v) for v in pose)
                # the lids read by both framings, averaged (reframe.py: two framings differ by up to 0.03)
                s["eye_openness"] = _round((eye_openness(points) + eye_openness(framed_by_box)) / 2)
                if self.iris is not None:
                    gaze_x, gaze_y, lids = self.iris.gaze(crop, points)
                    s["gaze_x"], s["gaze_y"], s["lid_opening"] = _round(gaze_x), _round(gaze_y), _round(lids)
                    # The iris model's 64x64 eye sees the lids better than the mesh's 192x192 face
                    # (eyes squeezed shut read 0.15-0.23 by the mesh): its reading, on the EAR's scale.
                    s["eye_openness"] = _round(LID_TO_EAR * lids)
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

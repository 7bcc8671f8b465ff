"""MediaPipe's face mesh (face_landmark.tflite: 192x192 RGB in [0, 1], 468 points + a face score).

Run with LiteRT one face at a time: batching the interpreter measured no faster per face
here (3.3 ms a face at batch 4 vs 3.0 ms at batch 1) and a fixed batch of 1 never
reallocates. Crops from facedetect (face box plus 25% margin each side) match the framing
the mesh was trained on (the detector's box scaled by 1.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shared.ops import assets, cpu_budget

MESH_SIZE = 192
MESH_POINTS = 468
_SCALE = np.float32(255.0)


@dataclass
class MeshResult:
    points: np.ndarray  # (n, 468, 3): x, y in crop pixels scaled to MESH_SIZE; z same scale, + away
    confidence: np.ndarray  # (n,) face presence probability in [0, 1]


class FaceMesh:
    def __init__(self, models: Path | None = None, num_threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415

        path = assets.require("face_landmark.tflite", models)
        threads = num_threads or cpu_budget.litert_threads(1)  # the service's budget, else 1
        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        outputs = {tuple(d["shape"][1:]): d["index"] for d in self.interpreter.get_output_details()}
        self._points = outputs[(1, 1, MESH_POINTS * 3)]
        self._score = outputs[(1, 1, 1)]
        # A face's input is written in place, not built anew: its RGB into a buffer kept for the
        # interpreter's life, the scaling straight into the input tensor (uint8 -> float32 / 255 in
        # float32, as a fresh array would be: the same landmarks to the bit). An instance is one thread's.
        self._rgb = np.empty((MESH_SIZE, MESH_SIZE, 3), np.uint8)
        self._input_view = self.interpreter.tensor(self._input)

    def run(self, crops: np.ndarray) -> MeshResult:
        """uint8 BGR crops (n, h, w, 3), any size -> landmarks and face scores."""
        n = len(crops)
        points = np.empty((n, MESH_POINTS, 3), np.float32)
        confidence = np.empty(n, np.float32)
        for i, crop in enumerate(crops):
            if crop.shape[:2] != (MESH_SIZE, MESH_SIZE):
                crop = cv2.resize(crop, (MESH_SIZE, MESH_SIZE), interpolation=cv2.INTER_AREA)
            cv2.cvtColor(crop, cv2.COLOR_BGR2RGB, dst=self._rgb)
            np.divide(self._rgb, _SCALE, out=self._input_view()[0])  # the view is not kept past this line
            self.interpreter.invoke()
            points[i] = self.interpreter.get_tensor(self._points).reshape(MESH_POINTS, 3)
            logit = float(self.interpreter.get_tensor(self._score).ravel()[0])
            confidence[i] = 1.0 / (1.0 + np.exp(-min(max(logit, -50.0), 50.0)))
        return MeshResult(points, confidence)

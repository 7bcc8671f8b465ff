"""The face mesh as inference runs it a frame after another: the same reading as FaceMesh.run,
without its per-face allocations and copies.

FaceMesh.run (shared/vision/face_mesh.py, facedetect's too) builds each face's input as a new
RGB image, a new float image and a new scaled one, then LiteRT copies that into its input tensor;
the face score goes through numpy scalar calls. Here the colour conversion goes into one buffer kept
for the interpreter's life and the scaling straight into the interpreter's input tensor (a view of
it, let go before invoke as LiteRT requires). The arithmetic is the same (uint8 -> float32, / 255 in
float32), so the landmarks and scores are the same to the bit (tests/inference/test_mesh_pool.py).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from shared.vision.face_mesh import MESH_POINTS, MESH_SIZE, FaceMesh, MeshResult

_SCALE = np.float32(255.0)


class LeanFaceMesh(FaceMesh):
    def __init__(self, models: Path | None = None, num_threads: int | None = None) -> None:
        super().__init__(models, num_threads)
        self._rgb = np.empty((MESH_SIZE, MESH_SIZE, 3), np.uint8)
        self._input_view = self.interpreter.tensor(self._input)

    def run(self, crops: np.ndarray) -> MeshResult:
        """uint8 BGR crops (n, h, w, 3), any size -> landmarks and face scores (as FaceMesh.run)."""
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


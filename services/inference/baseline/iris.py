"""Gaze from MediaPipe's iris model (iris_landmark.tflite: a 64x64 RGB eye crop in [0, 1]).

Each eye is cut from the mesh crop as a square around its two corners (side 2.3 x the
corner distance, as MediaPipe frames it); the eye on the image right is mirrored, since the
model takes eyes in one orientation. Gaze is where the iris centre sits in the eye outline:
gaze_x = (iris x - outline centre x) / half the outline width, + = towards the image right,
0 = centred, about +-0.5 at a strong sideways glance; gaze_y likewise (+ = down), scaled by
the same half width. Both eyes are averaged. Reported as signals; not used for levels until
calibrated on labelled data (see BASELINE.md).

The lid opening is the outline's height over its width. On real footage it parts open from
shut eyes better than the mesh's eye aspect ratio (a woman crying with her eyes squeezed shut:
0.11-0.24 here, 0.15-0.23 by the mesh's EAR; open eyes facing the camera: 0.30-0.42 here,
0.26-0.32 by the mesh), so with the iris model on, eye openness is LID_TO_EAR x the lid
opening: the factor that puts open eyes at the EAR's value (a man at his desk: mesh EAR 0.29,
lid opening 0.36), so the EAR thresholds keep their meaning.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from shared.ops import assets

EYE_SIZE = 64
EYE_SCALE = 2.3
EYE_CORNERS = ((33, 133, False), (263, 362, True))  # (outer, inner, mirrored) per eye, image left first
LID_TO_EAR = 0.8
OUTLINE = slice(0, 16)  # the first 16 of the 71 contour points outline the eye itself


class IrisGaze:
    def __init__(self, models: Path | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415

        self.interpreter = Interpreter(model_path=str(assets.require("iris_landmark.tflite", models)),
                                       num_threads=1)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        outputs = {d["name"]: d["index"] for d in self.interpreter.get_output_details()}
        self._iris = outputs["output_iris"]
        self._contour = outputs["output_eyes_contours_and_brows"]

    def _eye(self, crop_rgb: np.ndarray, outer: np.ndarray, inner: np.ndarray,
             mirrored: bool) -> tuple[float, float, float]:
        centre = (outer + inner) / 2
        side = max(float(np.linalg.norm(outer - inner)) * EYE_SCALE, 1.0)
        scale = EYE_SIZE / side
        to_eye = np.array([[scale, 0, EYE_SIZE / 2 - centre[0] * scale],
                           [0, scale, EYE_SIZE / 2 - centre[1] * scale]], np.float32)
        eye = cv2.warpAffine(crop_rgb, to_eye, (EYE_SIZE, EYE_SIZE), flags=cv2.INTER_LINEAR)
        if mirrored:
            eye = eye[:, ::-1]
        self.interpreter.set_tensor(self._input, np.ascontiguousarray(eye, np.float32)[None] / 255.0)
        self.interpreter.invoke()
        iris = self.interpreter.get_tensor(self._iris).reshape(5, 3)[0]
        outline = self.interpreter.get_tensor(self._contour).reshape(71, 3)[OUTLINE]
        half_width = max((outline[:, 0].max() - outline[:, 0].min()) / 2, 1e-3)
        gx = (iris[0] - (outline[:, 0].max() + outline[:, 0].min()) / 2) / half_width
        gy = (iris[1] - (outline[:, 1].max() + outline[:, 1].min()) / 2) / half_width
        opening = (outline[:, 1].max() - outline[:, 1].min()) / (2 * half_width)
        return (-gx if mirrored else gx), gy, float(opening)

    def gaze(self, crop_bgr: np.ndarray, points: np.ndarray) -> tuple[float, float, float]:
        """(gaze_x, gaze_y, lid opening) for one face: `crop_bgr` is the mesh's input crop, `points` its landmarks."""
        rgb = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2RGB)
        eyes = np.array([self._eye(rgb, points[o, :2], points[i, :2], m) for o, i, m in EYE_CORNERS])
        gaze_x, gaze_y, opening = eyes.mean(axis=0)
        return float(gaze_x), float(gaze_y), float(opening)

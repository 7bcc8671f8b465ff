"""The reference system's overlay, drawn with OpenCV on a preview frame.

Per student a box and a label "id 3: 1 slightly bored"; the running count of each level;
"Recording" while recording; "No Face Found" on a frame without faces; and, when the
model is the attention baseline, a note that it is not trained on engagement data.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from services.reporter.report import BASELINE_NOTE
from shared.messages import Frame

# BGR, from engaged (green) to checked out (red); faces without a prediction yet are grey.
LEVEL_COLOURS = [(60, 180, 60), (0, 200, 230), (0, 140, 255), (40, 40, 220)]
NO_PREDICTION = (170, 170, 170)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text(img: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int], scale: float = 0.5) -> None:
    # A dark outline keeps the text readable on any background.
    cv2.putText(img, text, org, FONT, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale, colour, 1, cv2.LINE_AA)


def no_face_origin(img: np.ndarray) -> tuple[int, int]:
    """Where "No Face Found" goes: centred, a little above the middle."""
    (w, _), _ = cv2.getTextSize("No Face Found", FONT, 1.0, 2)
    return max(0, (img.shape[1] - w) // 2), img.shape[0] // 2


def draw(frame: np.ndarray, faces: list[dict[str, Any]], predictions: list[dict[str, Any]],
         totals: dict[str, Any] | None, labels: list[str], recording: bool = False,
         baseline: bool = False) -> np.ndarray:
    """A copy of `frame` with the overlay; `faces` without a prediction get a grey box."""
    img = frame.copy()
    predicted = {p["student"]: p for p in predictions}
    for face in faces or predictions:
        x, y, w, h = (int(round(v)) for v in face["box"])
        p = predicted.get(face["student"])
        if p is None:
            colour, label = NO_PREDICTION, f"id {face['student']}"
        else:
            level = int(p["level"])
            colour, label = LEVEL_COLOURS[level], f"id {face['student']}: {level} {labels[level]}"
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, 2)
        _text(img, label, (x, max(14, y - 6)), colour)
    if not faces and not predictions:
        cv2.putText(img, "No Face Found", no_face_origin(img), FONT, 1.0, (0, 0, 255), 2, cv2.LINE_AA)
    levels = (totals or {}).get("levels", {})
    for i, name in enumerate(labels):
        _text(img, f"{name}: {levels.get(str(i), 0)}", (10, 20 + 20 * i), LEVEL_COLOURS[i])
    if recording:
        cv2.circle(img, (img.shape[1] - 110, 18), 6, (0, 0, 255), -1)
        _text(img, "Recording", (img.shape[1] - 98, 23), (0, 0, 255))
    if baseline:
        _text(img, BASELINE_NOTE, (10, img.shape[0] - 12), (255, 255, 255), 0.45)
    return img


def decode_frame(header: Frame, payload: bytes) -> np.ndarray | None:
    """The preview image of a `frame` message, or None if it does not decode."""
    if header.encoding == "jpeg":
        return cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    if len(payload) != header.width * header.height * 3:
        return None
    return np.frombuffer(payload, np.uint8).reshape(header.height, header.width, 3)

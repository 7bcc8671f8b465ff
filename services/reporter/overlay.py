"""The reference system's overlay, drawn with OpenCV on a preview frame.

Per student a box and a label "id 3: 1 slightly bored"; the running count of each level;
"Recording" while recording; "No Face Found" on a frame without faces; and, when the
model is the attention baseline, a note that it is not trained on engagement data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from services.reporter import text_stamp
from shared.bus.messages import Frame
from shared.data.model_card import BASELINE_NOTE
from shared.data.running_totals import Totals

# BGR, Okabe and Ito's colour-blind-safe palette as on the pages (blue, sky blue, orange,
# vermillion; services/web/static/style.css); the label says the level's number and word too.
# Faces without a prediction yet are grey.
LEVEL_COLOURS = [(178, 114, 0), (233, 180, 86), (0, 159, 230), (0, 94, 213)]
NO_PREDICTION = (170, 170, 170)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def size_factor(img: np.ndarray) -> float:
    """How much larger than on a 480-line frame the overlay is drawn: frames keep their own size
    (up to 1080 lines), and a fixed-size text shrank to a third of the live page's picture."""
    return max(1.0, float(img.shape[0]) / 480)


def _text(img: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int], scale: float = 0.5) -> None:
    # A dark outline keeps the text readable on any background.
    _text_at_k(img, text, org, colour, scale, size_factor(img))


def _constant_text(img: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int],
                   scale: float = 0.5) -> None:
    """`_text` for a text drawn alike on every frame (the note, "Recording"): stamped, the same pixels
    (services/reporter/text_stamp.py)."""
    k = size_factor(img)
    outline = round(3 * k)
    (width, height), below = cv2.getTextSize(text, FONT, scale * k, outline)
    extent = text_stamp.Extent(width, height, below, margin=outline + 2)
    text_stamp.draw(img, org, (text, FONT, scale * k, colour, outline, round(k)),
                    lambda canvas, at: _text_at_k(canvas, text, at, colour, scale, k), extent,
                    grey=colour[0] == colour[1] == colour[2])


def _count_line(img: np.ndarray, name: str, count: int, org: tuple[int, int], colour: tuple[int, int, int]) -> None:
    """`_text(img, f"{name}: {count}", ...)`, the same pixels: the name's part stamped, the count drawn
    (services/reporter/text_stamp.py)."""
    prefix = f"{name}: "
    _outlined(img, f"{prefix}{count}", org, colour, slice(None, len(prefix)))


def _face_label(img: np.ndarray, student: int, level: int, words: str, org: tuple[int, int],
                colour: tuple[int, int, int]) -> None:
    """`_text(img, f"id {student}: {level} {words}", ...)`, the same pixels: the level's words stamped."""
    head = f"id {student}: "
    _outlined(img, f"{head}{level} {words}", org, colour, slice(len(head), None))


def _outlined(img: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int], constant: slice) -> None:
    """`_text` with the `constant` part of `text` stamped."""
    k = size_factor(img)
    text_stamp.put_layers(img, text, org, FONT, 0.5 * k, [((0, 0, 0), round(3 * k)), (colour, round(k))], constant)


def _text_at_k(img: np.ndarray, text: str, org: tuple[int, int], colour: tuple[int, int, int], scale: float,
               k: float) -> None:
    """`_text` with the frame's size factor given (a stamp is drawn on a canvas of its own size)."""
    cv2.putText(img, text, org, FONT, scale * k, (0, 0, 0), round(3 * k), cv2.LINE_AA)
    cv2.putText(img, text, org, FONT, scale * k, colour, round(k), cv2.LINE_AA)


def no_face_origin(img: np.ndarray) -> tuple[int, int]:
    """Where "No Face Found" goes: centred, a little above the middle."""
    k = size_factor(img)
    (w, _), _ = cv2.getTextSize("No Face Found", FONT, k, round(2 * k))
    return max(0, (img.shape[1] - w) // 2), img.shape[0] // 2


def draw(frame: np.ndarray, faces: Sequence[Mapping[str, Any]], predictions: Sequence[Mapping[str, Any]],
         totals: Totals | None, labels: list[str], recording: bool = False,
         baseline: bool = False) -> np.ndarray:
    """A copy of `frame` with the overlay; `faces` without a prediction get a grey box."""
    img: np.ndarray = frame.copy()
    text_stamp.new_frame()
    k = size_factor(img)
    predicted = {p["student"]: p for p in predictions}
    for face in faces or predictions:
        x, y, w, h = (int(round(v)) for v in face["box"])
        p = predicted.get(face["student"])
        at = (x, max(round(14 * k), y - round(6 * k)))
        if p is None:
            cv2.rectangle(img, (x, y), (x + w, y + h), NO_PREDICTION, round(2 * k))
            _text(img, f"id {face['student']}", at, NO_PREDICTION)
        else:
            level = int(p["level"])
            cv2.rectangle(img, (x, y), (x + w, y + h), LEVEL_COLOURS[level], round(2 * k))
            _face_label(img, face["student"], level, labels[level], at, LEVEL_COLOURS[level])
    if not faces and not predictions:
        cv2.putText(img, "No Face Found", no_face_origin(img), FONT, k, (0, 0, 255), round(2 * k), cv2.LINE_AA)
    levels = totals.levels if totals is not None else {}
    for i, name in enumerate(labels):
        _count_line(img, name, levels.get(str(i), 0), (round(10 * k), round((20 + 20 * i) * k)), LEVEL_COLOURS[i])
    if recording:
        cv2.circle(img, (img.shape[1] - round(110 * k), round(18 * k)), round(6 * k), (0, 0, 255), -1)
        _constant_text(img, "Recording", (img.shape[1] - round(98 * k), round(23 * k)), (0, 0, 255))
    if baseline:
        _constant_text(img, BASELINE_NOTE, (round(10 * k), img.shape[0] - round(12 * k)), (255, 255, 255), 0.45)
    return img


def decode_frame(header: Frame, payload: bytes | memoryview) -> np.ndarray | None:
    """The preview image of a `frame` message, or None if it does not decode."""
    if header.encoding == "jpeg":
        return cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    if len(payload) != header.width * header.height * 3:
        return None
    return np.frombuffer(payload, np.uint8).reshape(header.height, header.width, 3)

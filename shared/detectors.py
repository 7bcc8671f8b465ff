"""Face detectors shared by the edge service and the training `faces` step.

`dnn` is the reference system's detector: OpenCV DNN with the res10 300x300 SSD Caffe
model (weights from `engagement fetch-models`). `haar` is OpenCV's frontal-face cascade,
which ships with opencv-python: slower here and it misses faces looking down.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shared import assets


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # x, y, w, h in pixels, clipped to the frame
    confidence: float


class DnnDetector:
    name = "dnn"

    def __init__(self, confidence: float = 0.5, models: Path | None = None) -> None:
        proto = assets.require("deploy.prototxt", models)
        weights = assets.require("res10_300x300_ssd_iter_140000.caffemodel", models)
        self.net = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
        self.confidence = confidence

    def detect(self, frame: np.ndarray) -> list[Detection]:
        h, w = frame.shape[:2]
        blob = cv2.dnn.blobFromImage(cv2.resize(frame, (300, 300)), 1.0, (300, 300),
                                     (104.0, 177.0, 123.0))
        self.net.setInput(blob)
        out = self.net.forward()  # (1, 1, N, 7): _, _, confidence, x1, y1, x2, y2 (relative)
        found = []
        for _, _, conf, x1, y1, x2, y2 in out[0, 0]:
            if conf < self.confidence:
                continue
            left, top = max(0, int(x1 * w)), max(0, int(y1 * h))
            right, bottom = min(w, int(x2 * w)), min(h, int(y2 * h))
            if right - left >= 8 and bottom - top >= 8:
                found.append(Detection((left, top, right - left, bottom - top), float(conf)))
        return _suppress_overlaps(found)


class HaarDetector:
    name = "haar"

    def __init__(self, confidence: float = 0.0, models: Path | None = None) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(f"could not load the Haar cascade {path}")

    def detect(self, frame: np.ndarray) -> list[Detection]:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        boxes = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
        # The cascade has no calibrated score; report 1.0 for every accepted box.
        return [Detection(tuple(int(v) for v in b), 1.0) for b in boxes]


def make_detector(name: str, confidence: float = 0.5, models: Path | None = None) -> DnnDetector | HaarDetector:
    if name == "dnn":
        return DnnDetector(confidence, models)
    if name == "haar":
        return HaarDetector(confidence, models)
    raise ValueError(f"unknown detector {name!r}: use dnn or haar")


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def _suppress_overlaps(found: list[Detection], threshold: float = 0.4) -> list[Detection]:
    kept: list[Detection] = []
    for det in sorted(found, key=lambda d: -d.confidence):
        if all(_iou(det.box, k.box) < threshold for k in kept):
            kept.append(det)
    return kept


def crop_face(frame: np.ndarray, box: tuple[int, int, int, int], size: int, margin: float = 0.25) -> np.ndarray:
    """Square crop around the box with a margin, padded at frame edges, resized to size x size."""
    x, y, w, h = box
    side = int(max(w, h) * (1 + 2 * margin))
    cx, cy = x + w // 2, y + h // 2
    left, top = cx - side // 2, cy - side // 2
    fh, fw = frame.shape[:2]
    pad = max(0, -left, -top, left + side - fw, top + side - fh)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        left, top = left + pad, top + pad
    crop = frame[top:top + side, left:left + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)

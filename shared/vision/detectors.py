"""Face detectors shared by the edge service, the training `faces` step and the benchmark.

- `blazeface_short` / `blazeface_full`: MediaPipe's BlazeFace (shared/vision/blazeface.py) with
  LiteRT; short-range for faces near the camera (fastest), full-range for small faces
  (a class gallery). Weights from `engagement fetch-models`.
- `dnn`: the reference system's detector, OpenCV DNN with the res10 300x300 SSD Caffe
  model. OpenCV 5 has no Caffe importer: there it is unavailable with a clear message.
- `haar`: OpenCV's frontal-face cascade (ships with opencv-python): slow, and it misses
  faces looking down.
- `auto`: the detector chosen by measured recall and speed (`AUTO_ORDER`, from
  `engagement bench`'s detector table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shared.ops import assets
from shared.ops.config import DETECTOR_NAMES
from shared.vision.blazeface import FULL_RANGE, SHORT_RANGE, BlazeFace, BlazeSpec, blend_overlaps, to_frame_boxes
from shared.vision.sliced import search_slices, tidy, wants_slices


@dataclass(frozen=True)
class Detection:
    box: tuple[int, int, int, int]  # x, y, w, h in pixels, clipped to the frame
    confidence: float


class DetectorUnavailable(RuntimeError):
    """A detector that cannot run with this installation (the message says why)."""

    user_error = True  # a service refuses to start with this one line (shared/ops/service.py)


class DnnDetector:
    name = "dnn"

    def __init__(self, confidence: float = 0.5, models: Path | None = None, num_threads: int = 0) -> None:
        if not hasattr(cv2.dnn, "readNetFromCaffe"):
            raise DetectorUnavailable(f"the dnn (res10 Caffe) detector needs OpenCV 4.x; OpenCV {cv2.__version__} "
                                      "has no Caffe importer: use DETECTOR=blazeface or auto")
        proto = assets.require("deploy.prototxt", models)
        weights = assets.require("res10_300x300_ssd_iter_140000.caffemodel", models)
        self.net = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
        self.confidence = confidence

    def detect(self, frame: np.ndarray) -> list[Detection]:
        h, w = frame.shape[:2]
        # Its 300 px on the short side, aspect kept (the SSD's priors follow the input's size): a
        # 1920x1080 call squashed to 300x300 had faces 44 % narrower, and the frame pass found 6 of
        # a 3x3 gallery's 8 faces where the kept shape finds 8 (for about 1.7 times the time).
        scale = 300 / min(h, w)
        size = (max(300, round(w * scale)), max(300, round(h * scale)))
        blob = cv2.dnn.blobFromImage(cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1
                                                else cv2.INTER_LINEAR), 1.0, size, (104.0, 177.0, 123.0))
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

    def __init__(self, confidence: float = 0.0, models: Path | None = None, num_threads: int = 0) -> None:
        if not hasattr(cv2, "CascadeClassifier"):
            raise DetectorUnavailable(f"the haar detector needs OpenCV 4.x; OpenCV {cv2.__version__} moved the "
                                      "cascade classifier out of its main package: use DETECTOR=blazeface or auto")
        # cv2.data (where the wheel keeps its cascades) is missing from OpenCV's own stubs.
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]  # cv2.data has no stubs
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(f"could not load the Haar cascade {path}")

    def detect(self, frame: np.ndarray) -> list[Detection]:
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        boxes = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30))
        # The cascade has no calibrated score; report 1.0 for every accepted box.
        return [Detection((int(b[0]), int(b[1]), int(b[2]), int(b[3])), 1.0) for b in boxes]


class BlazeFaceDetector:
    """BlazeFace short- or full-range; `confidence` is its minimum score."""

    def __init__(self, spec: BlazeSpec, name: str, confidence: float = 0.5, models: Path | None = None,
                 num_threads: int = 1) -> None:
        self.name = name
        self.model = BlazeFace(spec, models, num_threads=max(1, num_threads), min_score=confidence)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        return [Detection(box, score) for box, score in self.model.run(frame)]


class BlazeFaceBothDetector:
    """Short- and full-range BlazeFace on the same frame, their boxes blended into one set.

    Measured on the real faces (bench/detectors.py): short-range finds every large face but
    no small one and fires on some blurry non-faces; full-range finds small faces but is
    under-confident on large close-up ones. So short-range runs a little above
    `confidence` and full-range a little below (at 0.5: 0.6 and 0.35), and together they
    find at least what res10 finds, in about a third of its time."""

    name = "blazeface"
    SHORT_OFFSET, FULL_OFFSET = 0.1, -0.15

    def __init__(self, confidence: float = 0.5, models: Path | None = None, num_threads: int = 1) -> None:
        threads = max(1, num_threads)
        self.confidence = confidence
        self.short = BlazeFace(SHORT_RANGE, models, threads, min_score=min(0.99, confidence + self.SHORT_OFFSET))
        self.full = BlazeFace(FULL_RANGE, models, threads, min_score=max(0.01, confidence + self.FULL_OFFSET))

    def detect(self, frame: np.ndarray, full_min: float = 0.0) -> list[Detection]:
        """`full_min`: a stricter floor for full-range's scores (slices of a frame, see with_slices)."""
        b1, s1 = self.short.boxes(frame)
        b2, s2 = self.full.boxes(frame)
        if full_min:
            keep = s2 >= full_min
            b2, s2 = b2[keep], s2[keep]
        blended = blend_overlaps(np.concatenate([b1, b2]), np.concatenate([s1, s2]))
        return [Detection(box, score) for box, score in to_frame_boxes(blended, frame.shape)]

    def detect_short(self, frame: np.ndarray) -> list[Detection]:
        """Short-range alone, at its score in `detect` (a quarter of the cost of both): enough when
        every face is near (services/facedetect/ranges.py says when)."""
        return [Detection(box, score) for box, score in self.short.run(frame)]


class SlicedDetector:
    """A detector that also searches overlapping slices of the frame when its faces are small for
    the whole frame (shared/vision/sliced.py): no face found, or only small ones. `side` 0: never."""

    def __init__(self, inner: Detector, side: int, on_slice: Callable[[np.ndarray], list[Detection]]) -> None:
        self.inner, self.name, self.side, self.on_slice = inner, inner.name, side, on_slice
        self.added: int | None = None  # faces the last call's slices added to the frame's pass; None: not sliced

    def detect(self, frame: np.ndarray, slices: bool = True) -> list[Detection]:
        found = tidy(self.inner.detect(frame))
        self.added = None
        if not slices or not wants_slices(frame.shape, [d.box for d in found], self.side):
            return found
        merged = tidy(found + search_slices(frame, self.side, self.on_slice))
        self.added = len(merged) - len(found)
        return merged


# The slice side per detector: a few times its input, measured (bench/frame_size.py) so that faces
# from about 40 px up to what the frame's pass finds are found in a slice; haar searches every
# scale already (0: no slices).
SLICE_SIDE = {"blazeface": 640, "blazeface_full": 640, "blazeface_short": 384, "dnn": 600}


def with_slices(detector: Detector) -> SlicedDetector:
    """The detector, searching slices of a large frame when its faces are small (shared/vision/sliced.py)."""
    # Both BlazeFace models search each slice, full-range at the confidence asked for, not below
    # it as on the whole frame: below it, the 15 slices of a 16:9 webcam frame gave a hair line or a
    # collar as a face now and then (scores 0.37-0.45 on the carphone clip), a student who is nobody.
    if isinstance(detector, BlazeFaceBothDetector):
        both = detector
        return SlicedDetector(both, SLICE_SIDE[both.name], lambda frame: both.detect(frame, both.confidence))
    return SlicedDetector(detector, SLICE_SIDE.get(detector.name, 0), detector.detect)


Detector = DnnDetector | HaarDetector | BlazeFaceDetector | BlazeFaceBothDetector
NAMES = DETECTOR_NAMES  # the DETECTOR setting's choices
# `auto` takes the first of these that loads: the order of recall, then speed, measured by
# `python -m bench.detectors` (and `engagement bench`'s detector table, bench/RESULTS.md) on
# lfw_subset, the astronaut sample and the 8-face sample. `blazeface` (both ranges) has recall
# no lower than res10 on every set at about a third of its time; short-range alone is the
# fastest (about 2 ms a 640x480 frame) but misses the small faces of a class of 8.
AUTO_ORDER = ("blazeface", "dnn", "haar")


def make_detector(name: str, confidence: float = 0.5, models: Path | None = None, num_threads: int = 1) -> Detector:
    """The detector called `name` (one of NAMES); DetectorUnavailable when it cannot run here."""
    if name == "auto":
        reasons = []
        for candidate in AUTO_ORDER:
            try:
                return make_detector(candidate, confidence, models, num_threads)
            except (DetectorUnavailable, assets.MissingAsset) as exc:
                reasons.append(str(exc))
        raise DetectorUnavailable("no detector can run: " + "; ".join(reasons))
    if name == "blazeface":
        return BlazeFaceBothDetector(confidence, models, num_threads)
    if name == "blazeface_short":
        return BlazeFaceDetector(SHORT_RANGE, name, confidence, models, num_threads)
    if name == "blazeface_full":
        return BlazeFaceDetector(FULL_RANGE, name, confidence, models, num_threads)
    if name == "dnn":
        return DnnDetector(confidence, models, num_threads)
    if name == "haar":
        return HaarDetector(confidence, models, num_threads)
    raise ValueError(f"unknown detector {name!r}: use one of {', '.join(NAMES)}")


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
    """Square crop around the box with a margin, padded with black beyond the frame's edges,
    resized to size x size."""
    x, y, w, h = box
    side = int(max(w, h) * (1 + 2 * margin))
    cx, cy = x + w // 2, y + h // 2
    left, top = cx - side // 2, cy - side // 2
    fh, fw = frame.shape[:2]
    if max(0, -left, -top, left + side - fw, top + side - fh):
        # Only the crop is padded, not the whole frame: a 1920x1080 call's faces at its edges
        # copied the frame once each (5 ms of a 5x5 call's 25 ms of crops). Black where the
        # square leaves the frame, the frame's pixels where it overlaps it (none: all black).
        crop = np.zeros((max(0, side), max(0, side), *frame.shape[2:]), frame.dtype)
        x0, y0, x1, y1 = max(0, left), max(0, top), min(fw, left + side), min(fh, top + side)
        if x1 > x0 and y1 > y0:
            crop[y0 - top:y1 - top, x0 - left:x1 - left] = frame[y0:y1, x0:x1]
    else:
        crop = frame[top:top + side, left:left + side]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)

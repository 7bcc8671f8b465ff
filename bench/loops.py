"""The reference system's single-process loop, and the best single-process version of it.

    python -m bench.loops --video V --bundle B --mode reference|best|baseline [--engine E] --json out.json

reference  as the reference inference script ran: read a frame, res10 face detection, crop
           each face, `classifier.predict` once per face, draw the overlay.
best       the best single-process version: the model called directly (the engine the
           pipeline uses) on all faces of the frame in one batch, and the pipeline's own
           detection (DETECTOR=auto, run every DETECT_EVERY frames, faces followed between,
           short-range BlazeFace alone while the faces are near: services/facedetect/ranges.py).
baseline   the attention baseline in one process: decode + the same detection + the same
           per-face work as the pipeline's inference (two face-mesh passes, the rule, smoothing).

Runs in its own process (the benchmark measures its CPU and memory from outside) until the
video ends or --seconds have passed after the warm-up frames.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from bench.stats import percentiles_ms
from services.facedetect.follow import Follower
from services.facedetect.ranges import Ranges
from services.inference.baseline import BaselinePredictor
from services.inference.bundle import load_predictor
from shared.data.levels import LEVEL_LABELS
from shared.ops.command_parser import CommandParser
from shared.ops.config import SERVICES
from shared.vision.detectors import DnnDetector, crop_face, make_detector, with_slices

CROP = 224  # the pipeline's CROP_SIZE default; the predictor resizes to the card's size
WARMUP_FRAMES = 2
KEY = ("bench", "loop")
_FACEDETECT = {s.env: s.default for s in SERVICES["facedetect"]}
DEFAULT_DETECTOR, DEFAULT_DETECT_EVERY = _FACEDETECT["DETECTOR"], int(_FACEDETECT["DETECT_EVERY"])


def _overlay(frame: np.ndarray, boxes: list[tuple[int, int, int, int]], levels: list[int]) -> None:
    for (x, y, w, h), level in zip(boxes, levels, strict=True):
        cv2.rectangle(frame, (x, y), (x + w, y + h), (0, 255, 0), 2)
        cv2.putText(frame, LEVEL_LABELS[level], (x, max(12, y - 6)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)


class _Detection:
    """The pipeline's detection in one process: the default detector, every N frames, followed between."""

    def __init__(self, mode: str) -> None:
        self.reference = mode == "reference"
        self.detector = DnnDetector() if self.reference else make_detector(DEFAULT_DETECTOR)
        self.follower = Follower(1 if self.reference else DEFAULT_DETECT_EVERY)
        # As facedetect: short-range BlazeFace alone while the faces are near (no slices: 640x480).
        self.ranges = None if self.reference else Ranges()
        self.sliced = with_slices(self.detector)

    def detect(self, frame: np.ndarray, t: float = 0.0) -> list:
        """`t`: the frame's media time (seconds)."""
        found, _ = self.follower.follow(KEY, frame)
        if found is None:
            found = (self.detector.detect(frame) if self.ranges is None
                     else self.ranges.detect(KEY, self.sliced, frame, t, slices=False))
            self.follower.detected(KEY, frame, found)
        return found


def run_loop(video: str, bundle: str, mode: str, engine: str, seconds: float) -> dict:
    detector = _Detection(mode)
    if mode == "baseline":
        return _baseline_loop(video, detector, seconds)
    predictor = load_predictor(Path(bundle), "predict" if mode == "reference" else engine)
    head = predictor.card.primary_head
    cap = cv2.VideoCapture(video)
    stages: dict[str, list[float]] = {k: [] for k in ("read", "detect", "crop", "classify", "overlay", "frame")}
    classify_per_face: list[float] = []
    frames = faces = 0
    started = None
    try:
        while True:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            if not ok:
                break
            t1 = time.perf_counter()
            detections = detector.detect(frame, cap.get(cv2.CAP_PROP_POS_MSEC) / 1000)
            t2 = time.perf_counter()
            crops = [crop_face(frame, d.box, CROP) for d in detections]
            t3 = time.perf_counter()
            if mode == "reference":
                levels = [int(np.argmax(predictor.predict(c[None])[head][0])) for c in crops]
            else:
                levels = [int(np.argmax(p)) for p in predictor.predict(np.stack(crops))[head]] if crops else []
            t4 = time.perf_counter()
            _overlay(frame, [d.box for d in detections], levels)
            t5 = time.perf_counter()
            if started is None:
                # Warm-up frames (first calls trace and allocate) are not counted.
                stages["frame"].append(t5 - t0)
                if len(stages["frame"]) >= WARMUP_FRAMES:
                    stages = {k: [] for k in stages}
                    started = time.perf_counter()
                continue
            for key, value in zip(("read", "detect", "crop", "classify", "overlay", "frame"),
                                  (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0), strict=True):
                stages[key].append(value)
            if crops:
                classify_per_face.append((t4 - t3) / len(crops))
            frames += 1
            faces += len(crops)
            if time.perf_counter() - started > seconds:
                break
    finally:
        cap.release()
    elapsed = time.perf_counter() - started if started else 0.0
    return {"mode": mode, "engine": predictor.engine, "frames": frames, "faces": faces,
            "seconds": round(elapsed, 3), "fps": round(frames / elapsed, 3) if elapsed else None,
            "faces_per_frame": round(faces / frames, 2) if frames else 0.0,
            "stages_ms": {k: percentiles_ms(v) for k, v in stages.items()},
            "classify_ms_per_face": percentiles_ms(classify_per_face)}


def _baseline_loop(video: str, detector: _Detection, seconds: float) -> dict:
    # The same per-face work as the pipeline's inference (BaselinePredictor: the face mesh, its
    # second reframed pass, the rule, smoothing) on the same crops: like for like with the pipeline.
    predictor = BaselinePredictor()
    cap = cv2.VideoCapture(video)
    stages: dict[str, list[float]] = {k: [] for k in ("read", "detect", "crop", "classify", "overlay", "frame")}
    classify_per_face: list[float] = []
    frames = faces = 0
    started = None
    warm = 0
    try:
        while True:
            t0 = time.perf_counter()
            ok, frame = cap.read()
            if not ok:
                break
            t_media = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000
            t1 = time.perf_counter()
            detections = detector.detect(frame, t_media)
            t2 = time.perf_counter()
            crops = [crop_face(frame, d.box, CROP) for d in detections]
            t3 = time.perf_counter()
            if crops:
                keys = [("bench", "loop", i) for i in range(len(crops))]
                predictor.predict_students(keys, np.stack(crops)[:, None], t_media)
            t4 = time.perf_counter()
            if started is None:
                warm += 1
                if warm >= WARMUP_FRAMES:
                    started = time.perf_counter()
                continue
            for key, value in zip(("read", "detect", "crop", "classify", "overlay", "frame"),
                                  (t1 - t0, t2 - t1, t3 - t2, t4 - t3, 0.0, t4 - t0), strict=True):
                stages[key].append(value)
            if crops:
                classify_per_face.append((t4 - t3) / len(crops))
            frames += 1
            faces += len(crops)
            if time.perf_counter() - started > seconds:
                break
    finally:
        cap.release()
    elapsed = time.perf_counter() - started if started else 0.0
    return {"mode": "baseline", "engine": predictor.engine, "frames": frames, "faces": faces,
            "seconds": round(elapsed, 3), "fps": round(frames / elapsed, 3) if elapsed else None,
            "faces_per_frame": round(faces / frames, 2) if frames else 0.0,
            "stages_ms": {k: percentiles_ms(v) for k, v in stages.items()},
            "classify_ms_per_face": percentiles_ms(classify_per_face)}


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m bench.loops", description=__doc__.splitlines()[0])
    parser.add_argument("--video", required=True)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--mode", choices=("reference", "best", "baseline"), required=True)
    parser.add_argument("--engine", default="keras", help="engine of the best loop (the pipeline's)")
    parser.add_argument("--seconds", type=float, default=60.0, help="stop after this long (after warm-up)")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    result = run_loop(args.video, args.bundle, args.mode, args.engine, args.seconds)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

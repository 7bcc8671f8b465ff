"""Inference engines compared on the same real face crops: keras direct, tflite, predict, onnx, auto.

    python -m bench.engines --bundle B --video V --json out.json [--calls 10]

Timings reuse bench/latency.py's median-of-calls helper; each engine's outputs
on 8 real crops are compared with the Keras model's. `auto` is loaded as the service loads
it and the engine it picks is checked against the fastest engine within AUTO_TOLERANCE.
Also the attention baseline's cost per face (face mesh, no TensorFlow) at 1 and 8 faces.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

from bench.latency import FACES, _median_ms
from bench.loops import CROP
from services.inference.bundle import AUTO_TOLERANCE, load_predictor
from shared.ops.command_parser import CommandParser
from shared.vision.detectors import DnnDetector, crop_face

ENGINES = ("keras", "tflite", "predict", "onnx")  # onnx: ONNX Runtime, on the best provider this machine has


def real_crops(video: str, n: int) -> np.ndarray:
    """n face crops from the first frame of the video (the faces repeat when there are fewer)."""
    cap = cv2.VideoCapture(video)
    ok, frame = cap.read()
    cap.release()
    if not ok:
        raise RuntimeError(f"cannot read {video}")
    detections = DnnDetector().detect(frame)
    if not detections:
        raise RuntimeError(f"no face found in the first frame of {video}")
    crops = [crop_face(frame, d.box, CROP) for d in detections]
    return np.stack([crops[i % len(crops)] for i in range(n)])


def compare(bundle: Path, video: str, calls: int) -> dict:
    crops = real_crops(video, max(FACES))
    rows = []
    reference = None
    for engine in ENGINES:
        predictor = load_predictor(bundle, engine)
        head = predictor.card.primary_head
        out = predictor.predict(crops)[head]
        if reference is None:
            reference = out  # keras comes first
        row = {"engine": engine, "device": predictor.device,
               "max_abs_diff_vs_keras": float(np.max(np.abs(out - reference)))}
        for n in FACES:
            ms = _median_ms(lambda p=predictor, c=crops[:n]: p.predict(c), calls)
            row[f"ms_per_call_{n}"] = round(ms, 2)
            row[f"ms_per_face_{n}"] = round(ms / n, 2)
        rows.append(row)
        del predictor
    within = [r for r in rows if r["max_abs_diff_vs_keras"] <= AUTO_TOLERANCE]
    fastest = min(within, key=lambda r: r["ms_per_call_1"] + r["ms_per_call_8"])["engine"]
    auto = load_predictor(bundle, "auto").engine
    return {"rows": rows, "tolerance": AUTO_TOLERANCE, "fastest_within_tolerance": fastest,
            "auto_choice": auto, "auto_is_fastest": auto == fastest, "baseline": baseline_cost(crops, calls)}


def baseline_cost(crops: np.ndarray, calls: int) -> dict:
    from services.inference.baseline import BaselinePredictor

    baseline = BaselinePredictor()
    out = {"engine": baseline.engine}
    for n in FACES:
        ms = _median_ms(lambda c=crops[:n]: [baseline.assess(s) for s in baseline.measure(c)], calls)
        out[f"ms_per_call_{n}"] = round(ms, 2)
        out[f"ms_per_face_{n}"] = round(ms / n, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m bench.engines", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--video", required=True, help="a video whose first frame has faces")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    args.json.write_text(json.dumps(compare(args.bundle, args.video, args.calls), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

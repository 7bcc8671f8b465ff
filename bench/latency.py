"""Per-call latency of each engine at 1 and 8 faces, and of the baseline per face (prints a table).

    python -m bench.latency                  MobileNetV2 224x224 frame model (random
                                                           weights: speed does not depend on them)
    python -m bench.latency --bundle DIR     a real bundle
    python -m bench.latency --json out.json  also write the figures

A figure is the median of --calls calls after a warm-up call. This is a benchmark that
prints numbers, not a test; the pipeline-wide benchmark is bench/bench.py (`engagement bench`).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from shared.ops.command_parser import CommandParser

FACES = (1, 8)


def _median_ms(fn: Callable[[], object], calls: int) -> float:
    fn()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def _astronaut_crop(size: int) -> np.ndarray:
    import cv2
    from skimage import data  # the test extra; this is a benchmark

    from shared.vision.detectors import DnnDetector, crop_face

    frame = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    return crop_face(frame, DnnDetector().detect(frame)[0].box, size)


def _mobilenet_bundle(directory: Path) -> Path:
    import keras

    from shared.data.model_card import ModelCard

    base = keras.applications.MobileNetV2(input_shape=(224, 224, 3), include_top=False, weights=None, pooling="avg")
    out = keras.layers.Dense(4, activation="softmax", name="boredom")(base.output)
    keras.Model(base.input, out).save(directory / "model.keras")
    ModelCard(name="mobilenetv2-224 (random weights, latency only)", kind="frame", preprocessing="mobilenet_v2",
              heads=["boredom"], input={"size": [224, 224], "channels": 3, "color": "rgb", "sequence_length": 1},
              trained_on="nothing").save(directory)
    return directory


def measure(bundle: Path | None, calls: int, crop: int = 224) -> list[dict]:
    from services.inference.baseline import BaselinePredictor
    from services.inference.bundle import load_predictor

    rows = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = bundle or _mobilenet_bundle(Path(tmp))
        for engine in ("keras", "tflite", "predict", "auto"):
            predictor = load_predictor(bundle, engine)
            seq = predictor.card.sequence_length
            for n in FACES:
                shape = (n, seq, crop, crop, 3) if predictor.card.kind == "sequence" else (n, crop, crop, 3)
                crops = rng.integers(0, 256, shape, dtype=np.uint8)
                ms = _median_ms(lambda p=predictor, c=crops: p.predict(c), calls)
                rows.append({"model": predictor.card.name, "engine": f"{engine}" if engine != "auto" else
                             f"auto={predictor.engine}", "faces": n, "ms_per_call": round(ms, 2),
                             "ms_per_face": round(ms / n, 2)})
    baseline = BaselinePredictor()
    face = _astronaut_crop(crop)  # a real face: the mesh's work depends on it
    for n in FACES:
        crops = np.stack([face] * n)
        ms = _median_ms(lambda c=crops: [baseline.assess(s) for s in baseline.measure(c)], calls)
        rows.append({"model": "attention-baseline", "engine": baseline.engine, "faces": n,
                     "ms_per_call": round(ms, 2), "ms_per_face": round(ms / n, 2)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m bench.latency", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="model bundle (default: a MobileNetV2 224 frame model)")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per figure (median)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    rows = measure(args.bundle, args.calls)
    print(f"{'model':48} {'engine':14} {'faces':>5} {'ms/call':>9} {'ms/face':>9}")
    for r in rows:
        print(f"{r['model'][:48]:48} {r['engine']:14} {r['faces']:>5} {r['ms_per_call']:>9.2f} "
              f"{r['ms_per_face']:>9.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Every engine this machine can run on a bundle, on the same real crops: agreement and ms/face.

    python -m services.inference.gpu_check --bundle DIR [--crops crops.npy] [--calls 20]

Engines: keras (when TensorFlow is installed: the reference), tflite, and onnx once per ONNX
Runtime provider present (TensorRT, CUDA, CPU), each forced on its own. Each engine's
probabilities are compared with the reference's (keras, else onnx on the CPU); then the median
time of a call with 1 and with 8 faces is printed as ms/face. scripts/gpu-check.sh runs this on
a machine with an NVIDIA GPU. Exit 0 when every engine agrees within AUTO_TOLERANCE, 1 when one
does not, 2 on bad input.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from services.inference.bundle import (
    AUTO_TOLERANCE,
    ONNX_FILE,
    TFLITE_FILE,
    BundleError,
    Predictor,
    check_card,
    load_predictor,
)
from services.inference.onnx_engine import OnnxEngine, available_providers
from shared.ops.command_parser import CommandParser

FACES = (1, 8)
log = logging.getLogger("gpu_check")


def lfw_crops(n: int, side: int = 112) -> np.ndarray:
    """n real faces (scikit-image's LFW, gray as BGR), the size the sequencer sends."""
    import cv2  # noqa: PLC0415
    from skimage import data  # noqa: PLC0415 - where installed; else pass --crops

    faces = (data.lfw_subset()[:n] * 255).astype(np.uint8)  # type: ignore[no-untyped-call]  # unannotated there
    return np.stack([cv2.cvtColor(cv2.resize(f, (side, side)), cv2.COLOR_GRAY2BGR) for f in faces])


def predictors(bundle: Path) -> dict[str, Predictor]:
    """label -> predictor, for every engine (and ONNX Runtime provider) this machine can run."""
    out: dict[str, Predictor] = {}
    for engine in ("keras", "tflite"):
        if engine == "tflite" and not (bundle / TFLITE_FILE).is_file():
            continue
        try:
            p = load_predictor(bundle, engine)
            out[f"{engine}/{p.device}"] = p
        except BundleError as exc:
            log.info("%s: not on this machine (%s)", engine, exc)
    if (bundle / ONNX_FILE).is_file():
        card = check_card(bundle)
        for provider in available_providers():
            onnx = OnnxEngine(bundle / ONNX_FILE, providers=[provider])
            onnx.use_heads(card.heads)
            out[f"onnx/{onnx.device}"] = Predictor(card, onnx)
    return out


def median_ms(predictor: Predictor, crops: np.ndarray, calls: int) -> float:
    predictor.predict(crops)  # warm-up: TensorRT builds (or loads) its engine here
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        predictor.predict(crops)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def check(bundle: Path, crops: np.ndarray, calls: int) -> dict[str, Any]:
    engines = predictors(bundle)
    if not engines:
        raise BundleError(f"no engine on this machine can run {bundle}")
    card = next(iter(engines.values())).card
    if card.kind == "sequence":
        crops = np.stack([crops[(i + np.arange(card.sequence_length)) % len(crops)] for i in range(len(crops))])
    reference_label = next((k for k in engines if k.startswith("keras/")), "onnx/cpu")
    reference = engines[reference_label].predict(crops[: max(FACES)])
    rows = []
    for label, predictor in engines.items():
        out = predictor.predict(crops[: max(FACES)])
        diff = max(float(np.max(np.abs(out[h] - reference[h]))) for h in card.heads)
        row: dict[str, Any] = {"engine": label, "max_abs_diff": diff, "agrees": diff <= AUTO_TOLERANCE}
        for n in FACES:
            row[f"ms_per_face_{n}"] = round(median_ms(predictor, crops[:n], calls) / n, 3)
        rows.append(row)
    return {"bundle": str(bundle), "model": card.name, "reference": reference_label, "tolerance": AUTO_TOLERANCE,
            "providers": available_providers(), "rows": rows}


def table(result: dict[str, Any]) -> str:
    lines = [f"{result['model']}: every engine against {result['reference']} on the same real crops",
             f"{'engine':<16} {'max diff':>9} {'agrees':>6} {'ms/face (1)':>12} {'ms/face (8)':>12}"]
    for r in result["rows"]:
        lines.append(f"{r['engine']:<16} {r['max_abs_diff']:>9.1e} {'yes' if r['agrees'] else 'NO':>6} "
                     f"{r['ms_per_face_1']:>12.3f} {r['ms_per_face_8']:>12.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m services.inference.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--crops", type=Path, help="uint8 BGR crops (n, h, w, 3) as .npy; default LFW faces")
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        crops = np.load(args.crops) if args.crops else lfw_crops(max(FACES))
        result = check(args.bundle, crops, args.calls)
    except (BundleError, ValueError, OSError) as exc:  # CardError is a ValueError
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(r["agrees"] for r in result["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The attention baseline's agreement with the hand labels of the real footage (real_footage.py), printed.

    python -m tests.inference.measure_real_footage [--gaze]

Each recording at 16:9 and 4:3, frames keeping their shape and squeezed into 640x480 (the old
capture), read in this process by the baseline as inference runs it (smoothing, neutral pose).
What each label expects: facing -> level 0, down -> level 0 or 1, eyes_shut -> level 2 or more.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from services.inference.baseline.neutral import NeutralPose
from services.inference.baseline.predictor import BaselinePredictor
from tests.inference import real_footage

EXPECTED = {"facing": lambda level: level == 0, "down": lambda level: level <= 1,
            "eyes_shut": lambda level: level >= 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gaze", action="store_true", help="the iris model on (GAZE=1)")
    gaze = parser.parse_args().gaze
    totals: dict[tuple[str, str], list[int]] = {}
    for name in real_footage.CLIPS:
        for aspect in ((16, 9), (4, 3)):
            for squeeze in (None, real_footage.SQUEEZED):
                footage = real_footage.decode_crops(name, aspect, squeeze)
                predictor = BaselinePredictor(gaze=gaze, neutral=NeutralPose())
                started = time.perf_counter()
                read = real_footage.levels_in_process(footage, predictor)
                per_face = (time.perf_counter() - started) / max(1, sum(bool(f) for _, f in footage))
                shape = "squeezed" if squeeze else "own shape"
                by_label: dict[str, list[int]] = {}
                for t, level, _ in read:
                    by_label.setdefault(real_footage.label_at(name, t), []).append(level)
                parts = []
                for label, ok in EXPECTED.items():
                    if label in by_label:
                        agreed = sum(ok(level) for level in by_label[label])
                        parts.append(f"{label} {agreed}/{len(by_label[label])}")
                        total = totals.setdefault((shape, label), [0, 0])
                        total[0] += agreed
                        total[1] += len(by_label[label])
                facing = np.bincount(by_label.get("facing", []), minlength=4).tolist()
                print(f"{name:12s} {aspect[0]}:{aspect[1]:<2d} {shape:9s}  {', '.join(parts)}  "
                      f"(facing frames by level {facing}; {1000 * per_face:.1f} ms a face)")
    for (shape, label), (agreed, count) in sorted(totals.items()):
        print(f"all, {shape}: {label} as expected on {agreed}/{count} ({100 * agreed / count:.0f} %)")


if __name__ == "__main__":
    main()

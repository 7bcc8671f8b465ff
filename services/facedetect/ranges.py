"""Near faces: BlazeFace's short-range model alone, not both models, while every face is near.

The default detector runs short- and full-range BlazeFace on every detection (shared/vision/
detectors.py BlazeFaceBothDetector): full-range for small faces, short-range for large ones.
Full-range's 192 px input is most of the cost: short-range alone took 1.7 ms a 640x480 frame
against 6.2 ms for both (this machine, 2026-12-05). Measured on real faces (the carphone clip
and skimage's astronaut placed at 12 sizes in a 640x480 frame): short-range finds a face from
about 0.11 of the frame's longer side (score 0.64), surely from 0.145 (0.78-0.97); below 0.11
only full-range does. So after a detection whose faces were all at least NEAR_FACE of the
frame's longer side, the next detections of that stream run short-range alone, until:
- it finds fewer faces than the last detection did (a face moved away, turned, was lost): both
  models run at once on the same frame;
- FAR_RECHECK_SECONDS passed since both last ran: a far face that came in beside the near ones
  (someone sitting down at the back) is found by then.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.vision.detectors import BlazeFaceBothDetector, Detection, SlicedDetector
from shared.vision.sliced import tidy

NEAR_FACE = 0.15  # smallest face side, as a fraction of the frame's longer side, that short-range surely finds
FAR_RECHECK_SECONDS = 4.0  # both models at least this often: a far newcomer is found within it

Box = tuple[int, int, int, int]


@dataclass
class _Range:
    near: bool  # every face of the last detection was near (and there was one)
    faces: int  # faces of the last detection
    both_at: float  # media time both models last ran


def all_near(boxes: list[Box], shape: tuple[int, ...]) -> bool:
    """At least one face, and every one at least NEAR_FACE of the frame's longer side."""
    side = max(shape[0], shape[1])
    return bool(boxes) and all(max(b[2], b[3]) >= NEAR_FACE * side for b in boxes)


class Ranges:
    """Per stream: whether the next detection may run short-range alone."""

    def __init__(self, recheck_seconds: float = FAR_RECHECK_SECONDS) -> None:
        self.recheck_seconds = recheck_seconds
        self.streams: dict[tuple[str, str], _Range] = {}
        self.ran = ""  # what the last detect ran

    def detect(self, key: tuple[str, str], detector: SlicedDetector, frame: np.ndarray, t: float,
               slices: bool = True) -> list[Detection]:
        """The frame's faces: short-range alone when it may and its answer stands, else `detector`
        (both models, slices if `slices` and the faces are small). `ran` says which: "short",
        "short+both" (short-range found fewer faces) or "both"."""
        both = detector.inner
        self.ran = "both"
        if isinstance(both, BlazeFaceBothDetector) and self.short_only(key, t):
            found = tidy(both.detect_short(frame))
            if self.enough(key, len(found)):
                self.ran = "short"
                self.seen(key, [d.box for d in found], frame.shape, t, both=False)
                return found
            self.ran = "short+both"
        found = detector.detect(frame, slices=slices)
        self.seen(key, [d.box for d in found], frame.shape, t, both=True)
        return found

    def short_only(self, key: tuple[str, str], t: float) -> bool:
        last = self.streams.get(key)
        return last is not None and last.near and 0.0 <= t - last.both_at < self.recheck_seconds

    def enough(self, key: tuple[str, str], found: int) -> bool:
        """Short-range alone found as many faces as the last detection: its answer stands."""
        last = self.streams.get(key)
        return last is not None and found >= last.faces

    def seen(self, key: tuple[str, str], boxes: list[Box], shape: tuple[int, ...], t: float, both: bool) -> None:
        """A detection's faces (`both`: both models ran)."""
        last = self.streams.get(key)
        both_at = t if both or last is None else last.both_at
        self.streams[key] = _Range(all_near(boxes, shape), len(boxes), both_at)

    def forget(self, key: tuple[str, str]) -> None:
        self.streams.pop(key, None)

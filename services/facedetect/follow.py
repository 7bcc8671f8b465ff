"""Detect less often: follow the faces found by the last detection for up to N-1 frames.

Between two detections each face is followed by template matching (its grey patch from the
detection frame, searched in a window around where it was last), which costs well under a
millisecond a face. A full detection runs at once, instead of following, when:
- it is due (every `every` frames),
- a face is lost (its match falls below `min_match`: it turned away, left, or was covered),
- something changed away from the followed people (a new face may have come): the frame,
  shrunk to a coarse grid, differs from the detection frame's by more than
  `motion_threshold` grey levels in a cell that no person (a face and the head and
  shoulders around it) covers. In a crowded frame people cover nearly everything, so a
  newcomer there is found at the next due detection, at most N-1 frames later.
`every` = 1 turns following off (detect every frame).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from shared.vision.detectors import Detection

# Matching runs on a half-size grey frame: four times less work, faces are still >= 10 px.
SCALE = 0.5
GRID = (64, 48)  # coarse grid (w, h) of the change check
WHY = ("first", "due", "lost", "change")


@dataclass
class _Followed:
    template: np.ndarray  # grey patch at SCALE, from the detection frame
    box: tuple[int, int, int, int]  # last box, full-size pixels
    confidence: float
    origin: tuple[int, int, int, int]  # box in the detection frame


@dataclass
class _StreamState:
    coarse: np.ndarray  # detection frame on the coarse grid
    faces: list[_Followed] = field(default_factory=list)
    since: int = 0  # frames followed since the last detection


class Follower:
    def __init__(self, every: int = 3, min_match: float = 0.6, motion_threshold: float = 24.0) -> None:
        self.every = max(1, int(every))
        self.min_match = min_match
        self.motion_threshold = motion_threshold
        self.streams: dict[tuple[str, str], _StreamState] = {}

    def follow(self, key: tuple[str, str], frame: np.ndarray,
               gray_of: Callable[[], np.ndarray] | None = None) -> tuple[list[Detection] | None, str]:
        """(the faces followed into this frame, "followed"), or (None, why) when a detection must run.
        `gray_of`: gives the frame in grey, where the caller makes it once for all who need it."""
        state = self.streams.get(key)
        if state is None or self.every == 1:
            return None, "first"
        if state.since + 1 >= self.every:
            return None, "due"
        gray = gray_of() if gray_of is not None else _gray(frame)
        if self._changed_elsewhere(state, gray, frame.shape):
            return None, "change"
        small = cv2.resize(gray, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_AREA)
        moved = []
        for face in state.faces:
            box = self._match(small, face, frame.shape)
            if box is None:
                return None, "lost"
            moved.append(box)
        for face, box in zip(state.faces, moved, strict=True):
            face.box = box
        state.since += 1
        return [Detection(f.box, f.confidence) for f in state.faces], "followed"

    def detected(self, key: tuple[str, str], frame: np.ndarray, detections: list[Detection],
                 gray_of: Callable[[], np.ndarray] | None = None) -> None:
        """A detection ran on this frame: follow its faces from here (`gray_of`: as in `follow`)."""
        if self.every == 1:
            return
        gray = gray_of() if gray_of is not None else _gray(frame)
        small = cv2.resize(gray, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_AREA)
        faces = []
        for d in detections:
            x, y, w, h = (int(v * SCALE) for v in d.box)
            patch = small[y:y + h, x:x + w]
            if patch.shape[0] >= 4 and patch.shape[1] >= 4:
                faces.append(_Followed(patch.copy(), d.box, d.confidence, d.box))
        self.streams[key] = _StreamState(_coarse(gray), faces)

    def forget(self, key: tuple[str, str]) -> None:
        self.streams.pop(key, None)

    def _match(self, small: np.ndarray, face: _Followed, shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
        th, tw = face.template.shape
        x, y = int(face.box[0] * SCALE), int(face.box[1] * SCALE)
        # Search half a face each way around the last position.
        x0, y0 = max(0, x - tw // 2), max(0, y - th // 2)
        x1, y1 = min(small.shape[1], x + tw + tw // 2), min(small.shape[0], y + th + th // 2)
        window = small[y0:y1, x0:x1]
        if window.shape[0] < th or window.shape[1] < tw:
            return None
        scores = cv2.matchTemplate(window, face.template, cv2.TM_CCOEFF_NORMED)
        _, best, _, (bx, by) = cv2.minMaxLoc(scores)
        if best < self.min_match:
            return None
        h, w = shape[:2]
        nx, ny = int((x0 + bx) / SCALE), int((y0 + by) / SCALE)
        bw, bh = face.box[2], face.box[3]
        return max(0, min(nx, w - bw)), max(0, min(ny, h - bh)), bw, bh

    def _changed_elsewhere(self, state: _StreamState, gray: np.ndarray, shape: tuple[int, ...]) -> bool:
        diff = cv2.absdiff(_coarse(gray), state.coarse)
        mask = np.ones(diff.shape, bool)
        fx, fy = GRID[0] / shape[1], GRID[1] / shape[0]
        for x, y, w, h in [b for face in state.faces for b in (face.origin, face.box)]:
            # The person around the face, where it was and is: a face of room each side and
            # above, two below (head and shoulders move with the face).
            mask[max(0, int((y - h) * fy)):int((y + 3 * h) * fy) + 1,
                 max(0, int((x - w) * fx)):int((x + 2 * w) * fx) + 1] = False
        return bool(mask.any() and diff[mask].max() > self.motion_threshold)


def _gray(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame


def _coarse(gray: np.ndarray) -> np.ndarray:
    return cv2.resize(gray, GRID, interpolation=cv2.INTER_AREA)

"""Test videos for "one person is one student": real faces that are covered, leave, swap, enter.

A scene is a list of `Actor`s: a real face picture (skimage's astronaut, an lfw_subset face, a
frame of real footage) shown at a place during stretches of time. `hand_over` draws a raised
hand over a face for a stretch: a palm with five fingers in the face's own skin tone, shaded and
creased like a hand, rising from below the frame, covering the face and going down again (no
photograph of a hand ships in a package reachable here). The frames are written with a
real codec (tools/footage.py's `write_video`, MJPG .avi) so tests run them through the
capture's decoder.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

Box = tuple[int, int, int, int]


@functools.cache
def astronaut_head() -> np.ndarray:
    """The astronaut's head and shoulders (BGR), as in tools/sample_video.py's FACE_REGION."""
    from skimage import data  # noqa: PLC0415  (test data only)

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[0:260, 100:350].copy()


@functools.cache
def lfw_face(index: int) -> np.ndarray:
    """One of lfw_subset's real faces (25x25 grey, tightly cropped) as a BGR picture with a
    margin of plain grey around it, so a detector sees a head rather than a face filling all."""
    from skimage import data  # noqa: PLC0415

    face = (data.lfw_subset()[index] * 255).astype(np.uint8)
    big = cv2.resize(face, (150, 150), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(cv2.copyMakeBorder(big, 40, 40, 40, 40, cv2.BORDER_REPLICATE), cv2.COLOR_GRAY2BGR)


@dataclass
class Actor:
    picture: np.ndarray | Callable[[float], np.ndarray]  # BGR, or the picture at time t (footage)
    place: Callable[[float], tuple[int, int]] | tuple[int, int]  # top-left corner at time t
    shown: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 1e9)])  # [start, end) stretches
    width: int = 0  # shown this wide (0: as it is)

    def at(self, t: float) -> tuple[np.ndarray, tuple[int, int]] | None:
        if not any(a <= t < b for a, b in self.shown):
            return None
        picture = self.picture(t) if callable(self.picture) else self.picture
        if self.width:
            picture = cv2.resize(picture, (self.width, round(picture.shape[0] * self.width / picture.shape[1])),
                                 interpolation=cv2.INTER_AREA if self.width < picture.shape[1] else cv2.INTER_CUBIC)
        place = self.place(t) if callable(self.place) else self.place
        return picture, place


@dataclass
class Hand:
    """A hand raised over `face` (a box in the frame) from `start` for `seconds`."""

    face: Box
    start: float
    seconds: float
    skin: tuple[int, int, int] = (120, 150, 200)  # BGR
    height: float = 1.0  # how far it rises: 1 covers the face, less leaves the eyes showing


def _paste(frame: np.ndarray, picture: np.ndarray, x: int, y: int) -> None:
    h, w = picture.shape[:2]
    fx0, fy0, fx1, fy1 = max(0, x), max(0, y), min(frame.shape[1], x + w), min(frame.shape[0], y + h)
    if fx0 < fx1 and fy0 < fy1:
        frame[fy0:fy1, fx0:fx1] = picture[fy0 - y:fy1 - y, fx0 - x:fx1 - x]


def draw_hand(frame: np.ndarray, hand: Hand, t: float) -> None:
    """The hand at time t: it rises from below the frame in the first quarter of its stretch,
    covers the face, and goes down in the last quarter."""
    u = (t - hand.start) / hand.seconds
    if not 0 <= u < 1:
        return
    x, y, w, h = hand.face
    up = min(1.0, u / 0.25, (1 - u) / 0.25) * hand.height  # 0 below the frame .. 1 over the face
    cx = x + w / 2 + 0.1 * w
    palm_cy = frame.shape[0] + h - up * (frame.shape[0] + h - (y + 0.75 * h))
    palm_w, palm_h = 0.55 * w, 0.6 * h
    mask = np.zeros(frame.shape[:2], np.uint8)
    cv2.ellipse(mask, (int(cx), int(palm_cy)), (int(palm_w), int(palm_h)), 0, 0, 360, 255, -1)
    finger = max(3, int(0.2 * w))
    tips = []
    for k, (dx, length) in enumerate(((-0.42, 0.95), (-0.14, 1.1), (0.14, 1.05), (0.42, 0.85))):
        base = (int(cx + dx * palm_w * 1.6), int(palm_cy - 0.6 * palm_h))
        tip = (int(base[0] + (k - 1.5) * 0.06 * w), int(base[1] - length * 0.75 * h))
        cv2.line(mask, base, tip, 255, finger, cv2.LINE_AA)
        cv2.circle(mask, tip, finger // 2, 255, -1, cv2.LINE_AA)
        tips.append((base, tip))
    thumb_base = (int(cx - 0.9 * palm_w), int(palm_cy))
    thumb_tip = (int(cx - 1.6 * palm_w), int(palm_cy - 0.7 * palm_h))
    cv2.line(mask, thumb_base, thumb_tip, 255, int(finger * 1.1), cv2.LINE_AA)
    # Shading: lighter towards the fingertips and the top-left light, a little skin texture.
    yy, xx = np.mgrid[0:frame.shape[0], 0:frame.shape[1]].astype(np.float32)
    light = 0.85 + 0.25 * np.clip((palm_cy - yy) / (2 * h) + (cx - xx) / (4 * w), -0.5, 0.6)
    rng = np.random.default_rng(int(t * 1000) % 2**32)
    noise = rng.normal(0, 4, frame.shape[:2]).astype(np.float32)
    skin = np.empty(frame.shape, np.float32)
    for c in range(3):
        skin[..., c] = hand.skin[c] * light + noise
    # Creases between the fingers and across the palm.
    creases = np.zeros(frame.shape[:2], np.uint8)
    for base, tip in tips:
        mid = ((base[0] + tip[0]) // 2, (base[1] + tip[1]) // 2)
        cv2.line(creases, (mid[0] - finger // 3, mid[1]), (mid[0] + finger // 3, mid[1]), 255, 1, cv2.LINE_AA)
    cv2.ellipse(creases, (int(cx), int(palm_cy)), (int(palm_w * 0.7), int(palm_h * 0.5)), 0, 200, 340, 255, 1)
    skin[creases > 0] *= 0.8
    alpha = cv2.GaussianBlur(mask, (5, 5), 0).astype(np.float32)[..., None] / 255.0
    frame[:] = np.clip(frame * (1 - alpha) + skin * alpha, 0, 255).astype(np.uint8)


def skin_of(picture: np.ndarray, box: Box) -> tuple[int, int, int]:
    """The median colour of the middle of a face box (cheeks and nose): the hand's tone."""
    x, y, w, h = box
    middle = picture[y + h // 3:y + 2 * h // 3, x + w // 4:x + 3 * w // 4].reshape(-1, 3)
    b, g, r = np.median(middle, axis=0)
    return int(b), int(g), int(r)


def render(actors: list[Actor], t: float, size: tuple[int, int] = (640, 480), hands: list[Hand] | None = None,
           background: int = 90) -> np.ndarray:
    w, h = size
    frame = np.full((h, w, 3), background, np.uint8)
    # A little gradient so the room is not a flat colour (the follower's change check sees a real scene).
    frame[:] = np.clip(frame + np.linspace(-20, 20, w, dtype=np.float32)[None, :, None], 0, 255).astype(np.uint8)
    for actor in actors:
        shown = actor.at(t)
        if shown is not None:
            _paste(frame, shown[0], *shown[1])
    for hand in hands or []:
        draw_hand(frame, hand, t)
    return frame


def sway(x0: int, y0: int, dx: float = 6.0, dy: float = 3.0, period: float = 4.0) -> Callable[[float], tuple[int, int]]:
    """A seated person's small movements around a place."""
    return lambda t: (int(x0 + dx * math.sin(2 * math.pi * t / period)),
                      int(y0 + dy * math.sin(4 * math.pi * t / period)))

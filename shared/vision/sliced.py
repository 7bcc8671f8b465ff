"""Sliced inference: faces that are small for the whole frame, searched at the detector's own scale.

A detector sees the whole frame at its input size (BlazeFace 128 and 192 px, res10 300 px): a
1920x1080 frame is shrunk ten times, and a face under about 150 px (a gallery whose grid is not
seen, tiles that touch; a class seen from the back of the room) is then a few pixels and missed.
When the whole-frame pass finds no face, or only small ones, the frame is also cut into
overlapping slices a few times the detector's input, each searched on its own, and the boxes
merged: a box cut by a slice's inner edge is dropped (the overlap holds that face whole in a
neighbour), then overlapping boxes across slices are suppressed (IoU, or one mostly inside
another), the most confident kept.

The grid of a call (services/facedetect/gallery.py) stays the fast path when it is seen: one
search per tile where the frame pass found nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

Box = tuple[int, int, int, int]
EDGE_PX = 2  # a box this close to a slice's inner edge was cut by it
# Of the frame's long side: a face below it may have neighbours the pass missed (BlazeFace's pass of a
# 1920x1080 call found 1 of 9 faces of 260 px, a seventh of the width, and none smaller).
SMALL_FACE = 1 / 5
# Of the slice side: a face up to half a slice fits whole in some slice (at a quarter, faces of
# 260 px, which BlazeFace's pass of a 1920x1080 frame misses, fell on slice edges: 5 of 9 found).
OVERLAP = 0.5


class Found(Protocol):
    """A detection (shared/vision/detectors.py's Detection): a dataclass with these two fields."""

    __dataclass_fields__: ClassVar[dict[str, Any]]  # a dataclass: dataclasses.replace makes the moved copy

    @property
    def box(self) -> Box: ...
    @property
    def confidence(self) -> float: ...


F = TypeVar("F", bound=Found)


def slice_boxes(width: int, height: int, side: int, overlap: float = OVERLAP) -> list[Box]:
    """Square slices of `side` (x, y, w, h) covering the frame, neighbours overlapping by at least
    `overlap` of a side; a frame side not longer than `side` is one slice wide."""
    def starts(length: int) -> list[int]:
        if length <= side:
            return [0]
        count = math.ceil((length - side) / (side * (1 - overlap))) + 1
        step = (length - side) / (count - 1)
        return [round(i * step) for i in range(count)]

    return [(x, y, min(side, width), min(side, height)) for y in starts(height) for x in starts(width)]


def _iou_ios(a: Box, b: Box) -> tuple[float, float]:
    """Intersection over union, and over the smaller box."""
    iw = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    smaller = min(a[2] * a[3], b[2] * b[3])
    return (inter / union if union else 0.0), (inter / smaller if smaller else 0.0)


def suppress(found: list[F], iou: float = 0.4, ios: float = 0.6) -> list[F]:
    """Non-maximum suppression across slices: the most confident of each overlapping group."""
    kept: list[F] = []
    for f in sorted(found, key=lambda d: -d.confidence):
        overlaps = (_iou_ios(f.box, k.box) for k in kept)
        if all(o < iou and s < ios for o, s in overlaps):
            kept.append(f)
    return kept


def tidy(found: list[F], holds: float = 0.8, larger: float = 2.5, ios: float = 0.4) -> list[F]:
    """One box a face: a box that holds a much smaller one whole is dropped (a head and shoulders,
    or a poster around a face: a face never holds another face), then of two boxes that share much
    of the smaller one, the less confident (a chin or a hairline beside the face it belongs to)."""
    def area(b: Box) -> int:
        return b[2] * b[3]

    inner = [f for f in found if not any(area(f.box) >= larger * area(o.box) and _iou_ios(f.box, o.box)[1] >= holds
                                         for o in found if o is not f)]
    return suppress(inner, ios=ios)


def wants_slices(shape: tuple[int, ...], found: list[Box], side: int) -> bool:
    """Whether the frame is worth slicing: larger than a slice by enough, and the whole-frame pass
    found nothing, or a face small for the frame (its neighbours may be smaller still)."""
    long_side = max(shape[0], shape[1])
    if side <= 0 or long_side <= 1.25 * side:
        return False
    return not found or min(max(b[2], b[3]) for b in found) < SMALL_FACE * long_side


def search_slices(frame: np.ndarray, side: int, detect: Callable[[np.ndarray], list[F]],
                  overlap: float = OVERLAP) -> list[F]:
    """Every face `detect` finds in the slices of the frame, in frame pixels; boxes cut by a
    slice's inner edge dropped."""
    h, w = frame.shape[:2]
    out = []
    for x, y, sw, sh in slice_boxes(w, h, side, overlap):
        for f in detect(frame[y:y + sh, x:x + sw]):
            bx, by, bw, bh = f.box
            cut = ((x > 0 and bx <= EDGE_PX) or (y > 0 and by <= EDGE_PX)
                   or (x + sw < w and bx + bw >= sw - EDGE_PX) or (y + sh < h and by + bh >= sh - EDGE_PX))
            if not cut:
                out.append(dataclasses.replace(f, box=(bx + x, by + y, bw, bh)))
    return out

"""A constant overlay text drawn by lookup: the very pixels OpenCV draws, for a fraction of its CPU.

OpenCV's anti-aliased text blends each pixel it touches towards the text's colour, by amounts that
depend on the text, its size and where it stands in the pixel grid, never on the picture beneath.
So for a fixed text every pixel of its box goes through a fixed function of its own value (each
channel alike): drawn once on each of the 256 grey levels, that function is a table, and the text
is then stamped on any frame by one table lookup per touched pixel. The outlined label of the
overlay (services/reporter/overlay.py: a thick dark stroke under the coloured one) costs about
14 times its fill; the baseline's note on every frame was a fifth of the reporter's CPU.

Exact, not an approximation: `draw` falls back to drawing when the text would reach past the
frame's edge (OpenCV clips there), and tests/reporter compare both pixel for pixel.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

# How a text is drawn at an origin: the overlay's own function (outline then colour).
Painter = Callable[[np.ndarray, tuple[int, int]], None]
LEVELS = 256
STAMPS_KEPT = 16  # a few constant texts a frame size (the note, "Recording"): a bound, not a working set


class Extent(NamedTuple):
    """Where a text's pixels may be, around its origin: OpenCV's measure (getTextSize) and a margin for the strokes."""

    width: int
    height: int  # above the baseline
    below: int  # under it (descenders)
    margin: int


class TextStamp:
    """The effect of `paint` at an origin: the touched pixels' offsets from it, and a table for each."""

    def __init__(self, paint: Painter, extent: Extent) -> None:
        self.left, self.top = -extent.margin, -extent.height - extent.margin
        self.box = (extent.height + extent.below + 2 * extent.margin, extent.width + 2 * extent.margin)
        outputs = np.empty((LEVELS, *self.box, 3), np.uint8)
        for value in range(LEVELS):
            canvas = outputs[value]
            canvas[:] = value
            paint(canvas, (-self.left, -self.top))
        grey = np.arange(LEVELS, dtype=np.uint8)[:, None, None, None]
        touched = (outputs != grey).any(axis=(0, 3))
        # A stroke at the box's edge may have been clipped there: then this text is always drawn.
        self.usable = not (touched[0].any() or touched[-1].any() or touched[:, 0].any() or touched[:, -1].any())
        self.rows, self.cols = np.nonzero(touched)
        # tables[i, channel, value]: what that channel of touched pixel i becomes from `value`
        tables = outputs[:, self.rows, self.cols, :].transpose(1, 2, 0)  # [pixel, channel, value in] -> out
        if (tables == tables[:, :1]).all():  # a grey text (the note: black and white): one table serves all three
            tables = tables[:, :1]
        # Flat indices, so that a stamp is one gather and one scatter: table row of each touched channel ...
        self.tables = np.ascontiguousarray(tables).reshape(-1)
        per_pixel = tables.shape[1]
        self.table_rows = ((np.arange(len(self.rows))[:, None] * per_pixel + np.arange(3)[None, :] % per_pixel)
                           * LEVELS).reshape(-1).astype(np.intp)
        # ... and its place in a frame (3 channels, C order) relative to the box's corner, set per frame width.
        self.width = -1
        self.offsets = np.empty(0, np.intp)

    def fits(self, img: np.ndarray, org: tuple[int, int]) -> bool:
        """Whether the frame holds the whole box at `org` (OpenCV clips what does not fit: drawn then)."""
        x, y = org[0] + self.left, org[1] + self.top
        return self.usable and x >= 0 and y >= 0 and x + self.box[1] <= img.shape[1] and y + self.box[0] <= img.shape[0]

    def stamp(self, img: np.ndarray, org: tuple[int, int]) -> None:
        if img.shape[1] != self.width:
            self.width = img.shape[1]
            self.offsets = ((self.rows[:, None] * self.width + self.cols[:, None]) * 3 + np.arange(3)[None, :]
                            ).reshape(-1).astype(np.intp)
        flat = img.reshape(-1)  # a view: the overlay's own contiguous copy
        at = self.offsets + ((org[1] + self.top) * self.width + org[0] + self.left) * 3
        flat[at] = self.tables[self.table_rows + flat[at]]


_stamps: OrderedDict[tuple[object, ...], TextStamp] = OrderedDict()


def draw(img: np.ndarray, org: tuple[int, int], key: tuple[object, ...], paint: Painter, extent: Extent) -> None:
    """`paint(img, org)`, by the text's stamp when the frame holds its box. `key` names the text with all
    that changes its pixels (text, font, scale, colours, thicknesses); `extent` where they may be."""
    stamp = _stamps.get(key)
    if stamp is None:
        stamp = _stamps[key] = TextStamp(paint, extent)
        while len(_stamps) > STAMPS_KEPT:
            _stamps.popitem(last=False)
    else:
        _stamps.move_to_end(key)
    if stamp.fits(img, org) and img.flags.c_contiguous and img.ndim == 3 and img.shape[2] == 3:
        stamp.stamp(img, org)
    else:
        paint(img, org)

"""A constant overlay text drawn by lookup: the very pixels OpenCV draws, for a fraction of its CPU.

OpenCV's anti-aliased text blends each pixel it touches towards the text's colour, by amounts that
depend on the text, its size and where it stands in the pixel grid, never on the picture beneath.
So for a fixed text every pixel of its box goes through a fixed function of its own value (each
channel alike): drawn once on each of the 256 grey levels, that function is a table, and the text
is then stamped on any frame by one table lookup per touched pixel. The outlined label of the
overlay (services/reporter/overlay.py: a thick dark stroke under the coloured one) costs about
14 times its fill; the baseline's note on every frame was a fifth of the reporter's CPU.

A text that changes (a running count) is split: OpenCV draws a text glyph after glyph, each
where the previous one's advance left it, so "attentive: 57" is "attentive: " then "57" drawn
where the first ends, provided that is a whole pixel (OpenCV places glyphs in 1/65536 pixel):
`whole_pixel_split` finds the longest such constant part, which is stamped, layer by layer
in OpenCV's own order (the outline of the constant part, the outline of the count, then the
colour of each), and only the count is drawn (`put_layers`). A face's label, "id 12: 2 distracted",
is the other way round: its id drawn, its level's words stamped.

A stamp costs 256 drawings to make (86 for a grey one: the outline): one is made a frame at most
(`new_frame`), and a text whose stamp had to make room for others is drawn from then on, never
made again (a class with more texts than the bound would otherwise make stamps all the time).

Exact, not an approximation: `draw` falls back to drawing when the text would reach past the
frame's edge (OpenCV clips there), and tests/reporter compare both pixel for pixel.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import cv2
import numpy as np

# How a text is drawn at an origin: the overlay's own function (outline then colour).
Painter = Callable[[np.ndarray, tuple[int, int]], None]
LEVELS = 256
# The note, "Recording", the level names (4 x 2 layers) and the labels' level words (4 x 2) a frame size:
STAMPS_KEPT = 48  # a bound, not a working set
STAMP_BYTES = 64 << 20  # and at most this much of tables (a 1080-line frame's note is 5 MB)
XY_SHIFT = 16  # OpenCV's fixed point in its drawing (drawing.cpp): 1/65536 pixel


class Extent(NamedTuple):
    """Where a text's pixels may be, around its origin: OpenCV's measure (getTextSize) and a margin for the strokes."""

    width: int
    height: int  # above the baseline
    below: int  # under it (descenders)
    margin: int


class TextStamp:
    """The effect of `paint` at an origin: the touched pixels' offsets from it, and a table for each."""

    def __init__(self, paint: Painter, extent: Extent, grey: bool = False) -> None:
        self.left, self.top = -extent.margin, -extent.height - extent.margin
        self.box = (extent.height + extent.below + 2 * extent.margin, extent.width + 2 * extent.margin)
        outputs = self._grey_outputs(paint) if grey else self._outputs(paint)
        grey_levels = np.arange(LEVELS, dtype=np.uint8)[:, None, None, None]
        touched = (outputs != grey_levels).any(axis=(0, 3))
        # A stroke at the box's edge may have been clipped there: then this text is always drawn.
        self.usable = not (touched[0].any() or touched[-1].any() or touched[:, 0].any() or touched[:, -1].any())
        self.rows, self.cols = np.nonzero(touched)
        # tables[i, channel, value]: what that channel of touched pixel i becomes from `value`
        tables = outputs[:, self.rows, self.cols, :].transpose(1, 2, 0)  # [pixel, channel, value in] -> out
        if (tables == tables[:, :1]).all():  # a grey text (the note: black and white): one table serves all three
            tables = tables[:, :1]
        # Flat indices, so that a stamp is one gather and one scatter: table row of each touched channel ...
        self.tables = np.ascontiguousarray(tables).reshape(-1)
        self.nbytes = self.tables.nbytes
        per_pixel = tables.shape[1]
        self.table_rows = ((np.arange(len(self.rows))[:, None] * per_pixel + np.arange(3)[None, :] % per_pixel)
                           * LEVELS).reshape(-1).astype(np.intp)
        # ... and its place in a frame (3 channels, C order) relative to the box's corner, set per frame width.
        self.width = -1
        self.offsets = np.empty(0, np.intp)

    def _outputs(self, paint: Painter) -> np.ndarray:
        """[value, row, column, channel]: the box drawn on each grey level."""
        outputs = np.empty((LEVELS, *self.box, 3), np.uint8)
        for value in range(LEVELS):
            canvas = outputs[value]
            canvas[:] = value
            paint(canvas, (-self.left, -self.top))
        return outputs

    def _grey_outputs(self, paint: Painter) -> np.ndarray:
        """[value, row, column, 1] of a text whose colours are grey (every channel alike, each on its own value):
        three levels a drawing, one a channel, so a third of the drawings."""
        drawings = -(-LEVELS // 3)
        canvases = np.empty((drawings, *self.box, 3), np.uint8)
        for i in range(drawings):
            canvases[i] = np.minimum(np.arange(3 * i, 3 * i + 3), LEVELS - 1).astype(np.uint8)
            paint(canvases[i], (-self.left, -self.top))
        values = np.arange(LEVELS)
        return canvases[values // 3, :, :, values % 3][..., None]

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
_evicted: set[tuple[object, ...]] = set()  # drawn from now on (see the module's doc)
EVICTED_KEPT = 4096
MAKES_A_FRAME = 1
_makes_left = MAKES_A_FRAME


def new_frame() -> None:
    """A frame begins: one stamp may be made while drawing it (the others' texts are drawn meanwhile), so
    that a class's first frame does not wait for all of its stamps (a 1080-line frame's take 0.1-0.5 s each)."""
    global _makes_left
    _makes_left = MAKES_A_FRAME


def draw(img: np.ndarray, org: tuple[int, int], key: tuple[object, ...], paint: Painter, extent: Extent,
         grey: bool = False) -> None:
    """`paint(img, org)`, by the text's stamp when the frame holds its box. `key` names the text with all
    that changes its pixels (text, font, scale, colours, thicknesses); `extent` where they may be; `grey`:
    every colour it paints is grey (each channel then changes alike)."""
    global _makes_left
    stamp = _stamps.get(key)
    if stamp is None:
        if key in _evicted or len(_evicted) >= EVICTED_KEPT or _makes_left <= 0:
            paint(img, org)
            return
        _makes_left -= 1
        stamp = _stamps[key] = TextStamp(paint, extent, grey)
        while len(_stamps) > STAMPS_KEPT or (len(_stamps) > 1 and sum(s.nbytes for s in _stamps.values())
                                             > STAMP_BYTES):
            _evicted.add(_stamps.popitem(last=False)[0])
    else:
        _stamps.move_to_end(key)
    if stamp.fits(img, org) and img.flags.c_contiguous and img.ndim == 3 and img.shape[2] == 3:
        stamp.stamp(img, org)
    else:
        paint(img, org)


def put_text(img: np.ndarray, text: str, org: tuple[int, int], font: int, scale: float,
             colour: tuple[int, int, int], thickness: int) -> None:
    """cv2.putText(..., cv2.LINE_AA), stamped: one layer of a constant text."""
    (width, height), below = cv2.getTextSize(text, font, scale, thickness)

    def paint(canvas: np.ndarray, at: tuple[int, int]) -> None:
        cv2.putText(canvas, text, at, font, scale, colour, thickness, cv2.LINE_AA)

    draw(img, org, ("layer", text, font, scale, colour, thickness), paint, Extent(width, height, below, thickness + 2),
         grey=colour[0] == colour[1] == colour[2])


def whole_pixel_split(text: str, first: int, last: int, font: int, scale: float) -> tuple[int, int] | None:
    """An index of `text` in [first, last], nearest `first`, after which OpenCV's next glyph starts on a whole
    pixel, and that pixel's offset from the text's origin; None when there is none."""
    step = round(scale * (1 << XY_SHIFT))  # putText's hscale (cvRound: half to even, as round)
    ends = range(first, last + 1) if first <= last else range(first, last - 1, -1)
    for end in ends:
        # Font units (glyph advances) at scale 1 and no thickness: their exact sum (getTextSize)
        units = cv2.getTextSize(text[:end], font, 1.0, 0)[0][0]
        if units * step % (1 << XY_SHIFT) == 0:
            return end, units * step >> XY_SHIFT
    return None


def put_layers(img: np.ndarray, text: str, org: tuple[int, int], font: int, scale: float,
               layers: list[tuple[tuple[int, int, int], int]], constant: slice) -> None:
    """Each (colour, thickness) layer of `text` in turn, as cv2.putText would draw them one after the other,
    its `constant` part (a start, text[:n], or an end, text[n:]) stamped where it starts on a whole pixel."""
    at_start = constant.start is None
    bound = int(constant.stop if at_start else constant.start)
    split = whole_pixel_split(text, bound, 1 if at_start else len(text) - 1, font, scale)
    if split is None:
        for colour, thickness in layers:
            cv2.putText(img, text, org, font, scale, colour, thickness, cv2.LINE_AA)
        return
    end, shift = split
    head, tail, tail_org = text[:end], text[end:], (org[0] + shift, org[1])
    for colour, thickness in layers:  # glyph after glyph, as putText: the head's, then the tail's
        if at_start:
            put_text(img, head, org, font, scale, colour, thickness)
            cv2.putText(img, tail, tail_org, font, scale, colour, thickness, cv2.LINE_AA)
        else:
            cv2.putText(img, head, org, font, scale, colour, thickness, cv2.LINE_AA)
            put_text(img, tail, tail_org, font, scale, colour, thickness)

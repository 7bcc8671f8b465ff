"""Find a video call's participant grid in a frame (gallery mode, gallery.py).

Call apps draw camera tiles as same-sized rectangles on a plain background, so the pixels that
differ from the border's grey level form one connected region per tile. No such set of
rectangles = no grid, and facedetect falls back to plain face detection.

A camera's frame (searched once a second) is first looked at shrunk (by 2 at 640x480, by 4 at
1920x1080), where labelling its regions costs a quarter or less: the labelling at full size was
1.8 ms of the 2.4 ms a 640x480 frame's search took. Only a frame with at least two regions of a
tile's size and shape there is searched at full size, by the rules below on the exact full-size
regions: the tiles found are the full-size search's. (Labelling each such region again at full
size in its own box, not the whole frame, was slower on calls: a tile's solid part, shrunk, falls
short of its edges by a seventh of its height where a room shows under the face, so the boxes had
to grow to the whole frame.)
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]

MIN_TILES = 2
MIN_TILE_FRACTION = 0.004  # of the frame's area: a 10x10 grid's tiles are still above it
BACKGROUND_TOLERANCE = 10  # grey levels (and levels of each colour channel around a tile)
# A tile sits on the call's plain background: most of a line a few pixels around it has the
# background's colour, not only its grey level. A face's skin can have the grey level of the blue
# wall behind it: its eyes and brows, cut out by it, were two same-sized "tiles" (issue 21: in 25
# of the conversation clip's 400 frames at 2 FPS; the face in one became a tile's student), with
# 0-18 % of their ring the wall's colour; a call's tiles had 90-100 % (2 px out, MJPG-recorded
# 3x3 and 5x5 calls: its chroma blurs the tiles' edges a pixel or two).
RING_PX = 2
MIN_RING_ON_BACKGROUND = 0.5
# The shrunk search: the frame is halved, and halved again while it stays this wide (640x480:
# 320x240, 1920x1080: 480x270). A shrunk pixel is set only where every pixel it covers differs
# from the background, so a shrunk region lies inside one full-size region and never bridges the
# gap between two tiles. What is looked for there is looser than a tile: its solid part (the fill
# around the face) has holes, and may fall short of the tile's edges (a room under the face).
SEARCH_WIDTH = 480
MIN_SOLID_BOX = 0.25  # of the smallest tile's box
MIN_SOLID_FILL = 0.3  # of its own box (a tile: 0.6 at full size)
SOLID_SHAPES = (0.6, 3.6)  # width over height (a tile: 0.9 to 2.4)


def find_tiles(image: np.ndarray, full_size: bool = False, *, gray: np.ndarray | None = None) -> list[Box]:
    """The participant tiles, row by row; [] when the frame shows no grid. `full_size`: searched at
    full size at once, without the look at the shrunk frame (a stream that showed a call a moment
    ago: that look finds its tiles, and the full-size search follows anyway). `gray`: the frame's
    grey version, where the caller has made it already."""
    if gray is None:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    level = int(_background_colour(gray)[0])
    # 255 where a pixel has the background's grey level (within the tolerance), in one OpenCV pass.
    background = cv2.inRange(gray, level - BACKGROUND_TOLERANCE, level + BACKGROUND_TOLERANCE)
    if not full_size and not _may_hold_tiles(background):
        return []
    return _grid(image, _regions(background))


def _background_colour(image: np.ndarray) -> np.ndarray:
    """The commonest value of each channel along the frame's border (a call's plain background)."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    border = border.reshape(len(border), -1)  # a column a channel (one for a grey frame)
    return np.array([np.bincount(c, minlength=256).argmax() for c in border.T], dtype=np.int16)


def _on_background(image: np.ndarray, box: Box, colour: np.ndarray) -> bool:
    """Whether most of the line RING_PX around the box has the background's colour (each channel
    within BACKGROUND_TOLERANCE); the sides beyond the frame's edge do not count."""
    x, y, w, h = box
    height, width = image.shape[:2]
    x0, y0, x1, y1 = x - RING_PX, y - RING_PX, x + w - 1 + RING_PX, y + h - 1 + RING_PX
    xs, ys = slice(max(0, x0), min(width, x1 + 1)), slice(max(0, y0), min(height, y1 + 1))
    sides = [image[y0, xs] if y0 >= 0 else None, image[y1, xs] if y1 < height else None,
             image[ys, x0] if x0 >= 0 else None, image[ys, x1] if x1 < width else None]
    ring = np.concatenate([s.reshape(len(s), -1) for s in sides if s is not None] or [colour[None, :]])
    near = (np.abs(ring.astype(np.int16) - colour) <= BACKGROUND_TOLERANCE).all(axis=1)
    return float(near.mean()) >= MIN_RING_ON_BACKGROUND


def _foreground(background: np.ndarray) -> np.ndarray:
    """1 where a pixel differs from the background, 0 elsewhere (`background`: 255 on it)."""
    mask: np.ndarray = cv2.threshold(background, 0, 1, cv2.THRESH_BINARY_INV)[1]
    return mask


def _may_hold_tiles(background: np.ndarray) -> bool:
    """Whether the shrunk frame shows MIN_TILES regions that may be (the solid part of) a tile."""
    factor = 2
    while background.shape[1] // (2 * factor) >= SEARCH_WIDTH:
        factor *= 2
    height, width = background.shape[0] // factor, background.shape[1] // factor
    # INTER_AREA averages each factor x factor block exactly: 0 only where none of it is background.
    shrunk = cv2.resize(background[:height * factor, :width * factor], (width, height), interpolation=cv2.INTER_AREA)
    count, _, stats, _ = cv2.connectedComponentsWithStats(_foreground(shrunk), connectivity=4)
    w, h, area = (stats[1:count, i].astype(np.int64) for i in (cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT,
                                                               cv2.CC_STAT_AREA))
    box = w * h * factor ** 2
    frame_area = background.shape[0] * background.shape[1]
    ratio = w / h
    # Not larger than a tile can be: a region of the shrunk frame lies inside a full-size one.
    likely = ((box >= MIN_SOLID_BOX * MIN_TILE_FRACTION * frame_area) & (box <= 0.9 * frame_area)
              & (area >= MIN_SOLID_FILL * w * h) & (ratio >= SOLID_SHAPES[0]) & (ratio <= SOLID_SHAPES[1]))
    return int(np.count_nonzero(likely)) >= MIN_TILES


def _regions(background: np.ndarray) -> np.ndarray:
    """x, y, w, h, area of every region of the full-size frame (one row each)."""
    count, _, stats, _ = cv2.connectedComponentsWithStats(_foreground(background), connectivity=4)
    regions: np.ndarray = stats[1:count]
    return regions


def _grid(image: np.ndarray, regions: np.ndarray) -> list[Box]:
    """The tiles among the full-size regions (rows of x, y, w, h, area), row by row."""
    frame_area = image.shape[0] * image.shape[1]
    # Size, fill and shape of every region at once: a gallery's faces leave thousands of specks
    # (a 7x7 call: 5500), which a loop in Python took 10-19 ms a 1920x1080 frame to turn down.
    x, y, w, h, area = (regions[:, i].astype(np.int64) for i in range(5))
    box = w * h
    ratio = w / h
    shaped = ((box >= MIN_TILE_FRACTION * frame_area) & (box <= 0.9 * frame_area) & (area >= 0.6 * w * h)
              & (ratio >= 0.9) & (ratio <= 2.4))
    colour = _background_colour(image)
    candidates = [b for b in ((int(x[i]), int(y[i]), int(w[i]), int(h[i])) for i in np.flatnonzero(shaped))
                  if _on_background(image, b, colour)]
    if len(candidates) < MIN_TILES:
        return []
    # A grid's tiles share one size (within rounding); anything else is not a participant tile.
    median_w = float(np.median([c[2] for c in candidates]))
    median_h = float(np.median([c[3] for c in candidates]))
    tiles = [c for c in candidates if abs(c[2] - median_w) <= 0.1 * median_w and abs(c[3] - median_h) <= 0.1 * median_h]
    if len(tiles) < MIN_TILES:
        return []
    return sorted(tiles, key=lambda b: (round(b[1] / max(1, median_h / 2)), b[0]))

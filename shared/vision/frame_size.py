"""Frame sizes that keep the picture's shape.

WIDTH x HEIGHT (and RECORD_WIDTH x RECORD_HEIGHT) are a bound, not a size: a frame is scaled
down until it fits, never stretched and never scaled up, so a 16:9 webcam stays 16:9 and its
faces keep the proportions the head-pose rule measures. 0 on a side = no bound on that side.
"""

from __future__ import annotations

import cv2
import numpy as np

# Say so when the bound throws away more than this fraction of the source's pixels: small faces
# (a gallery, a class seen from the back) may then be too small to find.
BIG_DOWNSIZE = 0.5


def fit_within(width: int, height: int, bound_w: int, bound_h: int) -> tuple[int, int]:
    """The size (w, h) of a width x height frame scaled down, aspect kept, to fit the bound."""
    scale = 1.0
    if bound_w > 0 and width > bound_w:
        scale = min(scale, bound_w / width)
    if bound_h > 0 and height > bound_h:
        scale = min(scale, bound_h / height)
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def fit_image(image: np.ndarray, bound_w: int, bound_h: int) -> np.ndarray:
    """The image scaled down (aspect kept) to fit the bound; the image itself when it fits."""
    h, w = image.shape[:2]
    size = fit_within(w, h, bound_w, bound_h)
    if size == (w, h):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The image scaled (aspect kept) to fit `size` (w, h) exactly, centred on black bars: for a
    writer that takes one size whatever the frames are (a recording)."""
    h, w = image.shape[:2]
    if (w, h) == size:
        return image
    scale = min(size[0] / w, size[1] / h)
    rw, rh = max(1, min(size[0], round(w * scale))), max(1, min(size[1], round(h * scale)))
    small = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    canvas = np.zeros((size[1], size[0]) + image.shape[2:], image.dtype)
    x, y = (size[0] - rw) // 2, (size[1] - rh) // 2
    canvas[y:y + rh, x:x + rw] = small
    return canvas


def describe(native: tuple[int, int], bound_w: int, bound_h: int) -> tuple[str, str]:
    """(what `engagement check` says about the sizes, a warning or "") for a source of size `native`."""
    processed = fit_within(native[0], native[1], bound_w, bound_h)
    text = f"{native[0]}x{native[1]}, processed at {processed[0]}x{processed[1]}"
    if processed == native:
        return text + " (native)", ""
    kept = processed[0] * processed[1] / (native[0] * native[1])
    if kept < BIG_DOWNSIZE:
        return text, (f"WIDTH/HEIGHT {bound_w}x{bound_h} keeps {kept:.0%} of the source's pixels: small faces may "
                      "be missed; raise them, or 0 for the native size")
    return text, ""

"""Bus crops (uint8 BGR, any size) -> the tensor a model card asks for. numpy + OpenCV only."""

from __future__ import annotations

import cv2
import numpy as np

from shared.data.model_card import ModelCard


def resize_crops(crops: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., h, w, 3) uint8 -> (..., size_h, size_w, 3); untouched when already that size."""
    h, w = size
    if crops.shape[-3:-1] == (h, w):
        return crops
    flat = crops.reshape(-1, *crops.shape[-3:])
    # INTER_AREA when shrinking avoids aliasing; linear when enlarging.
    interp = cv2.INTER_AREA if flat.shape[1] > h else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(c, (w, h), interpolation=interp) for c in flat]) if len(flat) else \
        np.zeros((0, h, w, 3), np.uint8)
    return out.reshape(*crops.shape[:-3], h, w, 3)


def convert_colour(crops: np.ndarray, colour: str, channels: int) -> np.ndarray:
    """BGR crops -> rgb, bgr or gray (gray keeps a trailing channel axis of 1)."""
    if colour == "gray" or channels == 1:
        gray = crops.astype(np.float32) @ np.array([0.114, 0.587, 0.299], np.float32)  # BT.601, as cv2
        return gray[..., None]
    if colour == "rgb":
        return crops[..., ::-1]
    return crops


def prepare(crops: np.ndarray, card: ModelCard) -> np.ndarray:
    """Crops shaped (n, h, w, 3) (frame/multitask) or (n, length, h, w, 3) (sequence) -> float32 input."""
    crops = np.asarray(crops)
    want_ndim = 5 if card.kind == "sequence" else 4
    if crops.dtype != np.uint8 or crops.ndim != want_ndim or crops.shape[-1] != 3:
        raise ValueError(f"a {card.kind} model takes uint8 BGR crops shaped "
                         f"{'(n, length, h, w, 3)' if want_ndim == 5 else '(n, h, w, 3)'}, "
                         f"got {crops.dtype} {crops.shape}")
    if card.kind == "sequence" and crops.shape[1] != card.sequence_length:
        raise ValueError(f"sequence length {crops.shape[1]} != the card's {card.sequence_length}")
    x = resize_crops(crops, card.size)
    x = convert_colour(x, card.input.get("color", "rgb"), int(card.input.get("channels", 3)))
    return np.ascontiguousarray(card.preprocess(x.astype(np.float32)), dtype=np.float32)

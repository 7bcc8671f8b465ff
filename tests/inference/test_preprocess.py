"""Bus crops -> model input, per card: size, colour order, scaling (the edge must read as training did)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.inference.preprocess import prepare
from shared.data.model_card import ModelCard
from tests.inference.faces import astronaut_crop


def _card(kind: str = "frame", color: str = "rgb", channels: int = 3, pre: str = "mobilenet_v2",
          length: int = 1) -> ModelCard:
    return ModelCard(name="t", kind=kind, preprocessing=pre, heads=["boredom"],
                     input={"size": [64, 48], "channels": channels, "color": color, "sequence_length": length})


def test_rgb_card_gets_rgb_scaled_to_minus1_1():
    crop = astronaut_crop()
    x = prepare(crop[None], _card())
    expected = cv2.resize(crop, (48, 64), interpolation=cv2.INTER_AREA)[..., ::-1] / 127.5 - 1
    assert x.shape == (1, 64, 48, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], expected, atol=1e-5)


def test_bgr_and_gray_cards():
    crop = astronaut_crop()
    bgr = prepare(crop[None], _card(color="bgr", pre="none"))
    np.testing.assert_allclose(bgr[0], cv2.resize(crop, (48, 64), interpolation=cv2.INTER_AREA), atol=1e-4)
    gray = prepare(crop[None], _card(color="gray", channels=1, pre="unit"))
    reference = cv2.cvtColor(cv2.resize(crop, (48, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY) / 255
    assert gray.shape == (1, 64, 48, 1)
    np.testing.assert_allclose(gray[0, ..., 0], reference, atol=1 / 255)


def test_sequence_shapes_are_checked():
    card = _card(kind="sequence", length=3)
    crops = np.zeros((2, 3, 30, 30, 3), np.uint8)
    assert prepare(crops, card).shape == (2, 3, 64, 48, 3)
    with pytest.raises(ValueError, match="sequence length 2"):
        prepare(crops[:, :2], card)
    with pytest.raises(ValueError, match=r"\(n, length, h, w, 3\)"):
        prepare(crops[:, 0], card)

"""The overlay's constant texts stamped from tables (services/reporter/text_stamp.py) are the pixels OpenCV
draws: on real photos and on noise, at every frame size the overlay meets, in the corners and past the edges."""

from __future__ import annotations

import cv2
import msgspec
import numpy as np
import pytest
from skimage import data

from services.reporter import overlay, text_stamp
from shared.data.levels import LEVEL_LABELS
from shared.data.model_card import BASELINE_NOTE
from shared.data.running_totals import no_totals

TOTALS = msgspec.structs.replace(no_totals(), levels={"0": 3, "1": 5, "2": 0, "3": 1})
SIZES = [(480, 640), (720, 1280), (1080, 1920), (240, 320), (481, 641), (500, 200), (40, 60)]


def _drawn(img: np.ndarray, org: tuple[int, int], key: object, paint, extent) -> None:
    paint(img, org)  # what the overlay did before: OpenCV on the frame


def _frames(height: int, width: int) -> list[np.ndarray]:
    photo = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (width, height))
    noise = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    flat = np.full((height, width, 3), 255, np.uint8)  # white under the white note: the outline alone shows
    return [photo, noise, flat]


@pytest.mark.parametrize(("height", "width"), SIZES)
def test_a_stamped_overlay_is_the_drawn_one_pixel_for_pixel(monkeypatch, height, width):
    rng = np.random.default_rng(7)
    for frame in _frames(height, width):
        for recording in (False, True):
            box = [int(rng.integers(-30, width)), int(rng.integers(-30, height)), 104, 104]
            preds = [{"student": 2, "box": box, "level": int(rng.integers(4)), "probs": [0.25] * 4}]
            stamped = overlay.draw(frame, preds, preds, TOTALS, LEVEL_LABELS, recording=recording, baseline=True)
            with monkeypatch.context() as m:
                m.setattr(text_stamp, "draw", _drawn)
                drawn = overlay.draw(frame, preds, preds, TOTALS, LEVEL_LABELS, recording=recording, baseline=True)
            assert np.array_equal(stamped, drawn), (height, width, recording)
            assert not np.array_equal(drawn, frame)


def test_a_text_anywhere_on_the_frame_and_past_its_edges_is_the_drawn_text():
    """Stamped where the frame holds the text's box, drawn (OpenCV clips) where it does not: alike everywhere."""
    frame = _frames(480, 640)[0]
    for org in [(0, 0), (3, 12), (10, 468), (600, 470), (-5, 200), (620, 479), (300, 478), (10, 10)]:
        stamped, drawn = frame.copy(), frame.copy()
        overlay._constant_text(stamped, BASELINE_NOTE, org, (255, 255, 255), 0.45)
        overlay._text(drawn, BASELINE_NOTE, org, (255, 255, 255), 0.45)
        assert np.array_equal(stamped, drawn), org
    note = [stamp for key, stamp in text_stamp._stamps.items() if key[0] == BASELINE_NOTE and key[2] == 0.45]
    assert note and note[0].fits(frame, (10, 468))  # the stamp was used, not only the fallback


def test_the_stamps_kept_are_bounded():
    frame = _frames(240, 320)[1]
    for i in range(text_stamp.STAMPS_KEPT + 5):
        overlay._constant_text(frame.copy(), f"note {i}", (10, 100), (255, 255, 255))
    assert len(text_stamp._stamps) == text_stamp.STAMPS_KEPT

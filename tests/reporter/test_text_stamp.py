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
LARGER = msgspec.structs.replace(no_totals(), levels={"0": 1234, "1": 57, "2": 100, "3": 9})
SIZES = [(480, 640), (720, 1280), (1080, 1920), (240, 320), (481, 641), (500, 200), (40, 60)]


@pytest.fixture(autouse=True)
def fresh_stamps(monkeypatch):
    """Each test with no stamp made and none evicted yet (they are the process's)."""
    monkeypatch.setattr(text_stamp, "_stamps", type(text_stamp._stamps)())
    monkeypatch.setattr(text_stamp, "_evicted", set())


def _drawn(img: np.ndarray, org: tuple[int, int], key: object, paint, extent, grey: bool = False) -> None:
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
        for recording, totals in ((False, TOTALS), (True, LARGER)):
            box = [int(rng.integers(-30, width)), int(rng.integers(-30, height)), 104, 104]
            preds = [{"student": 2, "box": box, "level": int(rng.integers(4)), "probs": [0.25] * 4}]
            stamped = overlay.draw(frame, preds, preds, totals, LEVEL_LABELS, recording=recording, baseline=True)
            with monkeypatch.context() as m:
                m.setattr(text_stamp, "draw", _drawn)
                drawn = overlay.draw(frame, preds, preds, totals, LEVEL_LABELS, recording=recording, baseline=True)
            assert np.array_equal(stamped, drawn), (height, width, recording)
            assert not np.array_equal(drawn, frame)


def test_a_text_anywhere_on_the_frame_and_past_its_edges_is_the_drawn_text():
    """Stamped where the frame holds the text's box, drawn (OpenCV clips) where it does not: alike everywhere."""
    frame = _frames(480, 640)[0]
    for org in [(0, 0), (3, 12), (10, 468), (600, 470), (-5, 200), (620, 479), (300, 478), (10, 10)]:
        stamped, drawn = frame.copy(), frame.copy()
        text_stamp.new_frame()
        overlay._constant_text(stamped, BASELINE_NOTE, org, (255, 255, 255), 0.45)
        overlay._text(drawn, BASELINE_NOTE, org, (255, 255, 255), 0.45)
        assert np.array_equal(stamped, drawn), org
    note = [stamp for key, stamp in text_stamp._stamps.items() if key[0] == BASELINE_NOTE and key[2] == 0.45]
    assert note and note[0].fits(frame, (10, 468))  # the stamp was used, not only the fallback


BASELINE_LABELS = ["attentive", "partly attentive", "distracted", "looking away"]


# 481 lines: no glyph of the line starts on a whole pixel (a scale of 0.5010 in 1/65536): the line is drawn whole.
@pytest.mark.parametrize(("height", "width", "stamped_part"),
                         [(480, 640, True), (720, 1280, True), (1080, 1920, True), (481, 641, False), (300, 400, True)])
def test_a_running_count_is_the_drawn_line_for_every_count(height, width, stamped_part):
    """The level's name stamped and the count drawn after it: the line OpenCV draws whole, at any count."""
    frame = _frames(height, width)[0]
    k = overlay.size_factor(frame)
    split = 0
    for i, name in enumerate([*LEVEL_LABELS, *BASELINE_LABELS, "x", "Aufmerksam (très)"]):
        org = (round(10 * k), round((20 + 20 * (i % 4)) * k))
        colour = overlay.LEVEL_COLOURS[i % 4]
        split += text_stamp.whole_pixel_split(f"{name}: ", len(name) + 2, 1, overlay.FONT, 0.5 * k) is not None
        for count in [0, 1, 7, 10, 42, 99, 100, 512, 1000, 12345, 987654]:
            stamped, drawn = frame.copy(), frame.copy()
            text_stamp.new_frame()
            overlay._count_line(stamped, name, count, org, colour)
            overlay._text(drawn, f"{name}: {count}", org, colour)
            assert np.array_equal(stamped, drawn), (name, count)
    assert bool(split) == stamped_part  # the stamps were used where they can be, not only the fallback


@pytest.mark.parametrize(("height", "width"), [(480, 640), (1080, 1920), (300, 400)])
def test_a_face_label_is_the_drawn_label_for_every_student_and_level(height, width):
    """The student's id drawn and the level's words stamped after it: the label OpenCV draws whole."""
    frame = _frames(height, width)[1]
    rng = np.random.default_rng(height)
    for student in [1, 2, 9, 10, 11, 25, 49, 100, 1234]:
        for level, words in enumerate(BASELINE_LABELS):
            org = (int(rng.integers(-40, width)), int(rng.integers(0, height + 20)))
            colour = overlay.LEVEL_COLOURS[level]
            drawn = frame.copy()
            overlay._text(drawn, f"id {student}: {level} {words}", org, colour)
            for _ in range(4):  # frame after frame: the label's stamps made one a frame, then used
                stamped = frame.copy()
                text_stamp.new_frame()
                overlay._face_label(stamped, student, level, words, org, colour)
                assert np.array_equal(stamped, drawn), (student, level, org)
    scale = 0.5 * overlay.size_factor(frame)
    stamped_texts = {key[1] for key in text_stamp._stamps if key[0] == "layer" and key[3] == scale}
    assert not any(t.startswith("id ") for t in stamped_texts)  # an id is drawn: a stamp each would not pay
    assert any(words.endswith(t) for t in stamped_texts for words in BASELINE_LABELS)  # a level's words


def test_the_stamps_kept_are_bounded():
    frame = _frames(240, 320)[1]
    for i in range(text_stamp.STAMPS_KEPT + 5):
        text_stamp.new_frame()
        overlay._constant_text(frame.copy(), f"note {i}", (10, 100), (255, 255, 255))
    assert len(text_stamp._stamps) == text_stamp.STAMPS_KEPT


def test_a_text_whose_stamp_made_room_for_others_is_drawn_from_then_on(monkeypatch):
    """Never made twice: more texts than the bound would otherwise cost 256 drawings each time round."""
    monkeypatch.setattr(text_stamp, "STAMPS_KEPT", 2)
    made = []
    real = text_stamp.TextStamp
    monkeypatch.setattr(text_stamp, "TextStamp", lambda *args: made.append(1) or real(*args))
    frame = _frames(240, 320)[1]
    for _ in range(3):
        for i in range(3):
            stamped, drawn = frame.copy(), frame.copy()
            text_stamp.new_frame()
            overlay._constant_text(stamped, f"note {i}", (10, 100), (255, 255, 255))
            overlay._text(drawn, f"note {i}", (10, 100), (255, 255, 255))
            assert np.array_equal(stamped, drawn)
    assert len(made) == 3  # one stamp a text, the first one evicted and drawn since


def test_a_frame_makes_one_stamp_at_most_and_is_the_drawn_frame_meanwhile(monkeypatch):
    """A class's first frames draw what has no stamp yet: they never wait for all of their stamps at once."""
    frame = _frames(480, 640)[0]
    preds = [{"student": 3, "box": [200, 150, 104, 104], "level": 2, "probs": [0.25] * 4}]
    made = []
    for _ in range(12):
        before = len(text_stamp._stamps)
        stamped = overlay.draw(frame, preds, preds, LARGER, LEVEL_LABELS, baseline=True)
        made.append(len(text_stamp._stamps) - before)
        with monkeypatch.context() as m:
            m.setattr(text_stamp, "draw", _drawn)
            assert np.array_equal(stamped, overlay.draw(frame, preds, preds, LARGER, LEVEL_LABELS, baseline=True))
    assert max(made) == 1 and sum(made) >= 8  # the note, four names and a label's words, each layer in turn

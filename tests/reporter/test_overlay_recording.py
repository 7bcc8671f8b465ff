"""Overlay pixels and recordings, on a real photo (scikit-image's astronaut), decoded back by OpenCV."""

from __future__ import annotations

import cv2
import msgspec
import numpy as np
import pytest
from skimage import data

from services.reporter import overlay
from services.reporter.recording import RECORDING_ERRORS, Recorder
from shared.data.levels import LEVEL_LABELS
from shared.data.running_totals import no_totals
from tools.footage import read_video


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (640, 480))


BOX = [180, 40, 160, 180]
TOTALS = msgspec.structs.replace(no_totals(), levels={"0": 3, "1": 5, "2": 0, "3": 1})


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


def test_boxes_and_labels_change_pixels_where_the_boxes_are(photo):
    preds = [{"student": 3, "box": BOX, "level": 1, "probs": [0.1, 0.7, 0.1, 0.1]}]
    out = overlay.draw(photo, preds, preds, TOTALS, LEVEL_LABELS)
    changed = _changed(out, photo)
    x, y, w, h = BOX
    # The box's edges are drawn ...
    assert changed[y, x:x + w].mean() > 0.9 and changed[y + h, x:x + w].mean() > 0.9
    assert changed[y:y + h, x].mean() > 0.9
    # ... the face inside the box is left as it was ...
    assert not changed[y + 10:y + h - 10, x + 10:x + w - 10].any()
    # ... the label sits above the box, and the photo's bottom right is untouched.
    assert changed[max(0, y - 20):y, x:x + w].any()
    assert not changed[300:470, 400:630].any()
    assert photo is not out and not _changed(photo, photo).any()


def test_no_face_found_is_drawn_on_an_empty_frame_only(photo):
    empty = overlay.draw(photo, [], [], TOTALS, LEVEL_LABELS)
    with_face = overlay.draw(photo, [{"student": 1, "box": BOX, "conf": 1.0}], [], TOTALS, LEVEL_LABELS)
    x0, y0 = overlay.no_face_origin(photo)
    region = (slice(y0 - 25, y0 + 5), slice(x0, x0 + 230))
    assert _changed(empty, photo)[region].mean() > 0.05
    # With a face (no prediction yet: grey box), that region stays as it was outside the box.
    assert _changed(with_face, photo)[y0 - 25:y0 + 5, 360:x0 + 230].sum() == 0


def test_recording_and_baseline_notes_are_visible(photo):
    plain = overlay.draw(photo, [], [], TOTALS, LEVEL_LABELS)
    rec = overlay.draw(photo, [], [], TOTALS, LEVEL_LABELS, recording=True, baseline=True)
    diff = _changed(rec, plain)
    assert diff[5:30, 520:640].any()  # "Recording", top right
    assert diff[450:480, 0:400].any()  # the baseline note, bottom left


def test_recording_writes_a_file_opencv_reads_back(photo, tmp_path):
    rec = Recorder(str(tmp_path / "rec"), "", "MJPG", 2.0, 320, 240, min_free_bytes=0)
    for i in range(7):
        totals = msgspec.structs.replace(TOTALS, levels={"0": i})
        assert rec.write(overlay.draw(photo, [], [], totals, LEVEL_LABELS, recording=True))
    rec.close()
    assert rec.path.name.startswith("infer") and rec.path.suffix == ".avi"
    frames, fps = read_video(rec.path)
    assert fps == 2.0
    assert len(frames) == 7
    assert frames[0].shape == (240, 320, 3)


def test_a_full_disk_stops_recording_with_a_metric_and_no_exception(photo, tmp_path):
    before = RECORDING_ERRORS.labels("disk_full")._value.get()
    # "Full" = less free space than required: the real free-space check on the real disk.
    rec = Recorder(str(tmp_path), "x.avi", "MJPG", 2.0, 640, 480, min_free_bytes=1 << 62)
    assert rec.write(photo) is False
    assert rec.write(photo) is False
    assert not rec.active
    assert RECORDING_ERRORS.labels("disk_full")._value.get() == before + 1
    assert not (tmp_path / "x.avi").exists()


def test_a_frame_of_another_shape_is_letterboxed_into_the_recording_never_stretched(tmp_path):
    # A window resized mid-class: the writer keeps its size, the picture keeps its shape.
    rec = Recorder(str(tmp_path), "x.avi", "MJPG", 2.0, 640, 480, min_free_bytes=0)
    wide = np.zeros((720, 1280, 3), np.uint8)
    cv2.circle(wide, (640, 360), 300, (255, 255, 255), -1)
    assert rec.write(wide)
    rec.close()
    ok, frame = cv2.VideoCapture(str(rec.path)).read()
    assert ok and frame.shape == (480, 640, 3)
    ys, xs = np.nonzero(frame[:, :, 0] > 128)
    assert abs((xs.max() - xs.min()) - (ys.max() - ys.min())) <= 4  # still a circle (squashed: 33 % wider)
    assert frame[:50].max() < 40 and frame[-50:].max() < 40  # bars above and below


def test_the_overlay_grows_with_a_frame_kept_at_its_own_size():
    # A 1080-line frame is shown as large as a 480-line one on the live page: its labels must be too.
    def totals_height(frame: np.ndarray) -> int:
        drawn = overlay.draw(frame, [], [], TOTALS, LEVEL_LABELS)
        rows = np.nonzero(_changed(drawn, frame)[: frame.shape[0] // 3, : frame.shape[1] // 4].any(axis=1))[0]
        return int(rows.max() - rows.min())

    small, large = np.full((480, 640, 3), 128, np.uint8), np.full((1080, 1920, 3), 128, np.uint8)
    assert totals_height(large) >= 2 * totals_height(small)

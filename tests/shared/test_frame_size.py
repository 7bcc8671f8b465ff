"""WIDTH x HEIGHT are a bound that keeps the picture's shape (issue 21), and `engagement check`
says the source's native size and the size processed, on real video files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from services.launcher import checks
from shared.vision.frame_size import describe, fit_image, fit_within, letterbox
from tests.support.run_settings import run_settings_with


@pytest.mark.parametrize("native, bound, want", [
    ((1280, 720), (640, 480), (640, 360)),  # 16:9 stays 16:9 (it was squashed to 640x480)
    ((1920, 1080), (1920, 1080), (1920, 1080)),
    ((640, 480), (1920, 1080), (640, 480)),  # never scaled up
    ((1920, 1440), (1920, 1080), (1440, 1080)),  # a 4:3 camera bounded by the height
    ((3840, 2160), (0, 0), (3840, 2160)),  # 0 = native
    ((3840, 2160), (1280, 0), (1280, 720)),  # one side bounded
])
def test_the_bound_scales_down_keeping_the_aspect(native, bound, want):
    got = fit_within(*native, *bound)
    assert got == want
    assert abs(got[0] / got[1] - native[0] / native[1]) < 0.01


def test_an_image_that_fits_is_left_as_it_is_and_a_letterbox_keeps_the_picture_s_shape():
    image = np.zeros((720, 1280, 3), np.uint8)
    cv2.circle(image, (640, 360), 200, (255, 255, 255), -1)  # a round thing stays round
    assert fit_image(image, 1920, 1080) is image
    boxed = letterbox(image, (640, 480))
    assert boxed.shape == (480, 640, 3)
    ys, xs = np.nonzero(boxed[:, :, 0] > 128)
    assert abs((xs.max() - xs.min()) - (ys.max() - ys.min())) <= 2  # a circle, not an ellipse
    assert boxed[:59].max() == 0 and boxed[421:].max() == 0  # black bars above and below (60 px each)


def _video(path, size: tuple[int, int]) -> str:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    for i in range(3):
        writer.write(np.full((size[1], size[0], 3), 40 * i, np.uint8))
    writer.release()
    return str(path)


def test_check_says_the_native_size_and_the_size_processed(tmp_path):
    wide = _video(tmp_path / "wide.avi", (1920, 1080))
    result = checks._source(checks.Context(run_settings_with(source=wide)))  # WIDTH, HEIGHT at their defaults
    assert result.ok and not result.warning
    assert "1920x1080, processed at 1920x1080 (native)" in result.detail
    # A small bound keeps the aspect, and says that it throws most of the picture away.
    result = checks._source(checks.Context(run_settings_with(source=wide, width=640, height=480)))
    assert result.ok and result.warning, result.detail
    assert "1920x1080, processed at 640x360" in result.detail and "small faces may be missed" in result.detail
    assert describe((640, 480), 1920, 1080) == ("640x480, processed at 640x480 (native)", "")

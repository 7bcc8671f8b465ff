"""shared/vision/jpeg_info.py: a JPEG's size and tables read from its header, on JPEGs OpenCV writes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from shared.vision.jpeg_info import jpeg_info


def _jpeg(width: int, height: int, *params: int, gray: bool = False) -> bytes:
    rng = np.random.default_rng(7)
    image = rng.integers(0, 255, (height, width) if gray else (height, width, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image, list(params))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("width,height,params,components", [
    (640, 480, (), 3),
    (1920, 1080, (cv2.IMWRITE_JPEG_PROGRESSIVE, 1), 3),  # SOF2
    (333, 77, (cv2.IMWRITE_JPEG_OPTIMIZE, 1), 3),
])
def test_the_size_and_tables_of_a_jpeg_come_from_its_header(width, height, params, components):
    info = jpeg_info(_jpeg(width, height, *params))
    assert info is not None
    assert (info.width, info.height, info.components, info.huffman_tables) == (width, height, components, True)


def test_a_grey_jpeg_and_a_numpy_buffer_are_read_too():
    data = _jpeg(50, 40, gray=True)
    info = jpeg_info(np.frombuffer(data, np.uint8))
    assert info is not None and (info.width, info.height, info.components) == (50, 40, 1)


@pytest.mark.parametrize("wreck", [
    lambda d: d[:300],  # cut before its scan
    lambda d: bytes(600) + d[600:],  # its start zeroed (a damaged file's frame)
    lambda d: b"\xff\xd8\xff\xd9" + d[2:],  # ends before any frame header
    lambda d: d[:2] + b"\x00" + d[3:],  # no marker where one must be
    lambda d: b"not a jpeg at all",
    lambda d: b"",
])
def test_what_is_not_a_whole_jpeg_header_reads_as_none(wreck):
    assert jpeg_info(wreck(_jpeg(64, 48))) is None


def test_a_jpeg_without_huffman_tables_says_so():
    data = bytearray(_jpeg(64, 48))
    scan = data.find(b"\xff\xda")
    while 0 <= (dht := data.find(b"\xff\xc4", 0, scan)):
        data[dht + 1] = 0xFE  # each tables' segment turned into a comment
    info = jpeg_info(bytes(data))
    assert info is not None and not info.huffman_tables

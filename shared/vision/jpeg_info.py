"""What a JPEG says about itself before it is decoded: its size and whether it carries its own tables.

A source that delivers JPEG frames (an MJPEG file or stream) can put them on the bus as they are,
decoded once where they are used (services/capture). The header says the frame's size, and a
JPEG without Huffman tables (some cameras' MJPEG leaves the standard ones out: FFmpeg adds them,
a still-image decoder does not) cannot travel as it is. Reading the markers up to the scan costs
microseconds; decoding costs a millisecond a 640x480 frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SOI, _SOS, _DHT, _EOI = 0xD8, 0xDA, 0xC4, 0xD9
# Start-of-frame markers: C0-CF except C4 (DHT), C8 (JPG, reserved) and CC (DAC).
_SOF = frozenset(range(0xC0, 0xD0)) - {_DHT, 0xC8, 0xCC}
_STANDALONE = frozenset(range(0xD0, 0xD8)) | {0x01}  # RSTn and TEM: no length follows


@dataclass(frozen=True)
class JpegInfo:
    width: int
    height: int
    components: int
    huffman_tables: bool  # a DHT segment before the scan


def jpeg_info(data: bytes | memoryview | np.ndarray) -> JpegInfo | None:
    """The JPEG's size, colour components and whether it carries Huffman tables; None when `data`
    is not a JPEG whose header reaches its first scan (garbage, a truncated or wrecked frame)."""
    buf = np.ascontiguousarray(data, np.uint8).reshape(-1).data if isinstance(data, np.ndarray) else memoryview(data)
    if buf.format != "B":
        buf = buf.cast("B")
    if len(buf) < 4 or buf[0] != 0xFF or buf[1] != _SOI:
        return None
    size: tuple[int, int, int] | None = None
    tables = False
    i = 2
    while i + 4 <= len(buf):
        if buf[i] != 0xFF:
            return None
        marker = buf[i + 1]
        if marker == 0xFF:  # fill bytes before a marker
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker == _EOI:
            return None
        length = buf[i + 2] << 8 | buf[i + 3]
        if length < 2 or i + 2 + length > len(buf):
            return None
        if marker in _SOF and length >= 8:
            height, width = buf[i + 5] << 8 | buf[i + 6], buf[i + 7] << 8 | buf[i + 8]
            size = (width, height, buf[i + 9])
        elif marker == _DHT:
            tables = True
        elif marker == _SOS:
            if size is None or size[0] == 0 or size[1] == 0:
                return None
            return JpegInfo(size[0], size[1], size[2], tables)
        i += 2 + length
    return None

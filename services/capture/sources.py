"""Video sources behind one interface: a file (media timestamps) or a live camera/stream.

A `FileSource` reports each frame's own timestamp, counts corrupt frames and skips them;
a `LiveSource` (webcam index or RTSP/HTTP URL) has no media time. Both wrap
cv2.VideoCapture; reconnecting a live source is the capture service's job.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from shared.vision.jpeg_info import jpeg_info
from shared.vision.screen import ScreenError, ScreenGrabber, open_camera, source_kind

log = logging.getLogger(__name__)

# A run of this many unreadable frames in a row means the file is over (or beyond saving).
CORRUPT_RUN_LIMIT = 25
STREAM_TIMEOUT_MS = 5000
# Containers' names for motion JPEG: each frame a JPEG of its own, which can travel as it is.
MJPEG_FOURCCS = frozenset({"MJPG", "mjpg", "mjpa", "jpeg", "JPEG", "AVRn", "dmb1"})


class SourceError(RuntimeError):
    """The source cannot be opened or read at all."""


@dataclass
class Frame:
    image: np.ndarray | None  # BGR pixels; None while the source's own JPEG (`jpeg`) stands for them
    t_media: float | None  # seconds into the file; None for live sources
    index: int  # frame number within the source (files), or count since open (live)
    captured_at: float = field(default_factory=time.time)  # wall-clock time it was read
    jpeg: np.ndarray | None = None  # the frame as the source compressed it, when kept (FileSource keep_jpeg)
    jpeg_size: tuple[int, int] = (0, 0)  # its width and height, from its header

    def pixels(self) -> np.ndarray | None:
        """The frame's BGR pixels, the kept JPEG decoded on first use; None when it does not decode."""
        if self.image is None and self.jpeg is not None:
            self.image = cv2.imdecode(self.jpeg, cv2.IMREAD_COLOR)
        return self.image


classify = source_kind  # the same rule as `engagement check` (shared/vision/screen.py)


class FileSource:
    """Frames of a video file in order, each with the file's own timestamp."""

    live = False

    def __init__(self, path: str, keep_jpeg: bool = False) -> None:
        """`keep_jpeg`: a motion-JPEG file's frames are read as the JPEGs they are (Frame.jpeg), not
        decoded here: the capture sends them on as they are, and the one decode is facedetect's. A file
        whose JPEGs cannot travel alone (no Huffman tables, a size other than the container's) is
        decoded as any other."""
        self.path = path
        if not Path(path).is_file():
            raise SourceError(f"video file {path} does not exist")
        self.cap = cv2.VideoCapture(path)
        if not self.cap.isOpened():
            raise SourceError(f"cannot open {path}: not a video OpenCV can decode")
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 0.0
        count = self.cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if count and count > 0 else None
        self.index = -1  # of the last frame read or skipped
        self.corrupt = 0  # frames skipped because they could not be decoded
        self._last_t = -1.0
        self.size = (int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        # Raw mode hands over each packet as it is in the file (OpenCV's FFmpeg backend: CAP_PROP_FORMAT -1).
        self.jpeg = keep_jpeg and self._jpeg_travels() and bool(self.cap.set(cv2.CAP_PROP_FORMAT, -1))

    def _jpeg_travels(self) -> bool:
        """Whether the file is motion JPEG whose first frame is a whole JPEG of the container's size, with
        its own tables, that decodes alone: looked at through a second reader, so this one starts clean."""
        fourcc = int(self.cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("latin-1")
        if fourcc not in MJPEG_FOURCCS:
            return False
        probe = cv2.VideoCapture(self.path)
        try:
            if not probe.set(cv2.CAP_PROP_FORMAT, -1) or not probe.grab():
                return False
            ok, packet = probe.retrieve()
        finally:
            probe.release()
        info = jpeg_info(packet) if ok and packet is not None else None
        if info is None or not info.huffman_tables or (info.width, info.height) != self.size:
            return False
        image = cv2.imdecode(packet, cv2.IMREAD_COLOR)
        return image is not None and image.shape[:2] == (info.height, info.width)

    def _timestamp(self) -> float:
        t = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        # Some containers report no or non-increasing times; fall back to index / rate.
        if (t <= self._last_t or (t == 0.0 and self.index > 0)) and self.fps > 0:
            t = self.index / self.fps
        self._last_t = t
        return t

    def read(self, wanted_from: float = 0.0) -> Frame | None:
        """The next decodable frame at or after `wanted_from` seconds of media, or None at the end of
        the file. The frames before it are grabbed, never turned into pixels: a 30 FPS file sampled at
        2 FPS paid for 15 conversions (and, for intra-coded files, decodes) a frame it kept."""
        pending = 0  # failures not yet known to be corrupt frames (they may be the end)
        while True:
            self.index += 1
            ok = self.cap.grab()
            if ok and self._timestamp() + 1e-6 < wanted_from:
                pending = self._said_corrupt(pending)  # read past: a frame the sampling skips
                continue
            frame = self._retrieve() if ok else None
            if frame is not None:
                self._said_corrupt(pending)
                return frame
            pending += 1
            at_end = self.frame_count is not None and self.index + 1 >= self.frame_count
            if at_end or pending >= CORRUPT_RUN_LIMIT:
                break
        if self.frame_count is not None and self.index + 1 < self.frame_count:
            # Gave up inside the file: the rest is unreadable.
            self.corrupt += pending
            log.warning("gave up on %s after %d unreadable frames in a row", self.path, pending)
        return None

    def _retrieve(self) -> Frame | None:
        """The frame grabbed last, decoded, or as its JPEG (self.jpeg); None when it is unreadable (a JPEG whose
        header does not reach its scan or has no tables of its own: what cannot decode where it is sent)."""
        image = self.cap.retrieve()[1]
        if image is None or not image.size:
            return None
        if not self.jpeg:
            return Frame(image, self._last_t, self.index)
        packet = image.reshape(-1)
        info = jpeg_info(packet)
        if info is None or not info.huffman_tables:
            return None
        return Frame(None, self._last_t, self.index, jpeg=packet, jpeg_size=(info.width, info.height))

    def _said_corrupt(self, pending: int) -> int:
        """The unreadable frames before this readable one counted and said; no pending left."""
        if pending:
            self.corrupt += pending
            log.warning("skipped %d corrupt frame(s) before frame %d of %s", pending, self.index, self.path)
        return 0

    def release(self) -> None:
        self.cap.release()


class LiveSource:
    """A webcam (index) or network stream (URL); read() returns None when it drops out."""

    live = True

    def __init__(self, source: str) -> None:
        self.source = source
        if source_kind(source) == "camera":
            self.cap = open_camera(source)
        else:
            # Bounded open/read waits, so a stalled stream counts as a drop-out (and a stop
            # is noticed) within seconds instead of FFmpeg's default 30 s.
            self.cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG,
                                        [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS,
                                         cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS])
        if not self.cap.isOpened():
            self.cap.release()
            raise SourceError(f"cannot open {source}")
        self.index = -1
        self.corrupt = 0
        self._grabbed_at = 0.0

    def grab(self) -> bool:
        """The next frame taken from the driver (or stream), not yet turned into pixels; False when
        the source dropped out. Every frame is grabbed, so the driver's buffer stays fresh."""
        if not self.cap.grab():
            return False
        self.index += 1
        self._grabbed_at = time.time()
        return True

    def retrieve(self) -> Frame | None:
        """The frame last grabbed, decoded: only those sent pay for it (a 30 FPS webcam sampled at
        2 FPS decoded 15 frames a frame sent); None when it cannot be decoded (a drop-out)."""
        ok, image = self.cap.retrieve()
        if not ok or image is None or image.size == 0:
            return None
        return Frame(image, None, self.index, self._grabbed_at)

    def read(self) -> Frame | None:
        return self.retrieve() if self.grab() else None

    def release(self) -> None:
        self.cap.release()


class ScreenSource:
    """A monitor, region or window (shared/vision/screen.py), paced at `fps` by the grabber itself."""

    live = True

    def __init__(self, source: str, fps: float = 0.0) -> None:
        try:
            self.grabber = ScreenGrabber(source, fps)
        except ScreenError as exc:
            raise SourceError(str(exc)) from None
        self.index = -1
        self.corrupt = 0

    @property
    def closed(self) -> bool:  # the window went away: the stream is over, not dropped out
        return self.grabber.closed

    @property
    def moves(self) -> int:
        return self.grabber.moves

    def read(self) -> Frame | None:
        image = self.grabber.grab()
        if image is None:
            return None
        self.index += 1
        return Frame(image, None, self.index)

    def release(self) -> None:
        self.grabber.release()

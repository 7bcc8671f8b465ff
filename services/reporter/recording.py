"""Recording of the overlaid video (only when RECORD is set: privacy by default).

The file is written with OpenCV's VideoWriter at a fixed size and frame rate, as the
reference system did (`-c MJPG -fps 2 -w 640 -hg 480`). VideoWriter does not report a
failed write, so before each frame the free space of the target disk is checked: below
RECORD_MIN_FREE_BYTES recording stops (log + metric) and the service goes on.
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from prometheus_client import Counter

from shared.vision.frame_size import letterbox

RECORDED_FRAMES = Counter("engagement_recorded_frames_total", "Frames written to the recording")
RECORDING_ERRORS = Counter("engagement_recording_errors_total", "Recording failures; recording stops",
                           ["reason"])

log = logging.getLogger("reporter.recording")


def default_filename(now: datetime | None = None) -> str:
    return f"infer{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}.avi"


class Recorder:
    def __init__(self, folder: str, filename: str, codec: str, fps: float, width: int, height: int,
                 min_free_bytes: int) -> None:
        self.path = Path(folder) / (filename or default_filename())
        self.codec, self.fps, self.size = codec, float(fps), (int(width), int(height))
        self.min_free = int(min_free_bytes)
        self.writer: cv2.VideoWriter | None = None
        self.failed = False
        self.frames = 0
        self.session = ""  # whose class this recording is

    @property
    def active(self) -> bool:
        return not self.failed

    def _fail(self, reason: str, detail: str) -> None:
        RECORDING_ERRORS.labels(reason).inc()
        log.error("recording to %s stopped (%s): %s; the service goes on", self.path, reason, detail)
        self.failed = True
        self.close()

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._fail("open_failed", str(exc))
            return
        if len(self.codec) != 4:
            self._fail("bad_codec", f"codec {self.codec!r} is not a FourCC")
            return
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter.fourcc(*self.codec), self.fps, self.size)
        if not self.writer.isOpened():
            self._fail("open_failed", f"OpenCV cannot write {self.codec} to {self.path}")
            return
        log.info("recording to %s (%s, %.1f fps, %dx%d)", self.path, self.codec, self.fps, *self.size)

    def write(self, img: np.ndarray) -> bool:
        """Write one frame; False once recording has stopped."""
        if self.failed:
            return False
        free = shutil.disk_usage(self.path.parent if self.path.parent.exists() else ".").free
        if free < self.min_free:
            self._fail("disk_full", f"{free} bytes free, below {self.min_free}")
            return False
        if self.writer is None:
            self._open()
        if self.failed or self.writer is None:  # (a writer that failed to open is left None)
            return False
        # A writer takes one size: a frame of another shape (a resized window) is letterboxed, never stretched.
        img = letterbox(img, self.size)
        try:
            self.writer.write(img)
        except cv2.error as exc:
            self._fail("write_failed", str(exc))
            return False
        self.frames += 1
        RECORDED_FRAMES.inc()
        return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            log.info("recording %s closed after %d frames", self.path, self.frames)

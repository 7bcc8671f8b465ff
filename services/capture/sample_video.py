"""A test video with real faces: the astronaut from scikit-image, pasted on a plain background.

`engagement make-sample --out sample.avi [--seconds 20] [--faces 1] [--fps 30]` writes a
640x480 MJPG .avi (decodes with every OpenCV build and ffmpeg). The face drifts a little
so the tracker has work to do, and leaves the frame for stretches so "No Face Found",
eviction and re-identification are exercised. `make_sample_video` returns what it wrote,
so tests derive their expectations from the video instead of hard-coding them.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 480
# Region around the astronaut's face in skimage.data.astronaut() (res10 finds the face at
# x=179, y=57, w=92, h=120 with confidence 0.99999); the margin keeps the detector happy.
FACE_REGION = (125, 10, 200, 220)  # x, y, w, h
# Fractions of the video during which no face is in the frame.
ABSENT_STRETCHES = ((0.30, 0.45), (0.70, 0.80))


def astronaut_face() -> np.ndarray:
    """The astronaut's face with some margin, as a BGR image."""
    from skimage import data

    x, y, w, h = FACE_REGION
    return cv2.cvtColor(data.astronaut()[y:y + h, x:x + w], cv2.COLOR_RGB2BGR)


def face_present(t: float, seconds: float) -> bool:
    frac = t / seconds if seconds else 0.0
    return not any(start <= frac < end for start, end in ABSENT_STRETCHES)


def _background() -> np.ndarray:
    # A soft vertical gradient: featureless, so nothing but the pasted faces looks like a face.
    ramp = np.linspace(90, 160, HEIGHT, dtype=np.float32)[:, None, None]
    tint = np.array([1.0, 0.95, 0.9], dtype=np.float32)[None, None, :]
    return np.broadcast_to(ramp * tint, (HEIGHT, WIDTH, 3)).astype(np.uint8).copy()


def _grid(faces: int) -> tuple[int, int]:
    cols = math.ceil(math.sqrt(faces * WIDTH / HEIGHT))
    rows = math.ceil(faces / cols)
    return cols, rows


def _layout(faces: int, face: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Scale the face to fit a grid cell; return it and each cell's top-left corner."""
    cols, rows = _grid(faces)
    cell_w, cell_h = WIDTH // cols, HEIGHT // rows
    fh, fw = face.shape[:2]
    # Leave room in each cell for the drift; one face alone stays at its natural size.
    scale = min(1.0, (cell_w - 24) / fw, (cell_h - 24) / fh)
    scaled = cv2.resize(face, (int(fw * scale), int(fh * scale)), interpolation=cv2.INTER_AREA)
    sh, sw = scaled.shape[:2]
    corners = []
    for i in range(faces):
        r, c = divmod(i, cols)
        corners.append((c * cell_w + (cell_w - sw) // 2, r * cell_h + (cell_h - sh) // 2))
    return scaled, corners


def render_frame(t: float, seconds: float, faces: int, face: np.ndarray | None = None,
                 amplitude: int = 10) -> np.ndarray:
    """Frame at time t: the background, plus `faces` drifting faces unless in an absent stretch."""
    frame = _background()
    if faces <= 0 or not face_present(t, seconds):
        return frame
    scaled, corners = _layout(faces, astronaut_face() if face is None else face)
    sh, sw = scaled.shape[:2]
    for i, (x, y) in enumerate(corners):
        # Slow drift (period 4 s), out of phase per face: moves, but stays inside its cell.
        dx = int(amplitude * math.sin(2 * math.pi * t / 4.0 + i))
        dy = int(amplitude / 2 * math.cos(2 * math.pi * t / 4.0 + i))
        x0 = min(max(0, x + dx), WIDTH - sw)
        y0 = min(max(0, y + dy), HEIGHT - sh)
        frame[y0:y0 + sh, x0:x0 + sw] = scaled
    return frame


def make_sample_video(path: str | Path, seconds: float = 20.0, faces: int = 1, fps: float = 30.0,
                      codec: str = "MJPG") -> dict[str, Any]:
    """Write the sample video; return what was written (frames, which frames have faces, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path} with codec {codec}")
    face = astronaut_face()
    frames = int(round(seconds * fps))
    present = []
    try:
        for i in range(frames):
            t = i / fps
            present.append(faces > 0 and face_present(t, seconds))
            writer.write(render_frame(t, seconds, faces, face))
    finally:
        writer.release()
    per_second: dict[int, int] = {}
    for i, p in enumerate(present):
        per_second[int(i / fps)] = per_second.get(int(i / fps), 0) + int(p)
    return {
        "path": str(path), "frames": frames, "fps": fps, "seconds": frames / fps,
        "width": WIDTH, "height": HEIGHT, "faces": faces,
        "present": present,  # per frame: are the faces in it?
        "frames_with_faces": sum(present),
        "frames_with_faces_per_second": per_second,
        "absent_stretches": [(a * seconds, b * seconds) for a, b in ABSENT_STRETCHES],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engagement make-sample",
                                     description="Write a 640x480 MJPG video with real faces "
                                                 "(scikit-image's astronaut) that come and go.")
    parser.add_argument("--out", required=True, help="output .avi path")
    parser.add_argument("--seconds", type=float, default=20.0, help="length (default 20)")
    parser.add_argument("--faces", type=int, default=1, help="faces per frame (default 1)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate of the file (default 30)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.fps <= 0 or args.faces < 0:
        parser.error("--seconds and --fps must be positive, --faces at least 0")
    info = make_sample_video(args.out, args.seconds, args.faces, args.fps)
    print(f"wrote {info['path']}: {info['frames']} frames at {info['fps']:g} FPS, {info['faces']} face(s) "
          f"in {info['frames_with_faces']} frames; no face during "
          + ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in info["absent_stretches"]))
    return 0

"""Footage of real faces seen by a camera beside and above the screen (no video can be downloaded).

Two students, both real photographs:
- the astronaut (skimage), whose head is turned in 3D by tools/turned_face.py by a
  steady offset: facing the screen, she is seen turned OFFSET_YAW sideways and OFFSET_PITCH
  down, as a webcam at the screen's corner sees a student; she looks away at planned times
  (a further turn on top of the offset);
- a person from Labeled Faces in the Wild (skimage's lfw_subset) as photographed: he holds his
  own head angle throughout (the baseline reads about 25 deg of yaw on him).

The frames are written to an MJPG file and decoded back, so the test sees what a codec gives.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shared.bus.messages import encode, make_header
from tests.inference.harness import Harness
from tools.turned_face import mesh_points, turn_head

WIDTH, HEIGHT = 640, 480
OFFSET_YAW, OFFSET_PITCH = -25.0, 20.0  # the camera's view of "facing the screen"
LFW_INDEX = 2  # a frontal-ish LFW face whose eyes read open at this size
FACE_SIDE = 200
ASTRONAUT_AT = (60, 120)  # top-left corners in the frame
LFW_AT = (380, 140)


@dataclass(frozen=True)
class Stretch:
    start: float
    end: float
    name: str
    yaw: float  # degrees turned on top of the offset
    pitch: float
    level: int  # what a teacher would call it: 2 distracted, 3 looking away


# What the astronaut does; facing the screen otherwise. Turning 55 deg the other way brings
# her face round past the camera (a camera-only baseline reads her as nearly frontal); turning
# 45 deg further away hides her face from the mesh.
PLAN = (
    Stretch(16.0, 21.0, "turned_other_way", 55.0, 0.0, 2),
    Stretch(27.0, 32.0, "turned_away", -45.0, 0.0, 3),
)
SWAY = (0.0, 2.0, 0.0, -2.0)  # degrees of yaw, frame by frame: a live head is never still


def astronaut_action(t: float) -> Stretch | None:
    return next((s for s in PLAN if s.start <= t < s.end), None)


@functools.lru_cache(maxsize=1)
def _astronaut() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's face region (BGR) and its face mesh in the region's pixels."""
    from skimage import data

    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    x, y, w, h = 150, 10, 200, 220  # her head and some margin
    region = image[y:y + h, x:x + w].copy()
    square = (x + 20, y + 15, 170, 170)  # the face as facedetect frames it
    points = mesh_points(image, square) - np.array([x, y, 0.0])
    return region, points


@functools.lru_cache(maxsize=16)
def astronaut_posed(yaw: float, pitch: float) -> np.ndarray:
    region, points = _astronaut()
    return turn_head(region, points, yaw, pitch)


@functools.lru_cache(maxsize=1)
def lfw_face() -> np.ndarray:
    from skimage import data

    gray = (data.lfw_subset()[LFW_INDEX] * 255).astype(np.uint8)  # 25 x 25 floats in [0, 1]
    big = cv2.resize(gray, (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)


def render(t: float, fps: float = 2.0) -> np.ndarray:
    frame = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    action = astronaut_action(t)
    extra = (action.yaw, action.pitch) if action else (0.0, 0.0)
    i = int(round(t * fps))
    face = astronaut_posed(OFFSET_YAW + extra[0] + SWAY[i % len(SWAY)], OFFSET_PITCH + extra[1])
    drift = int(round(6 * np.sin(i / 5)))  # she shifts in her seat; the photo's person does not
    x, y = ASTRONAUT_AT
    frame[y + drift:y + drift + face.shape[0], x:x + face.shape[1]] = face
    x, y = LFW_AT
    frame[y:y + FACE_SIDE, x:x + FACE_SIDE] = lfw_face()
    return frame


def write_footage(path: Path, seconds: float, fps: float = 2.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (WIDTH, HEIGHT))
    assert writer.isOpened(), f"cannot write {path}"
    try:
        for i in range(int(seconds * fps)):
            writer.write(render(i / fps, fps))
    finally:
        writer.release()
    return path


def student_of(box: tuple[int, int, int, int]) -> int:
    """1 = the astronaut (left half), 2 = the LFW face (right half)."""
    x, _, w, _ = box
    return 1 if x + w / 2 < WIDTH / 2 else 2


# --- the footage through the real inference service ------------------------------------------

FPS = 2.0
SECONDS = 40.0
CROP = 224
Footage = list[tuple[float, list[tuple[int, list[int], np.ndarray]]]]


def decode_crops(path: Path) -> Footage:
    """Per decoded frame: (time, [(student, box, crop)]) as facedetect crops them (res10)."""
    from services.capture.sources import FileSource
    from shared.vision.detectors import DnnDetector, crop_face

    detector, source, frames = DnnDetector(), FileSource(str(path)), []
    i = 0
    while (frame := source.read()) is not None:
        faces = [(student_of(d.box), list(d.box), crop_face(frame.image, d.box, CROP))
                 for d in detector.detect(frame.image)]
        frames.append((i / FPS, sorted(faces, key=lambda f: f[0])))
        i += 1
    source.release()
    return frames


def _batch(session: str, seq: int, t: float, faces: list) -> list:
    students = [{"student": s, "box": box, "conf": 0.99} for s, box, _ in faces]
    header = make_header("batch", session, "cam0", seq, time.time(), crop=CROP, length=1, students=students,
                         faces=students, t_media=t)
    return encode(header, b"".join(np.ascontiguousarray(c).tobytes() for _, _, c in faces))


def play(footage: Footage, *args: str, env: dict | None = None, session: str = "off-axis",
         during: Callable[[float, dict], None] | None = None,
         logs: list[str] | None = None) -> dict[int, list[tuple[float, int, dict]]]:
    """Run the footage through the inference service (its own process); per student [(t, level, signals)].

    `during(t, read so far)` runs before each frame is sent (a teacher marking, say); the
    service's log is appended to `logs`.
    """
    # No metrics server: a free port picked before the service binds it can be taken meanwhile.
    h = Harness("--model", "baseline", *args, "--metrics-port", "0", env=env)
    read: dict[int, list[tuple[float, int, dict]]] = {1: [], 2: []}
    try:
        for seq, (t, faces) in enumerate(footage):
            if during is not None:
                during(t, read)
            h.send(_batch(session, seq, t, faces))
            msg = h.receive()
            assert msg.header.seq == seq
            for p in msg.header.predictions:
                read[p["student"]].append((t, p["level"], p["signals"]))
    finally:
        code, err = h.stop()
    assert code == 0, err[-2000:]
    if logs is not None:
        logs.append(err)
    return read

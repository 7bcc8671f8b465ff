"""A test video with real faces: the astronaut from scikit-image, pasted on a plain background.

`engagement make-sample --out sample.avi [--seconds 20] [--faces 1] [--fps 30]` writes a
640x480 MJPG .avi (decodes with every OpenCV build and ffmpeg). The face drifts a little
so the tracker has work to do, and leaves the frame for stretches so "No Face Found",
eviction and re-identification are exercised. For stretches of its own each student turns
the head away or looks down as at a phone (the astronaut's face mesh rotated in 3D, see
turned_face.py), so the attention baseline has a disengaged student to report; with several
faces the students differ (one stays attentive throughout). `make_sample_video` returns what
it wrote, per frame and face: present or not, the intended state, pose and level, so tests
derive their expectations from the video instead of hard-coding them.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from shared.ops.command_parser import CommandParser

WIDTH, HEIGHT = 640, 480
# Region around the astronaut's face in skimage.data.astronaut() (res10 finds the face at
# x=179, y=57, w=92, h=120 with confidence 0.99999); the margin keeps the detector happy.
FACE_REGION = (125, 10, 200, 220)  # x, y, w, h
# The box res10 gives there (x, y, w, h): the face mesh is run on facedetect's crop of it.
FACE_BOX = (179, 57, 92, 120)
# Fractions of the video during which no face is in the frame (short enough to leave the
# students time to look away and back between them).
ABSENT_STRETCHES = ((0.32, 0.42), (0.74, 0.80))

log = logging.getLogger("engagement.make_sample")


@dataclass(frozen=True)
class Attention:
    """A way of (not) paying attention: the synthetic head pose and the level it is meant to read."""

    name: str
    yaw: float  # degrees of the synthetic turn, + = face turned towards image left
    pitch: float  # degrees, + = face tilted down
    level: int  # the baseline level the pose is meant to read once held (BASELINE.md thresholds)


# Synthetic angles chosen so the baseline (solvePnP on the re-fitted mesh) reads the intended
# level while res10 still finds the face (measured on the astronaut at full size and at the
# size of a 4-face grid): a 45 deg turn reads about -40 deg yaw, -50 about +41, a 38 deg
# tilt down about 34 deg pitch, a 35 deg turn about -30 deg yaw (-33 to -35 at the size of a 4-face grid: on
# the baseline's level 1/2 border, where one JPEG decoder's rounding against another's made a glance a
# look-away; a 30 deg turn sits inside level 1).
ATTENTIVE = Attention("attentive", 0.0, 0.0, 0)
GLANCING_AWAY = Attention("glancing_away", 30.0, 0.0, 1)
TURNED_AWAY = Attention("turned_away", 45.0, 0.0, 2)
TURNED_OTHER_WAY = Attention("turned_other_way", -50.0, 0.0, 2)
LOOKING_DOWN = Attention("looking_down", -10.0, 38.0, 2)  # at a phone on the desk, a little aside

# Per student (face i uses PLANS[i % len(PLANS)]): (start, end) as fractions of the video, and
# what the student does then; attentive otherwise. The stretches sit inside the parts where the
# face is in the frame and leave attentive time before each absence, so a smoothed level has
# settled back to 0 by then. Nobody looks away in the first 5%: tests render the start of
# a crowded frame and expect every face found.
PLANS: tuple[tuple[tuple[float, float, Attention], ...], ...] = (
    ((0.05, 0.23, TURNED_AWAY), (0.48, 0.66, LOOKING_DOWN)),
    (),  # the attentive student
    ((0.07, 0.24, LOOKING_DOWN), (0.47, 0.64, TURNED_OTHER_WAY), (0.84, 0.92, GLANCING_AWAY)),
    # Turned the other way: this stretch starts as the student's neutral pose is learned (at
    # 10 s), and TURNED_AWAY's -38 deg, measured from that pose, sits on the level 1/2 border.
    ((0.46, 0.64, TURNED_OTHER_WAY), (0.82, 0.98, LOOKING_DOWN)),
)
EASE_SECONDS = 0.4  # time to turn the head into (and out of) a pose
EASE_STEPS = 4  # the turn goes in this many steps: few distinct poses, each rendered once


def astronaut_face() -> np.ndarray:
    """The astronaut's face with some margin, as a BGR image."""
    return _astronaut_face().copy()


@functools.lru_cache(maxsize=1)
def _astronaut_face() -> np.ndarray:
    from skimage import data  # decoding the photo takes longer than drawing a frame: once

    x, y, w, h = FACE_REGION
    return cv2.cvtColor(data.astronaut()[y:y + h, x:x + w], cv2.COLOR_RGB2BGR)


def attention_at(t: float, seconds: float, student: int) -> tuple[Attention, float]:
    """What student `student` does at time t, and how far into that pose (0..1, eased in steps)."""
    frac = t / seconds if seconds else 0.0
    for start, end, attention in PLANS[student % len(PLANS)]:
        if start <= frac < end:
            ease = min(EASE_SECONDS, (end - start) * seconds / 4)
            into = min((t - start * seconds) / ease, (end * seconds - t) / ease, 1.0) if ease > 0 else 1.0
            return attention, math.floor(max(0.0, into) * EASE_STEPS) / EASE_STEPS
    return ATTENTIVE, 1.0


@functools.lru_cache(maxsize=1)
def _astronaut_mesh() -> np.ndarray | None:
    """The face mesh of astronaut_face(), in its pixels; None when face_landmark.tflite is missing."""
    from skimage import data

    from shared.ops.assets import MissingAsset
    from tools.turned_face import mesh_points

    x, y, w, h = FACE_BOX
    side = int(max(w, h) * 1.5)  # facedetect's crop: the box plus a quarter each side
    square = (x + w // 2 - side // 2, y + h // 2 - side // 2, side, side)
    try:
        points = mesh_points(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), square)
    except MissingAsset as exc:
        log.warning("the sample's faces stay frontal (nobody looks away): %s", exc)
        return None
    return points - np.array([FACE_REGION[0], FACE_REGION[1], 0.0])


@functools.lru_cache(maxsize=64)
def _posed_face(yaw: float, pitch: float) -> np.ndarray:
    from tools.turned_face import turn_head

    return turn_head(_astronaut_face(), _astronaut_mesh(), yaw, pitch)


def can_turn_heads() -> bool:
    """Whether the sample can turn heads (needs the face mesh model)."""
    return _astronaut_mesh() is not None


def face_present(t: float, seconds: float) -> bool:
    frac = t / seconds if seconds else 0.0
    return not any(start <= frac < end for start, end in ABSENT_STRETCHES)


def _background() -> np.ndarray:
    return _plain_background().copy()


@functools.lru_cache(maxsize=1)
def _plain_background() -> np.ndarray:
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


def student_pose(t: float, seconds: float, student: int) -> tuple[float, float]:
    """(yaw, pitch) in degrees of the synthetic head of `student` at time t."""
    attention, into = attention_at(t, seconds, student)
    return attention.yaw * into, attention.pitch * into


def render_frame(t: float, seconds: float, faces: int, face: np.ndarray | None = None,
                 amplitude: int = 10) -> np.ndarray:
    """Frame at time t: the background, plus `faces` drifting faces unless in an absent stretch.

    With the default face (the astronaut) each student's head follows its plan (PLANS); a face
    passed in is pasted as it is.
    """
    frame = _background()
    if faces <= 0 or not face_present(t, seconds):
        return frame
    scaled, corners = _layout(faces, _astronaut_face() if face is None else face)
    turning = face is None and can_turn_heads()
    sh, sw = scaled.shape[:2]
    for i, (x, y) in enumerate(corners):
        pose = student_pose(t, seconds, i) if turning else (0.0, 0.0)
        image = scaled if pose == (0.0, 0.0) else \
            cv2.resize(_posed_face(*pose), (sw, sh), interpolation=cv2.INTER_AREA)
        # Slow drift (period 4 s), out of phase per face: moves, but stays inside its cell.
        dx = int(amplitude * math.sin(2 * math.pi * t / 4.0 + i))
        dy = int(amplitude / 2 * math.cos(2 * math.pi * t / 4.0 + i))
        x0 = min(max(0, x + dx), WIDTH - sw)
        y0 = min(max(0, y + dy), HEIGHT - sh)
        frame[y0:y0 + sh, x0:x0 + sw] = image
    return frame


def make_sample_video(path: str | Path, seconds: float = 20.0, faces: int = 1, fps: float = 30.0,
                      codec: str = "MJPG") -> dict[str, Any]:
    """Write the sample video; return what was written (frames, which frames have faces, ...)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write {path} with codec {codec}")
    frames = int(round(seconds * fps))
    turning = faces > 0 and can_turn_heads()
    present, states, poses, expected = [], [], [], []
    try:
        for i in range(frames):
            t = i / fps
            here = faces > 0 and face_present(t, seconds)
            present.append(here)
            now = [attention_at(t, seconds, f) if here and turning else (ATTENTIVE, 1.0) for f in range(faces)]
            states.append([a.name if here else None for a, _ in now])
            poses.append([(a.yaw * into, a.pitch * into) if here else None for a, into in now])
            # the level is promised once the pose is reached, not while the head is still turning
            expected.append([a.level if here and into == 1.0 else None for a, into in now])
            writer.write(render_frame(t, seconds, faces))
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
        # per frame, per face (None where the face is absent): the intended state's name, the
        # synthetic (yaw, pitch) in degrees, and the baseline level the pose should read once
        # reached (None while the head is still turning)
        "attention": states, "poses": poses, "expected_level": expected,
        "attention_stretches": [
            {"face": f, "state": a.name, "level": a.level, "start": start * seconds, "end": end * seconds}
            for f in range(faces if turning else 0) for start, end, a in PLANS[f % len(PLANS)]],
    }


# A scripted level-2 stretch shorter than this may not show in a report with the default
# settings (2 FPS, SMOOTHING_SECONDS 1, the head's turn taking EASE_SECONDS at each end).
MIN_EVENT_SECONDS = 3.0


def ground_truth(info: dict[str, Any]) -> dict[str, Any]:
    """What the video shows, per face: its seat, the student id `engagement run` gives it (the
    tracker numbers a class seen at once in reading order, as the grid is filled), where its
    face is, and each scripted stretch with its level; plus when nobody is in the frame."""
    faces = int(info["faces"])
    if faces <= 0:
        return {"video": Path(info["path"]).name, "seconds": info["seconds"], "faces": [], "absent": []}
    scaled, corners = _layout(faces, _astronaut_face())
    scale = scaled.shape[1] / FACE_REGION[2]
    bx, by, bw, bh = FACE_BOX
    rows = []
    for f, (x, y) in enumerate(corners):
        box = [int(x + (bx - FACE_REGION[0]) * scale), int(y + (by - FACE_REGION[1]) * scale),
               int(bw * scale), int(bh * scale)]
        stretches = [{"state": st["state"], "level": st["level"], "start": round(st["start"], 3),
                      "end": round(st["end"], 3)} for st in info["attention_stretches"] if st["face"] == f]
        rows.append({"face": f + 1, "student": f + 1, "box": box, "stretches": stretches})
    return {"video": Path(info["path"]).name, "seconds": info["seconds"], "fps": info["fps"],
            "faces": rows, "absent": [[round(a, 3), round(b, 3)] for a, b in info["absent_stretches"]]}


def truth_path(video: str | Path) -> Path:
    return Path(video).with_suffix(".truth.json")


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="engagement make-sample",
                                     description="Write a 640x480 MJPG video with real faces "
                                                 "(scikit-image's astronaut) that come and go.")
    parser.add_argument("--out", required=True, help="output .avi path")
    parser.add_argument("--seconds", type=float, default=20.0, help="length (default 20)")
    parser.add_argument("--faces", type=int, default=1, help="faces per frame (default 1)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate of the file (default 30)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.fps <= 0 or args.faces < 0:
        parser.error("--seconds and --fps must be positive, --faces at least 0")
    try:
        # Opened here first: OpenCV's writer says only that it failed, and prints warnings about it.
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).open("ab").close()
        info = make_sample_video(args.out, args.seconds, args.faces, args.fps)
    except (RuntimeError, OSError) as exc:  # a folder that cannot be made, or written
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"engagement make-sample: cannot write {args.out} ({why}); fix: give --out a path in a folder you can "
              "write", file=sys.stderr)
        return 2
    print(f"wrote {info['path']}: {info['frames']} frames at {info['fps']:g} FPS, {info['faces']} face(s) "
          f"in {info['frames_with_faces']} frames; no face during "
          + ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in info["absent_stretches"]))
    for st in info["attention_stretches"]:
        print(f"  face {st['face'] + 1}: {st['state']} (level {st['level']}) {st['start']:.1f}-{st['end']:.1f} s")
    truth = truth_path(args.out)
    truth.write_text(json.dumps(ground_truth(info), indent=1) + "\n")
    print(f"ground truth (face -> student, stretches): {truth}")
    short = [st for st in info["attention_stretches"]
             if st["level"] >= 2 and st["end"] - st["start"] < MIN_EVENT_SECONDS]
    if short:
        print(f"note: {len(short)} scripted stretch(es) last under {MIN_EVENT_SECONDS:.0f} s and may not show in "
              f"a report at the default settings; --seconds 20 or more makes each long enough")
    return 0

"""A tiny data set in the exact DAiSEE layout whose boredom level can be seen in the frames.

Real faces (scikit-image's astronaut and LFW faces) are drawn into real .avi files. The level
drives what a bored student looks like on a webcam: the head droops (perspective warp, face
lower in the frame), tilts, and the eyes close (the eye band darkens). Each person has its own
face, background and tint, and the splits are person-disjoint, so a model has to learn the
level cue rather than the identity. About 43% of clips are level 0, as in DAiSEE.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from training.labels import SPLITS

log = logging.getLogger(__name__)

FRAME_W, FRAME_H = 320, 240
FACE_SIDE = 120
# 3 of 7 clips level 0 (43%), like DAiSEE's boredom.
CLIP_LEVELS = (0, 0, 0, 1, 1, 2, 3)
# Eye band brightness per level: steps big enough to read on any face, glasses or not.
EYE_BRIGHTNESS = (1.0, 0.6, 0.35, 0.12)
# LFW faces the res10 detector finds once enlarged (index 4 is missed).
LFW_FACES = (0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 12)


@dataclass(frozen=True)
class SynthSpec:
    persons: tuple[int, int, int] = (6, 1, 2)  # Train, Validation, Test
    clips_per_person: int = 7
    seconds: float = 10.0
    fps: int = 10
    seed: int = 0


def _astronaut_face() -> np.ndarray:
    from skimage import data
    rgb = data.astronaut()
    # res10 finds the face at x=179, y=57, w=92, h=120; take a square with some margin.
    crop = rgb[40:200, 150:300]
    return cv2.cvtColor(cv2.resize(crop, (FACE_SIDE, FACE_SIDE)), cv2.COLOR_RGB2BGR)


def _lfw_face(index: int, tint: np.ndarray) -> np.ndarray:
    from skimage import data
    gray = (data.lfw_subset()[index] * 255).astype(np.uint8)
    gray = cv2.resize(gray, (FACE_SIDE, FACE_SIDE), interpolation=cv2.INTER_CUBIC)
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR).astype(np.float32) * tint
    return np.clip(bgr, 0, 255).astype(np.uint8)


def person_face(person_index: int, rng: np.random.Generator) -> np.ndarray:
    if person_index == 0:
        return _astronaut_face()
    tint = rng.uniform(0.8, 1.1, size=3).astype(np.float32)
    return _lfw_face(LFW_FACES[(person_index - 1) % len(LFW_FACES)], tint)


def _background(rng: np.random.Generator) -> np.ndarray:
    top, bottom = rng.uniform(40, 200, size=3), rng.uniform(40, 200, size=3)
    ramp = np.linspace(0.0, 1.0, FRAME_H, dtype=np.float32)[:, None, None]
    bg = top * (1 - ramp) + bottom * ramp
    return np.broadcast_to(bg, (FRAME_H, FRAME_W, 3)).astype(np.uint8).copy()


def bored_face(face: np.ndarray, level: int) -> np.ndarray:
    """Eyes close at higher levels: the eye band (rows 30-48% of the face) darkens."""
    out = face.copy()
    top, bottom = int(0.30 * FACE_SIDE), int(0.48 * FACE_SIDE)
    out[top:bottom] = (out[top:bottom].astype(np.float32) * EYE_BRIGHTNESS[level]).astype(np.uint8)
    return out


def render_frame(face: np.ndarray, background: np.ndarray, level: int, rng: np.random.Generator,
                 noise: np.ndarray | None = None) -> np.ndarray:
    """One webcam frame of a student at a boredom level (0 engaged .. 3 checked out); face from bored_face."""
    s = FACE_SIDE
    # Head droops: the top edge comes forward (wider), the chin recedes (narrower, shorter).
    squeeze = 0.05 * level * s
    src = np.float32([[0, 0], [s, 0], [s, s], [0, s]])
    dst = np.float32([[-squeeze * 0.3, squeeze * 0.4], [s + squeeze * 0.3, squeeze * 0.4],
                      [s - squeeze, s - squeeze * 0.6], [squeeze, s - squeeze * 0.6]])
    jitter = rng.normal(0.0, 1.5, size=(4, 2)).astype(np.float32)
    warp = cv2.getPerspectiveTransform(src, dst + jitter)
    angle = 4.0 * level + rng.normal(0.0, 1.0)
    cx = FRAME_W / 2 + rng.normal(0.0, 2.0)
    cy = FRAME_H / 2 - 10 + 7 * level + rng.normal(0.0, 2.0)
    place = cv2.getRotationMatrix2D((s / 2, s / 2), angle, 1.0)
    place[:, 2] += (cx - s / 2, cy - s / 2)
    full = np.vstack([place, [0, 0, 1]]) @ warp
    frame = background.copy()
    cv2.warpPerspective(face, full, (FRAME_W, FRAME_H), dst=frame, borderMode=cv2.BORDER_TRANSPARENT)
    frame = cv2.convertScaleAbs(frame, alpha=rng.uniform(0.92, 1.08))  # webcam exposure flicker
    if noise is not None:
        frame = cv2.add(frame, noise, dtype=cv2.CV_8U) if noise.dtype == np.uint8 else \
            np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return frame


def _noise_bank(rng: np.random.Generator, n: int = 6) -> list[np.ndarray]:
    # Sensor noise drawn once per clip and reused: drawing it per frame dominated the run time.
    return [rng.normal(0.0, 4.0, size=(FRAME_H, FRAME_W, 3)).astype(np.int16) for _ in range(n)]


def write_clip(path: Path, face: np.ndarray, background: np.ndarray, level: int, spec: SynthSpec,
               rng: np.random.Generator) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), spec.fps, (FRAME_W, FRAME_H))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} with the MJPG codec")
    face = bored_face(face, level)
    noise = _noise_bank(rng)
    try:
        for i in range(int(spec.seconds * spec.fps)):
            writer.write(render_frame(face, background, level, rng, noise[i % len(noise)]))
    finally:
        writer.release()


def _other_levels(boredom: int, rng: np.random.Generator) -> tuple[int, int, int]:
    # DAiSEE engagement runs the other way (3 = very engaged); confusion and frustration are mostly 0.
    engagement = int(np.clip(3 - boredom + rng.integers(-1, 1, endpoint=True), 0, 3))
    confusion = int(rng.choice(4, p=[0.6, 0.25, 0.1, 0.05]))
    frustration = int(rng.choice(4, p=[0.7, 0.2, 0.07, 0.03]))
    return engagement, confusion, frustration


def make_synth(root: Path, spec: SynthSpec = SynthSpec()) -> dict[str, list[tuple]]:
    """Write DataSet/ and Labels/ under root; returns the label rows per split."""
    rng = np.random.default_rng(spec.seed)
    root = Path(root)
    rows: dict[str, list[tuple]] = {}
    person_index = 0
    for split, n_persons in zip(SPLITS, spec.persons, strict=True):
        rows[split] = []
        for _ in range(n_persons):
            person = f"{500000 + person_index * 11:06d}"
            face = person_face(person_index, rng)
            # One room per person: a per-clip background would let a model tell clips (and so
            # their labels) apart by the wall behind the student instead of by the student.
            background = _background(rng)
            levels = [CLIP_LEVELS[i % len(CLIP_LEVELS)] for i in range(spec.clips_per_person)]
            rng.shuffle(levels)
            for clip_no, level in enumerate(levels):
                clip_id = f"{person}{clip_no + 1:04d}"
                write_clip(root / "DataSet" / split / person / clip_id / f"{clip_id}.avi", face, background, level,
                           spec, rng)
                rows[split].append((f"{clip_id}.avi", level, *_other_levels(level, rng)))
            person_index += 1
    write_label_files(root, rows)
    log.info("synth: %d clips of %d persons in %s", sum(map(len, rows.values())), person_index, root)
    return rows


def write_label_files(root: Path, rows: dict[str, list[tuple]]) -> None:
    labels = Path(root) / "Labels"
    labels.mkdir(parents=True, exist_ok=True)
    # The DAiSEE quirks: a trailing space after "Frustration", CRLF line ends, ".avi" in ClipID.
    header = ["ClipID", "Boredom", "Engagement", "Confusion", "Frustration "]
    everything = []
    for split, split_rows in rows.items():
        _write_csv(labels / f"{split}Labels.csv", header, split_rows)
        everything += split_rows
    _write_csv(labels / "AllLabels.csv", header, everything)


def _write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)

"""Face detectors side by side: ms a frame and recall on real faces, same frames for each.

Three sets, each with its ground truth:
- `lfw`: scikit-image's lfw_subset, 100 real faces (25x25 each, upscaled to 120 px and set
  on a 320x240 grey frame) and 100 non-faces (false positives counted on those).
- `astronaut`: the sample video's frames (tools/sample_video.py), one student who turns
  away, looks down and leaves the frame; recall over the frames where she is present.
- `class8`: the same with 8 students (smaller faces, each on its own turning plan).

A face counts as found when a detection's centre falls inside it (detectors draw boxes of
different shapes around the same face). Time is the mean over every frame of the sets.

    python -m bench.detectors [--detectors blazeface_short,dnn] [--frames 40]
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import cv2
import numpy as np

from shared.ops.command_parser import CommandParser
from shared.vision.detectors import NAMES, DetectorUnavailable, make_detector
from tools.sample_video import HEIGHT, WIDTH, _astronaut_face, _grid, _layout, face_present, render_frame

Box = tuple[int, int, int, int]
SAMPLE_SECONDS = 20.0
LFW_SIDE = 120


@dataclass
class Case:
    frame: np.ndarray
    faces: list[Box]  # where the real faces are (empty: none)


def lfw_cases() -> tuple[list[Case], list[Case]]:
    """(100 faces, 100 non-faces) from lfw_subset, each on a 320x240 grey frame."""
    from skimage import data

    images = data.lfw_subset()
    cases = []
    for img in images:
        gray = cv2.resize((img * 255).astype(np.uint8), (LFW_SIDE, LFW_SIDE), interpolation=cv2.INTER_CUBIC)
        frame = np.full((240, 320, 3), 128, np.uint8)
        x, y = (320 - LFW_SIDE) // 2, (240 - LFW_SIDE) // 2
        frame[y:y + LFW_SIDE, x:x + LFW_SIDE] = gray[:, :, None]
        cases.append(Case(frame, [(x, y, LFW_SIDE, LFW_SIDE)]))
    for c in cases[100:]:
        c.faces = []  # images 100.. are non-faces
    return cases[:100], cases[100:]


def sample_cases(faces: int, frames: int) -> list[Case]:
    """`frames` frames spread over the 20 s sample with `faces` students; each student's cell
    (the face plus its drift) is where its face is, when present."""
    cols, rows = _grid(faces)
    cell_w, cell_h = WIDTH // cols, HEIGHT // rows
    _layout(faces, _astronaut_face())
    cases = []
    for i in range(frames):
        t = SAMPLE_SECONDS * (i + 0.5) / frames
        boxes = [((k % cols) * cell_w, (k // cols) * cell_h, cell_w, cell_h) for k in range(faces)] \
            if face_present(t, SAMPLE_SECONDS) else []
        cases.append(Case(render_frame(t, SAMPLE_SECONDS, faces), boxes))
    return cases


def _found(boxes: list[Box], truth: list[Box]) -> int:
    """Faces of `truth` that have a detection centred inside them (each detection used once)."""
    hits, used = 0, set()
    for tx, ty, tw, th in truth:
        for j, (x, y, w, h) in enumerate(boxes):
            cx, cy = x + w / 2, y + h / 2
            if j not in used and tx <= cx < tx + tw and ty <= cy < ty + th:
                used.add(j)
                hits += 1
                break
    return hits


def measure(name: str, sets: dict[str, list[Case]], negatives: list[Case], confidence: float = 0.5) -> dict:
    """One detector over every set: recall per set, false positives on non-faces, ms a frame."""
    try:
        detector = make_detector(name, confidence)
    except DetectorUnavailable as exc:
        return {"detector": name, "available": False, "reason": str(exc)}
    detector.detect(next(iter(sets.values()))[0].frame)  # warm-up (allocations, first call)
    row: dict = {"detector": name, "available": True, "recall": {}, "ms_per_frame": {}}
    for set_name, cases in sets.items():
        found = total = 0
        started = time.perf_counter()
        for case in cases:
            boxes = [d.box for d in detector.detect(case.frame)]
            found += _found(boxes, case.faces)
            total += len(case.faces)
        row["ms_per_frame"][set_name] = round((time.perf_counter() - started) * 1000 / len(cases), 2)
        row["recall"][set_name] = round(found / total, 3) if total else None
    row["false_positives_lfw"] = sum(len(detector.detect(c.frame)) for c in negatives)
    return row


def run(names: list[str], frames: int = 40) -> dict:
    faces, negatives = lfw_cases()
    sets = {"lfw": faces, "astronaut": sample_cases(1, frames), "class8": sample_cases(8, frames)}
    rows = [measure(n, sets, negatives) for n in names]
    return {"frames": {k: len(v) for k, v in sets.items()}, "negatives": len(negatives), "rows": rows}


def table(result: dict) -> str:
    lines = ["| detector | ms/frame lfw (320x240) | ms/frame astronaut (640x480) | ms/frame class8 | "
             "recall lfw | recall astronaut | recall class8 | false positives (100 non-faces) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        if not r["available"]:
            lines.append(f"| {r['detector']} | unavailable: {r['reason']} | | | | | | |")
            continue
        ms, rc = r["ms_per_frame"], r["recall"]
        lines.append(f"| {r['detector']} | {ms['lfw']} | {ms['astronaut']} | {ms['class8']} | {rc['lfw']} | "
                     f"{rc['astronaut']} | {rc['class8']} | {r['false_positives_lfw']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m bench.detectors")
    parser.add_argument("--detectors", default=",".join(n for n in NAMES if n != "auto"))
    parser.add_argument("--frames", type=int, default=40, help="frames per sample set")
    args = parser.parse_args(argv)
    result = run([n.strip() for n in args.detectors.split(",") if n.strip()], args.frames)
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

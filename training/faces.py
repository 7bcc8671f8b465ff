"""Face crops cut as the edge service cuts them, into a faces tree per detector.

<fps root>/faces/<detector>/all/<Split>/<image>.jpg, data/<Split>/b0..b3/ links, manifest.csv,
crop.json (shared/data/crop_record.py: detector, margin, size, colour order; the export step copies it
into the model card, and inference compares it with facedetect's settings).
By default the edge's own: DETECTOR (auto, resolved here to the detector that loads, which names
the tree), CROP_MARGIN and CROP_SIZE, read from the environment like every service's settings.
The most confident face of a frame is kept (DAiSEE shows one student per clip); frames with no
face are left out and counted in the table, as the reference notebooks did.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from shared.data.crop_record import crop_record
from shared.ops.config import CROP_MARGIN, CROP_SIZE, DETECTOR
from shared.vision.detectors import AUTO_ORDER, Detection, SlicedDetector, crop_face, make_detector, with_slices
from training.extract import _link
from training.manifest import MANIFEST, ImageRow, read_manifest, write_manifest
from training.runs import read_json, write_json

log = logging.getLogger(__name__)

CROP_FILE = "crop.json"


def faces_tree(fps_root: Path, detector: str) -> Path:
    return Path(fps_root) / "faces" / detector


def tree_detector(trees: Path, detector: str) -> str:
    """The tree a detector name means under `trees` (faces/ or augmented/): auto is the first tree of
    AUTO_ORDER that exists (the detector auto resolved to when they were cut), else its first."""
    if detector != "auto":
        return detector
    # "auto" last: an augmented tree of whole frames is named as asked (no detector cut them).
    return next((d for d in (*AUTO_ORDER, "auto") if (Path(trees) / d / MANIFEST).is_file()), AUTO_ORDER[0])


def read_crop(tree: Path) -> dict:
    """The crop record beside a tree's manifest; {} when the tree predates it (or holds whole frames)."""
    path = Path(tree) / CROP_FILE
    return read_json(path) if path.is_file() else {}


def write_crop(tree: Path, crop: dict) -> None:
    write_json(Path(tree) / CROP_FILE, crop)


def best_face(detector: SlicedDetector, frame: np.ndarray) -> Detection | None:
    """The frame's most confident face, found as facedetect finds faces (the same detector, slices of a
    large frame with small faces included), or None."""
    return max(detector.detect(frame), key=lambda d: (d.confidence, d.box[2] * d.box[3]), default=None)


def crop_faces(fps_root: Path, detector: str = str(DETECTOR.default), size: int = int(CROP_SIZE.default),
               confidence: float = 0.5, progress: bool = True, workers: int = 1,
               margin: float = float(CROP_MARGIN.default)) -> tuple[list[ImageRow], Counter, Counter]:
    """Crop the best face of every extracted frame; returns (rows kept, images per split, faces per split).

    workers > 1 runs that many detectors in threads (OpenCV releases the GIL while it detects).
    """
    fps_root = Path(fps_root)
    rows = read_manifest(fps_root / MANIFEST)
    detector = make_detector(detector, confidence).name  # fails here, once, when the weights are missing
    tree = faces_tree(fps_root, detector)
    record = crop_record(detector, margin, size)
    if read_crop(tree) not in ({}, record):  # resumable only with the same crop: else mixed crops
        raise ValueError(f"{tree} holds crops cut otherwise ({read_crop(tree)}): remove it or crop as it did")
    local = threading.local()

    def one(row: ImageRow) -> ImageRow | None:
        rel = Path("faces") / detector / "all" / row.split / Path(row.path).name
        out = fps_root / rel
        if not out.is_file():  # resumable: crops from an earlier run are kept
            frame = cv2.imread(str(fps_root / row.path))
            if frame is None:
                log.warning("faces: cannot read %s, skipped", row.path)
                return None
            if not hasattr(local, "detector"):  # one per thread: nets are not shared
                local.detector = with_slices(make_detector(detector, confidence))
            best = best_face(local.detector, frame)
            if best is None:
                return None
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), crop_face(frame, best.box, size, margin))
            _link(out, tree / "data" / row.split / f"b{row.boredom}" / out.name)
        return replace(row, path=rel.as_posix())

    images = Counter(r.split for r in rows)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(tqdm(pool.map(one, rows), total=len(rows), desc=f"faces {detector}", unit="img",
                            disable=not progress))
    kept = [r for r in results if r is not None]
    faces = Counter(r.split for r in kept)
    write_manifest(tree / MANIFEST, kept)
    write_crop(tree, record)
    return kept, images, faces


def faces_table(counts: dict[str, tuple[Counter, Counter]]) -> str:
    """Images with a face found, per split and detector."""
    order = ("Train", "Validation", "Test")
    splits = sorted({s for images, _ in counts.values() for s in images},
                    key=lambda s: order.index(s) if s in order else len(order))
    lines = [f"{'detector':<10}{'split':<12}{'images':>8}{'faces':>8}{'found %':>9}"]
    for detector, (images, faces) in counts.items():
        for split in splits + ["all"]:
            n = sum(images.values()) if split == "all" else images[split]
            f = sum(faces.values()) if split == "all" else faces[split]
            lines.append(f"{detector:<10}{split:<12}{n:>8}{f:>8}{(100.0 * f / n if n else 0.0):>9.1f}")
    return "\n".join(lines)

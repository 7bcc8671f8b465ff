"""Face crops with the edge service's own detectors (dnn, haar) into a faces tree per detector.

<fps root>/faces/<detector>/all/<Split>/<image>.jpg, data/<Split>/b0..b3/ links, manifest.csv.
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
from tqdm import tqdm

from shared.detectors import crop_face, make_detector
from training.extract import _link
from training.manifest import MANIFEST, ImageRow, read_manifest, write_manifest

log = logging.getLogger(__name__)

CROP_SIZE = 112


def faces_tree(fps_root: Path, detector: str) -> Path:
    return Path(fps_root) / "faces" / detector


def crop_faces(fps_root: Path, detector: str = "dnn", size: int = CROP_SIZE, confidence: float = 0.5,
               progress: bool = True, workers: int = 1) -> tuple[list[ImageRow], Counter, Counter]:
    """Crop the best face of every extracted frame; returns (rows kept, images per split, faces per split).

    workers > 1 runs that many detectors in threads (OpenCV releases the GIL while it detects).
    """
    fps_root = Path(fps_root)
    rows = read_manifest(fps_root / MANIFEST)
    tree = faces_tree(fps_root, detector)
    make_detector(detector, confidence)  # fail here, once, when the weights are missing
    local = threading.local()

    def one(row: ImageRow) -> ImageRow | None:
        rel = Path("faces") / detector / "all" / row.split / Path(row.path).name
        out = fps_root / rel
        if not out.is_file():  # resumable: crops from an earlier run are kept
            frame = cv2.imread(str(fps_root / row.path))
            if frame is None:
                log.warning("faces: cannot read %s, skipped", row.path)
                return None
            if not hasattr(local, "detector"):
                local.detector = make_detector(detector, confidence)  # one per thread: nets are not shared
            detections = local.detector.detect(frame)
            if not detections:
                return None
            best = max(detections, key=lambda d: (d.confidence, d.box[2] * d.box[3]))
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), crop_face(frame, best.box, size))
            _link(out, tree / "data" / row.split / f"b{row.boredom}" / out.name)
        return replace(row, path=rel.as_posix())

    images = Counter(r.split for r in rows)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = list(tqdm(pool.map(one, rows), total=len(rows), desc=f"faces {detector}", unit="img",
                            disable=not progress))
    kept = [r for r in results if r is not None]
    faces = Counter(r.split for r in kept)
    write_manifest(tree / MANIFEST, kept)
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

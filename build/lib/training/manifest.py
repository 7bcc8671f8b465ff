"""The image manifest every tree (whole frames, faces, augmented) carries: one CSV row per image.

Paths are relative to the FPS root (<root>/<N>FPS), so a manifest of augmented images can
point at the untouched validation and test faces without copying them.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from training.labels import STATES

MANIFEST = "manifest.csv"


@dataclass(frozen=True)
class ImageRow:
    path: str  # relative to the FPS root
    split: str
    clip: str
    person: str
    frame: int
    boredom: int
    engagement: int
    confusion: int
    frustration: int

    def level(self, state: str) -> int:
        return int(getattr(self, state))

    @property
    def levels(self) -> tuple[int, int, int, int]:
        return tuple(self.level(s) for s in STATES)


def write_manifest(path: Path, rows: list[ImageRow]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[f.name for f in fields(ImageRow)])
        writer.writeheader()
        for row in sorted(rows, key=lambda r: (r.split, r.clip, r.frame, r.path)):
            writer.writerow(asdict(row))
    tmp.replace(path)  # atomic: a reader never sees half a manifest
    return path


def read_manifest(path: Path) -> list[ImageRow]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the step that builds this tree first")
    with path.open(newline="") as fh:
        return [ImageRow(r["path"], r["split"], r["clip"], r["person"], int(r["frame"]),
                         *(int(r[s]) for s in STATES)) for r in csv.DictReader(fh)]


def fps_root(out_root: Path, fps: int) -> Path:
    return Path(out_root) / f"{fps}FPS"

"""The `augment` step: a class-balanced training set (Keras preprocessing layers; ImageDataGenerator is gone).

Every level of the Train split is brought to one target count: levels above it (level 0, 43% of
DAiSEE) are undersampled, levels below it (level 3 is rarest) get augmented copies of their own
images. Validation and Test rows point at the untouched source images: evaluation never sees
an augmented image.

<fps root>/augmented/<detector>/all/Train/*.jpg, data/Train/b0..b3/ links, manifest.csv
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from training.data import tree_manifest
from training.extract import _link
from training.faces import read_crop, write_crop
from training.manifest import MANIFEST, ImageRow, read_manifest, write_manifest

log = logging.getLogger(__name__)


def augmenter(seed: int) -> keras.Sequential:
    # Small changes that keep the level readable: mirror, shift, zoom, exposure, contrast.
    # Rotation stays within +-4 degrees because head tilt is part of what "checked out" looks like.
    return keras.Sequential([
        keras.layers.RandomFlip("horizontal", seed=seed),
        keras.layers.RandomRotation(0.01, fill_mode="reflect", seed=seed),
        keras.layers.RandomTranslation(0.06, 0.06, fill_mode="reflect", seed=seed),
        keras.layers.RandomZoom(0.1, fill_mode="reflect", seed=seed),
        keras.layers.RandomBrightness(0.15, value_range=(0, 255), seed=seed),
        keras.layers.RandomContrast(0.2, seed=seed),
    ], name="augment")


def balance_plan(counts: Counter, target: int | None = None) -> int:
    """Target count per level: the median of the present levels unless given."""
    present = sorted(v for v in counts.values() if v)
    if not present:
        raise ValueError("no training images to balance")
    return target or int(np.median(present))


def augment(fps_root: Path, detector: str = "auto", source: str = "faces", target: int | None = None,
            seed: int = 0, progress: bool = True) -> tuple[Counter, Counter]:
    """Write the balanced tree; returns (counts before, counts after) of the Train levels.

    Faces keep their crop record (augmented/<detector>/crop.json), so the model card still says them."""
    fps_root = Path(fps_root)
    manifest = tree_manifest(fps_root, source, detector)
    rows = read_manifest(manifest)
    if source == "faces":
        detector = manifest.parent.name  # auto: the detector the faces were cut with
    train = [r for r in rows if r.split == "Train"]
    by_level: dict[int, list[ImageRow]] = {lv: [r for r in train if r.boredom == lv] for lv in range(4)}
    before = Counter({lv: len(v) for lv, v in by_level.items()})
    goal = balance_plan(before, target)
    rng = np.random.default_rng(seed)
    layer = augmenter(seed)
    tree = Path("augmented") / detector
    out_rows = [r for r in rows if r.split != "Train"]
    after: Counter = Counter()
    for level, items in by_level.items():
        if not items:
            log.warning("augment: no Train images of level %d to balance from", level)
            continue
        keep = items if len(items) <= goal else [items[i] for i in sorted(rng.choice(len(items), goal, replace=False))]
        for row in keep:
            out_rows.append(_place(fps_root, tree, row, fps_root / row.path, Path(row.path).name))
        missing = goal - len(keep)
        picks = rng.integers(0, len(items), size=max(0, missing))
        for n, index in enumerate(tqdm(picks, desc=f"augment level {level}", disable=not progress or not missing)):
            row = items[int(index)]
            image = tf.io.decode_jpeg(tf.io.read_file(str(fps_root / row.path)), channels=3)
            new = layer(tf.cast(image[None], tf.float32), training=True)[0]
            name = f"aug{n:05d}_{Path(row.path).name}"
            out = fps_root / tree / "all" / "Train" / name
            out.parent.mkdir(parents=True, exist_ok=True)
            tf.io.write_file(str(out), tf.io.encode_jpeg(tf.cast(tf.clip_by_value(new, 0, 255), tf.uint8), quality=92))
            out_rows.append(_place(fps_root, tree, row, out, name, frame=10_000 + n))
        after[level] = goal
    write_manifest(fps_root / tree / MANIFEST, out_rows)
    crop = read_crop(manifest.parent) if source == "faces" else {}
    if crop:
        write_crop(fps_root / tree, crop)
    log.info("augment: Train levels %s -> %s", dict(sorted(before.items())), dict(sorted(after.items())))
    return before, after


def _place(fps_root: Path, tree: Path, row: ImageRow, src: Path, name: str, frame: int | None = None) -> ImageRow:
    rel = tree / "all" / "Train" / name
    if src != fps_root / rel:
        _link(src, fps_root / rel)
    _link(fps_root / rel, fps_root / tree / "data" / "Train" / f"b{row.boredom}" / name)
    return replace(row, path=rel.as_posix(), frame=row.frame if frame is None else frame)


def augment_table(before: Counter, after: Counter) -> str:
    lines = [f"{'level':<8}{'before':>8}{'after':>8}"]
    for level in range(4):
        lines.append(f"b{level:<7}{before.get(level, 0):>8}{after.get(level, 0):>8}")
    return "\n".join(lines)

"""tf.data input pipelines over a manifest: parallel JPEG decode, optional online augmentation, prefetch.

Frame models get one image per sample; sequence models get `sequence_length` consecutive frames
of one clip (non-overlapping windows, the clip's label). Samples carry balanced class weights
so that rare levels count as much as level 0 (DAiSEE boredom is 43% level 0).
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import tensorflow as tf

from shared.data.model_card import PREPROCESSING
from training.faces import tree_detector
from training.labels import STATES
from training.manifest import MANIFEST, ImageRow, read_manifest

log = logging.getLogger(__name__)

DATA_TYPES = ("whole", "faces", "augmented")


def tree_manifest(fps_root: Path, data_type: str, detector: str = "auto") -> Path:
    """Manifest of a data type: whole frames, face crops of a detector, or the augmented faces.

    Detector auto: the tree of the detector auto resolved to when the faces were cut (faces.tree_detector)."""
    fps_root = Path(fps_root)
    if data_type == "whole":
        return fps_root / MANIFEST
    if data_type in ("faces", "augmented"):
        trees = fps_root / data_type
        return trees / tree_detector(trees, detector) / MANIFEST
    raise ValueError(f"unknown data type {data_type!r}: use one of {DATA_TYPES}")


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Balanced weights n / (k * n_c) over the levels present."""
    counts = Counter(int(v) for v in labels)
    n, k = len(labels), len(counts)
    return {level: n / (k * c) for level, c in counts.items()}


def sequences(rows: list[ImageRow], length: int) -> list[list[ImageRow]]:
    """Non-overlapping windows of `length` frames per clip; a short clip is padded with its last frame."""
    by_clip: dict[str, list[ImageRow]] = defaultdict(list)
    for row in rows:
        by_clip[row.clip].append(row)
    out, padded = [], 0
    for clip in sorted(by_clip):
        frames = sorted(by_clip[clip], key=lambda r: r.frame)
        if len(frames) < length:
            if len(frames) < max(1, length // 2):
                continue  # too few faces found in this clip to make a sequence
            frames = frames + [frames[-1]] * (length - len(frames))
            padded += 1
        for start in range(0, len(frames) - length + 1, length):
            out.append(frames[start:start + length])
    if padded:
        log.info("%d clips padded to %d frames", padded, length)
    return out


class Pipelines:
    """Builds tf.data datasets of one tree for one model configuration."""

    def __init__(self, fps_root: Path, manifest: Path, image_size: int, channels: int, preprocessing: str,
                 heads: list[str], sequence_length: int = 1) -> None:
        self.fps_root = Path(fps_root)
        self.rows = read_manifest(manifest)
        self.size = image_size
        self.channels = channels
        self.preprocess = PREPROCESSING[preprocessing]
        self.heads = heads
        self.sequence_length = sequence_length

    def split_rows(self, split: str) -> list[ImageRow]:
        return [r for r in self.rows if r.split == split]

    def samples(self, split: str) -> tuple[list[list[str]], np.ndarray]:
        """(paths per sample, labels (n, heads)) of a split."""
        rows = self.split_rows(split)
        groups = sequences(rows, self.sequence_length) if self.sequence_length > 1 else [[r] for r in rows]
        paths = [[str(self.fps_root / r.path) for r in g] for g in groups]
        labels = np.array([[g[0].level(h) for h in self.heads] for g in groups], dtype=np.int32)
        labels = labels.reshape(-1, len(self.heads))
        return paths, labels

    def _decode(self, path: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=self.channels)
        image = tf.image.resize(image, (self.size, self.size), antialias=True)
        return tf.cast(image, tf.float32)

    def _augment(self, x: tf.Tensor) -> tf.Tensor:
        # Light, label-preserving changes against overfitting: mirror and exposure.
        x = tf.image.random_flip_left_right(x) if self.sequence_length == 1 else x
        return tf.clip_by_value(x * tf.random.uniform([], 0.85, 1.15), 0.0, 255.0)

    def dataset(self, split: str, batch_size: int, training: bool = False, seed: int = 0,
                weights: dict[str, dict[int, float]] | None = None, augment: bool = True) -> tf.data.Dataset:
        """Batches of (x, y[, sample weight]); training shuffles and, with augment, mirrors and varies exposure."""
        paths, labels = self.samples(split)
        if not paths:
            raise ValueError(f"no {split} samples in {self.fps_root}: check the data type and the faces step")
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths), labels))
        if training:
            ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)

        def load(p: tf.Tensor, y: tf.Tensor):
            x = tf.map_fn(self._decode, p, fn_output_signature=tf.float32)
            if training and augment:
                x = self._augment(x)
            x = self.preprocess(x)
            x = x[0] if self.sequence_length == 1 else x
            ys = tuple(y[i] for i in range(len(self.heads)))
            if weights is None:
                return x, (ys[0] if len(ys) == 1 else ys)
            table = [tf.constant([weights[h].get(level, 1.0) for level in range(4)], tf.float32)
                     for h in self.heads]
            ws = tuple(tf.gather(table[i], ys[i]) for i in range(len(self.heads)))
            return x, (ys[0] if len(ys) == 1 else ys), (ws[0] if len(ws) == 1 else ws)

        # deterministic=True keeps the seeded shuffle order through the parallel decode.
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def train_weights(self) -> dict[str, dict[int, float]]:
        _, labels = self.samples("Train")
        return {h: class_weights(labels[:, i]) for i, h in enumerate(self.heads)}


def majority_levels(labels: np.ndarray, heads: list[str]) -> dict[str, int]:
    """Most frequent level per head (the lower level on a tie)."""
    out = {}
    for i, head in enumerate(heads):
        counts = Counter(labels[:, i].tolist())
        out[head] = int(min(counts, key=lambda level: (-counts[level], level)))
    return out


__all__ = ["DATA_TYPES", "STATES", "Pipelines", "class_weights", "majority_levels", "sequences", "tree_manifest"]

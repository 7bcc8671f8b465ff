"""BlazeFace, MediaPipe's face detector (the .tflite files of its wheel), run with LiteRT.

Two models: short-range (128x128 in, faces that fill a good part of the frame, e.g. one
person at a webcam) and full-range (192x192 in, small faces down to a few percent of the
frame, e.g. a class gallery). Both are single-shot detectors whose outputs are offsets
from a fixed grid of anchors; the anchor grid and the decoding below follow the models'
published layout (MediaPipe's model card and graph options: stride, anchors per cell,
fixed-size anchors, sigmoid scores), written here from that description.

The frame is letterboxed into the square input (aspect kept, as MediaPipe does), so a
face is never squashed; boxes are mapped back to frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shared.ops import assets


@dataclass(frozen=True)
class BlazeSpec:
    asset: str
    size: int  # square input side
    # (stride, anchors per grid cell); layers with the same stride are merged into one grid.
    grids: tuple[tuple[int, int], ...]
    min_score: float  # the score MediaPipe's own graph keeps a detection at


SHORT_RANGE = BlazeSpec("face_detection_short_range.tflite", 128, ((8, 2), (16, 6)), 0.5)
FULL_RANGE = BlazeSpec("face_detection_full_range_sparse.tflite", 192, ((4, 1),), 0.6)


def anchor_centres(spec: BlazeSpec) -> np.ndarray:
    """(n, 2) anchor centres (x, y) in [0, 1] of the input, in the model's output order.

    The anchors are fixed-size (1x1 of the input), so a centre is all an anchor needs."""
    rows = []
    for stride, per_cell in spec.grids:
        cells = -(-spec.size // stride)  # ceil
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)
        rows.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(rows).astype(np.float32)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, size: int,
           min_score: float) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs -> (boxes (k, 4) as x1, y1, x2, y2 in [0, 1] of the input, scores (k,)).

    Each row of raw_boxes is (dx, dy, w, h, then 6 keypoints) in input pixels relative to
    its anchor; scores are logits."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores.reshape(-1).astype(np.float64), -80.0, 80.0)))
    keep = scores >= min_score
    if not keep.any():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    reg = raw_boxes.reshape(len(anchors), -1)[keep, :4] / size
    centre = anchors[keep] + reg[:, :2]
    half = reg[:, 2:4] / 2
    return np.concatenate([centre - half, centre + half], axis=1), scores[keep]


def blend_overlaps(boxes: np.ndarray, scores: np.ndarray, threshold: float = 0.3) -> list[tuple[np.ndarray, float]]:
    """Weighted non-maximum suppression: each cluster of overlapping boxes becomes one box,
    the score-weighted mean of the cluster, with the best score. Steadier than plain NMS
    on neighbouring anchors that all fire on the same face."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    alive = np.ones(len(boxes), bool)
    out = []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        ious = _iou_many(boxes[i], boxes)
        cluster = alive & (ious >= threshold)
        w = scores[cluster][:, None]
        out.append(((boxes[cluster] * w).sum(0) / w.sum(), float(scores[i])))
        alive &= ~cluster
    return out


def _iou_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou: np.ndarray = inter / np.maximum(area + areas - inter, 1e-9)
    return iou


class BlazeFace:
    """One BlazeFace model: `run(frame)` -> [(x, y, w, h) in frame pixels, score]."""

    def __init__(self, spec: BlazeSpec, models: Path | None = None, num_threads: int = 1,
                 min_score: float | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415

        self.spec = spec
        self.min_score = spec.min_score if min_score is None else min_score
        path = assets.require(spec.asset, models)
        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]["index"]
        outputs = self.interpreter.get_output_details()
        self.anchors = anchor_centres(spec)
        # The two outputs: boxes (1, n, 16) and scores (1, n, 1); told apart by their last axis.
        self._boxes = next(d["index"] for d in outputs if d["shape"][-1] == 16)
        self._scores = next(d["index"] for d in outputs if d["shape"][-1] == 1)
        n = next(int(d["shape"][1]) for d in outputs if d["shape"][-1] == 16)
        if n != len(self.anchors):
            raise RuntimeError(f"{spec.asset}: {n} outputs but {len(self.anchors)} anchors")

    def boxes(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw detections before overlap blending: (k, 4) x1, y1, x2, y2 in frame pixels, scores (k,)."""
        h, w = frame.shape[:2]
        size = self.spec.size
        scale = size / max(h, w)
        rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
        px, py = (size - rw) // 2, (size - rh) // 2
        small = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        canvas = np.zeros((size, size, 3), np.uint8)
        canvas[py:py + rh, px:px + rw] = small
        x = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).astype(np.float32) * (2.0 / 255.0) - 1.0
        self.interpreter.set_tensor(self._input, x[None])
        self.interpreter.invoke()
        boxes, scores = decode(self.interpreter.get_tensor(self._boxes), self.interpreter.get_tensor(self._scores),
                               self.anchors, size, self.min_score)
        # input [0, 1] -> input pixels -> undo the letterbox -> frame pixels.
        boxes = (boxes * size - np.array([px, py, px, py], np.float32)) / scale
        return boxes, scores

    def run(self, frame: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        return to_frame_boxes(blend_overlaps(*self.boxes(frame)), frame.shape)


def to_frame_boxes(blended: list[tuple[np.ndarray, float]], shape: tuple[int, ...]
                   ) -> list[tuple[tuple[int, int, int, int], float]]:
    """Blended (x1, y1, x2, y2) boxes -> (x, y, w, h) clipped to the frame; slivers dropped."""
    h, w = shape[:2]
    found = []
    for box, score in blended:
        x1, y1 = int(max(0, box[0])), int(max(0, box[1]))
        x2, y2 = int(min(w, box[2])), int(min(h, box[3]))
        if x2 - x1 >= 8 and y2 - y1 >= 8:
            found.append(((x1, y1, x2 - x1, y2 - y1), score))
    return found

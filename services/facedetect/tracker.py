"""Stable student ids across frames: greedy IoU matching against recently seen faces.

At 2 FPS a face moves little between samples, so box overlap is enough to follow it.
A face that is lost keeps its id for `max_age` seconds (media time when the source has
it, capture time otherwise): if it comes back where it was, it is the same student. Ids
are per (session, stream) and start at 1; `reset` forgets a stream at its end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Box = tuple[int, int, int, int]  # x, y, w, h


def iou(a: Box, b: Box) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def reading_order(boxes: list[Box]) -> list[int]:
    """Indexes of `boxes` row by row (a box whose top is within half a face of the row's first
    top is in that row), left to right within a row."""
    rows: list[list[int]] = []
    for i in sorted(range(len(boxes)), key=lambda i: boxes[i][1]):
        if rows and boxes[i][1] - boxes[rows[-1][0]][1] < boxes[rows[-1][0]][3] / 2:
            rows[-1].append(i)
        else:
            rows.append([i])
    return [i for row in rows for i in sorted(row, key=lambda i: boxes[i][0])]


def centre_distance(a: Box, b: Box) -> float:
    """Distance between box centres, in units of the larger box side."""
    dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
    dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    return (dx * dx + dy * dy) ** 0.5 / max(1, a[2], a[3], b[2], b[3])


@dataclass
class Track:
    student: int
    box: Box
    last_seen: float


@dataclass
class _StreamTracks:
    tracks: dict[int, Track] = field(default_factory=dict)
    next_id: int = 1
    last_t: float | None = None


class Tracker:
    def __init__(self, min_iou: float = 0.3, max_age: float = 10.0, max_centre_distance: float = 0.5) -> None:
        self.min_iou = min_iou
        self.max_age = max_age
        # A second, looser pass for faces that moved more than their overlap allows (a jump
        # between two 2 FPS samples): close centres, only among faces left unmatched.
        self.max_centre_distance = max_centre_distance
        self.streams: dict[tuple[str, str], _StreamTracks] = {}

    def update(self, key: tuple[str, str], boxes: list[Box], t: float) -> list[int]:
        """Student id for each box (same order), creating ids for new faces."""
        state = self.streams.setdefault(key, _StreamTracks())
        if state.last_t is not None and t < state.last_t - self.max_age:
            state.tracks.clear()  # time jumped far back: a new recording on the same stream id
        state.last_t = t
        for sid in [sid for sid, tr in state.tracks.items() if t - tr.last_seen > self.max_age]:
            del state.tracks[sid]

        ids: list[int | None] = [None] * len(boxes)
        free = set(state.tracks)
        pairs = sorted(((iou(box, state.tracks[sid].box), i, sid) for i, box in enumerate(boxes)
                        for sid in free), reverse=True)
        for score, i, sid in pairs:
            if score < self.min_iou:
                break
            if ids[i] is None and sid in free:
                ids[i] = sid
                free.discard(sid)
        near = sorted((centre_distance(boxes[i], state.tracks[sid].box), i, sid)
                      for i in range(len(boxes)) if ids[i] is None for sid in free)
        for dist, i, sid in near:
            if dist > self.max_centre_distance:
                break
            if ids[i] is None and sid in free:
                ids[i] = sid
                free.discard(sid)
        # New students are numbered in reading order (rows top to bottom, then left to right),
        # so the ids of a class seen at once follow the seats, not the detector's score order.
        for i in reading_order(boxes):
            if ids[i] is None:
                ids[i] = state.next_id
                state.next_id += 1
        for i, box in enumerate(boxes):
            state.tracks[ids[i]] = Track(ids[i], tuple(int(v) for v in box), t)  # type: ignore[arg-type]
        return [int(i) for i in ids]  # type: ignore[arg-type]

    def reset(self, key: tuple[str, str]) -> None:
        self.streams.pop(key, None)

"""A frame with a tentative face waits until the tracker has decided who that face is.

Each frame's faces message must be sent once, in order, with final ids: a tentative face (a
negative id, tracker.py) is either a new student, or set aside (a hand, a passer-by). So a
stream's frames queue here from the first frame holding a tentative face until the tracker
resolves it, at most about TRACK_MIN_SECONDS later; then they leave in order, the face with
its student id, or without it. Nothing accepted is lost: a real newcomer's first second is
predicted and counted like the rest, only later. A stream with no tentative face queues
nothing (no delay in the steady state); its end or eviction sends whatever still waits.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from shared.bus.messages import Frame
from shared.vision.detectors import Detection


@dataclass
class Held:
    """One frame's faces, waiting: what the service needs to send them."""

    source: Frame  # the frame's header (its identity and stamps)
    width: int
    height: int
    ids: list[int]
    detections: list[Detection]
    crops: list[np.ndarray]

    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.crops)


@dataclass
class _StreamQueue:
    frames: deque[Held] = field(default_factory=deque)
    dropped: set[int] = field(default_factory=set)  # tentative ids set aside (the tracker may still follow them)


# Frames a stream may hold: the tracker decides within about TRACK_MIN_SECONDS (2 s of frames
# at 30 FPS); past this a stuck decision must not hold the stream any longer. The crops' bytes
# are bounded too (25 faces of 224 px are 3.8 MB a frame): facedetect runs in 512 MB under compose.
MAX_WAITING = 120
MAX_WAITING_BYTES = 64 << 20


class Holdback:
    def __init__(self, max_waiting: int = MAX_WAITING, max_bytes: int = MAX_WAITING_BYTES) -> None:
        self.streams: dict[tuple[str, str], _StreamQueue] = {}
        self.max_waiting = max_waiting
        self.max_bytes = max_bytes
        self.forced = 0  # undecided faces sent without, because the queue was full

    def push(self, key: tuple[str, str], held: Held, resolutions: dict[int, int | None]) -> list[Held]:
        """Queue this frame, apply the tracker's decisions to everything queued, return what can go."""
        queue = self.streams.setdefault(key, _StreamQueue())
        queue.dropped.update(sid for sid, student in resolutions.items() if student is None)
        queue.frames.append(held)
        for waiting in queue.frames:
            _resolve(waiting, resolutions, queue.dropped)
        waiting_bytes = sum(h.nbytes() for h in queue.frames)  # after the decisions: set-aside crops are gone
        out = []
        while queue.frames and (all(sid > 0 for sid in queue.frames[0].ids) or len(queue.frames) > self.max_waiting
                                or waiting_bytes > self.max_bytes):
            head = queue.frames.popleft()
            waiting_bytes -= head.nbytes()
            undecided = {sid for sid in head.ids if sid < 0}
            if undecided:
                self.forced += len(undecided)
                _resolve(head, {}, undecided)
            out.append(head)
        return out

    def waiting(self, key: tuple[str, str]) -> int:
        queue = self.streams.get(key)
        return len(queue.frames) if queue else 0

    def flush(self, key: tuple[str, str], resolutions: dict[int, int | None]) -> list[Held]:
        """The stream ends: everything queued, decided (a face still undecided is left out)."""
        queue = self.streams.pop(key, None)
        if queue is None:
            return []
        queue.dropped.update(sid for sid, student in resolutions.items() if student is None)
        for waiting in queue.frames:
            _resolve(waiting, resolutions, queue.dropped)
            _resolve(waiting, {}, {sid for sid in waiting.ids if sid < 0})
        return list(queue.frames)


def _resolve(held: Held, resolutions: dict[int, int | None], dropped: set[int]) -> None:
    keep = [k for k, sid in enumerate(held.ids) if sid not in dropped]
    if len(keep) != len(held.ids):
        held.detections = [held.detections[k] for k in keep]
        held.crops = [held.crops[k] for k in keep]
        held.ids = [held.ids[k] for k in keep]
    held.ids = [resolutions.get(sid) or sid if sid < 0 else sid for sid in held.ids]

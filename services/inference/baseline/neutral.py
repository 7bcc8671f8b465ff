"""Each student's neutral pose: their usual head yaw and pitch while facing the screen.

A webcam above or beside the screen sees a student who reads the screen with the head
turned or lowered by a steady amount (20-30 deg is common); measured from the camera, they
would never read "attentive". So the baseline learns, per student, the pose they hold:

- learning: the student's own per-frame yaw and pitch over the last `learn_seconds`; once
  that window spans at least `learn_seconds` (in media time for files, capture time for live
  sources) and holds steady (three quarters of its frames within `steady_degrees` of the
  median, on both angles), the medians are the neutral pose. Frames whose pose no camera offset explains (|yaw| >
  MAX_YAW, pitch beyond MAX_PITCH_DOWN / MAX_PITCH_UP) are not learned from: a student who
  starts the class on a phone does not make the phone the screen.
- following: afterwards, a frame within `follow_band` degrees of the neutral pose (the
  student is facing the screen) moves it by dt / `follow_seconds` of the difference: slow
  posture changes are followed, a look-away is not.
- relearning: a student who settles into another pose within those limits and holds it, steady,
  for `relearn_seconds` (default three learning windows: 30 s) has moved in their seat or moved
  the camera, not looked away for half a minute without a glance back: that pose becomes the
  neutral pose (`relearned`). A frame back within `follow_band` of the neutral pose starts the
  count again. (On a real recording of a man in conversation, the first ten seconds were
  frontal and he then held his head about 20 deg to one side for minutes: without relearning,
  about half of his frames read "partly attentive".)
- the teacher: a mark of level 0 ("attentive") is the teacher saying "this is how this
  student faces the screen": the neutral pose is set to the pose at the mark (`anchor`).

Until a student's neutral pose is known, levels are read from the camera's angles, as
without it. The rule (shared/vision/baseline_rule.relative_pose) measures yaw and pitch from it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.vision.baseline_rule import MAX_PITCH_DOWN, MAX_PITCH_UP, MAX_YAW

MIN_SAMPLES = 5
STEADY_SHARE = 75  # percent of the learning window that must sit near its median


@dataclass
class _Student:
    samples: deque[tuple[float, float, float]] = field(default_factory=deque)  # (t, yaw, pitch)
    moved: deque[tuple[float, float, float]] = field(default_factory=deque)  # off the neutral pose, held
    started: float | None = None  # time of the first pose learned from
    yaw: float | None = None
    pitch: float | None = None
    source: str = ""  # "learned" | "relearned" | "mark"
    last_t: float | None = None  # the student's previous frame (the clock of update's t)
    seen: float = 0.0  # monotonic, for eviction


class NeutralPose:
    def __init__(self, learn_seconds: float = 10.0, steady_degrees: float = 6.0, follow_band: float = 10.0,
                 follow_seconds: float = 120.0, relearn_seconds: float | None = None) -> None:
        self.learn_seconds = max(0.0, float(learn_seconds))
        self.relearn_seconds = 3 * self.learn_seconds if relearn_seconds is None else max(0.0, relearn_seconds)
        self.steady_degrees = steady_degrees
        self.follow_band = follow_band
        self.follow_seconds = follow_seconds
        self._students: dict[Hashable, _Student] = {}

    def update(self, key: Hashable, t: float, yaw: float | None, pitch: float | None) -> dict[str, Any]:
        """Take one frame's own (unsmoothed) pose; the student's neutral-pose signals after it.

        {} while unknown, else {"neutral_yaw", "neutral_pitch", "neutral_source"}.
        """
        s = self._students.setdefault(key, _Student())
        s.seen = time.monotonic()
        dt = 0.0 if s.last_t is None else max(0.0, t - s.last_t)
        s.last_t = t if s.last_t is None else max(s.last_t, t)
        if yaw is not None and pitch is not None:
            if s.yaw is None:
                self._learn(s, t, yaw, pitch)
            else:
                self._follow(s, t, dt, yaw, pitch)
        return self.signals(key)

    def _learn(self, s: _Student, t: float, yaw: float, pitch: float) -> None:
        if not _learnable(yaw, pitch):
            return
        if s.started is None:
            s.started = t
        s.samples.append((t, yaw, pitch))
        if t - s.started >= self.learn_seconds:
            self._settle(s, s.samples, t, self.learn_seconds, "learned")

    def _settle(self, s: _Student, window: deque[tuple[float, float, float]], t: float, seconds: float,
                source: str) -> None:
        """Take the window's median pose as the neutral one if the window spans `seconds` and is steady."""
        while window and window[0][0] < t - seconds:
            window.popleft()
        if len(window) < MIN_SAMPLES:
            return
        arr = np.array([(y, p) for _, y, p in window])
        median = np.median(arr, axis=0)
        # Steady: three quarters of the window within steady_degrees of the median (a median
        # absolute deviation would call a head swinging between two poses steady).
        spread = np.percentile(np.abs(arr - median), STEADY_SHARE, axis=0)
        if float(spread.max()) <= self.steady_degrees:
            s.yaw, s.pitch, s.source = float(median[0]), float(median[1]), source
            s.samples.clear()
            s.moved.clear()

    def _follow(self, s: _Student, t: float, dt: float, yaw: float, pitch: float) -> None:
        assert s.yaw is not None and s.pitch is not None  # followed once learnt (update)
        if abs(yaw - s.yaw) > self.follow_band or abs(pitch - s.pitch) > self.follow_band:
            self._moved(s, t, yaw, pitch)
            return
        s.moved.clear()  # back at the neutral pose: whatever came before was a look, not a new posture
        step = min(1.0, dt / self.follow_seconds) if self.follow_seconds > 0 else 1.0
        s.yaw += step * (yaw - s.yaw)
        s.pitch += step * (pitch - s.pitch)

    def _moved(self, s: _Student, t: float, yaw: float, pitch: float) -> None:
        if not _learnable(yaw, pitch) or self.relearn_seconds <= 0:
            return
        s.moved.append((t, yaw, pitch))
        if t - s.moved[0][0] >= self.relearn_seconds - 1e-6:
            self._settle(s, s.moved, t, self.relearn_seconds, "relearned")

    def anchor(self, key: Hashable, yaw: float, pitch: float) -> None:
        """The teacher marked this student attentive with this pose: it is their neutral pose."""
        s = self._students.setdefault(key, _Student())
        s.yaw, s.pitch, s.source = float(yaw), float(pitch), "mark"
        s.samples.clear()
        s.moved.clear()

    def signals(self, key: Hashable) -> dict[str, Any]:
        s = self._students.get(key)
        if s is None or s.yaw is None or s.pitch is None:  # (learnt together)
            return {}
        return {"neutral_yaw": round(s.yaw, 4), "neutral_pitch": round(s.pitch, 4),
                "neutral_source": s.source}

    def keys(self) -> list[Hashable]:
        return list(self._students)

    def known(self, key: Hashable) -> bool:
        return bool(self.signals(key))

    def drop(self, match: Any) -> int:
        gone = [k for k in self._students if match(k)]
        for k in gone:
            del self._students[k]
        return len(gone)

    def evict_idle(self, seconds: float) -> int:
        cutoff = time.monotonic() - seconds
        return self.drop(lambda k: self._students[k].seen < cutoff)

    def __len__(self) -> int:
        return len(self._students)


def _learnable(yaw: float, pitch: float) -> bool:
    """A pose some camera offset explains (beyond it, no neutral pose is learned from it)."""
    return abs(yaw) <= MAX_YAW and -MAX_PITCH_UP <= pitch <= MAX_PITCH_DOWN

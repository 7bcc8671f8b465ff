"""Per-student moving average of the attention signals over the last SMOOTHING_SECONDS of video.

The window is in seconds of the video (media time for files, capture time for live
sources), so it means the same at 1, 2 or 10 FPS; at 2 FPS the default 1 s is two frames.

Pose and eye values of a frame whose mesh found no face are left out of the averages (they
are noise), while its confidence still counts, so a student who turns away for the whole
window reads as looking away.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable
from typing import Any

import numpy as np

AVERAGED = ("yaw", "pitch", "roll", "eye_openness", "mesh_confidence", "gaze_x", "gaze_y", "lid_opening")


MAX_ENTRIES = 1000  # a bound on memory whatever the FPS and window


class Smoother:
    def __init__(self, seconds: float) -> None:
        self.seconds = max(0.0, float(seconds))
        self._history: dict[Hashable, deque[tuple[float, dict[str, Any]]]] = {}
        self._seen: dict[Hashable, float] = {}

    def update(self, key: Hashable, signals: dict[str, Any], t: float) -> dict[str, Any]:
        """Average of this student's signals whose time is within `seconds` before `t` (this one included)."""
        timed = self._history.setdefault(key, deque(maxlen=MAX_ENTRIES))
        timed.append((t, signals))
        # Strictly inside the window: 1 s at 2 FPS keeps this frame and the one 0.5 s before.
        while timed and t - timed[0][0] >= self.seconds - 1e-6 and len(timed) > 1:
            timed.popleft()
        history = [h for _, h in timed]
        self._seen[key] = time.monotonic()
        smoothed: dict[str, Any] = {}
        for name in AVERAGED:
            if name not in signals:
                continue
            values = [h[name] for h in history if h.get(name) is not None]
            smoothed[name] = round(float(np.mean(values)), 4) if values else None
        smoothed["frames"] = len(history)
        return smoothed

    def drop(self, match: Any) -> int:
        """Forget every key for which match(key) is true (e.g. one session at eos)."""
        gone = [k for k in self._history if match(k)]
        for k in gone:
            del self._history[k]
            self._seen.pop(k, None)
        return len(gone)

    def evict_idle(self, seconds: float) -> int:
        cutoff = time.monotonic() - seconds
        return self.drop(lambda k: self._seen.get(k, 0.0) < cutoff)

    def __len__(self) -> int:
        return len(self._history)

"""Per-student moving average of the attention signals over the last SMOOTHING_WINDOW frames.

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

AVERAGED = ("yaw", "pitch", "roll", "eye_openness", "mesh_confidence", "gaze_x", "gaze_y")


class Smoother:
    def __init__(self, window: int) -> None:
        self.window = max(1, int(window))
        self._history: dict[Hashable, deque[dict[str, Any]]] = {}
        self._seen: dict[Hashable, float] = {}

    def update(self, key: Hashable, signals: dict[str, Any]) -> dict[str, Any]:
        history = self._history.setdefault(key, deque(maxlen=self.window))
        history.append(signals)
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

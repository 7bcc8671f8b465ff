"""Retrying and logging politely: one exponential backoff and one log throttle for every service.

Backoff: the first delay is `start`, each failure doubles it up to `cap`, success resets it;
`jitter` (a fraction) shortens each delay at random so many devices do not retry in step.
LogThrottle: at most one line per `interval` seconds, however many events call for one (a
flood of bad input must not flood the log; the events are counted in metrics regardless).
"""

from __future__ import annotations

import math
import random
import time


def backoff_delay(start: float, cap: float, failures: int) -> float:
    """The delay after `failures` failures: start, 2 start, 4 start ... at most cap."""
    return min(cap, start * 2.0 ** max(0, failures))


class Backoff:
    def __init__(self, start: float, cap: float, jitter: float = 0.0) -> None:
        self.start, self.cap, self.jitter = float(start), float(cap), float(jitter)
        self.failures = 0

    @property
    def delay(self) -> float:
        """The delay the next failure will get (without jitter)."""
        return backoff_delay(self.start, self.cap, self.failures)

    def next_delay(self) -> float:
        """Count one failure; the delay to wait before the next attempt."""
        delay = self.delay
        self.failures += 1
        return delay * random.uniform(1.0 - self.jitter, 1.0) if self.jitter else delay

    def reset(self) -> None:
        self.failures = 0


class LogThrottle:
    def __init__(self, interval: float) -> None:
        self.interval = float(interval)
        self._last = -math.inf

    def ready(self, now: float | None = None) -> bool:
        """True (and the clock restarts) when a line may be logged now."""
        now = time.monotonic() if now is None else now
        if now - self._last < self.interval:
            return False
        self._last = now
        return True

"""The teacher's marks of running sessions, read back from Redis for the baseline's neutral poses.

The web page stores a mark (shared/marks.py); inference polls each session it is running
for marks it has not seen, from the session's first: a restarted inference re-applies the
marks made before. Redis unreachable is logged (once a minute at most) and retried; the
pipeline never waits for it.
"""

from __future__ import annotations

import logging
import time

import redis

from shared.marks import Mark, MarkStore

POLL_SECONDS = 1.0
WARN_EVERY = 60.0

log = logging.getLogger("inference")


class MarkFollower:
    def __init__(self, store: MarkStore, poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self._positions: dict[str, str] = {}  # session -> last stream entry read
        self._next = 0.0
        self._last_warning = -WARN_EVERY

    def watch(self, session: str) -> None:
        self._positions.setdefault(session, "0-0")

    def forget(self, session: str) -> None:
        self._positions.pop(session, None)

    def poll(self) -> list[Mark]:
        """New marks of the watched sessions (at most every poll_seconds; [] in between)."""
        now = time.monotonic()
        if now < self._next or not self._positions:
            return []
        self._next = now + self.poll_seconds
        found: list[Mark] = []
        try:
            for session, after in list(self._positions.items()):
                marks, self._positions[session] = self.store.new_marks(session, after)
                found.extend(marks)
        except redis.RedisError as exc:
            if now - self._last_warning >= WARN_EVERY:
                self._last_warning = now
                log.warning("cannot read the teacher's marks from Redis (%s): neutral poses are learned "
                            "without them until it answers", exc)
        return found

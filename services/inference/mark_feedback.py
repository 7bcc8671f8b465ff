"""The teacher's marks of running sessions, read back from Redis for the baseline's neutral poses.

The web page stores a mark (shared/data/marks.py); inference follows each session it is running
for marks it has not seen, from the session's first: a restarted inference re-applies the
marks made before. The reading runs in a thread of its own, so a Redis that is down, slow
or hung never holds up a prediction; it is logged (once a minute at most) and retried.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import redis

from shared.data.marks import Mark, MarkStore

POLL_SECONDS = 1.0
WARN_EVERY = 60.0

log = logging.getLogger("inference")


class MarkFollower:
    def __init__(self, store: MarkStore, poll_seconds: float = POLL_SECONDS) -> None:
        self.store = store
        self.poll_seconds = poll_seconds
        self._positions: dict[str, str] = {}  # session -> last stream entry read
        self._lock = threading.Lock()
        self._found: queue.SimpleQueue[Mark] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._last_warning = -WARN_EVERY
        self._thread = threading.Thread(target=self._run, name="mark-follower", daemon=True)
        self._thread.start()

    def watch(self, session: str) -> None:
        with self._lock:
            self._positions.setdefault(session, "0-0")

    def forget(self, session: str) -> None:
        with self._lock:
            self._positions.pop(session, None)

    def poll(self) -> list[Mark]:
        """Marks found since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self._found.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            with self._lock:
                watched = dict(self._positions)
            try:
                for session, after in watched.items():
                    marks, position = self.store.new_marks(session, after)
                    with self._lock:
                        if session in self._positions:  # not forgotten meanwhile
                            self._positions[session] = position
                    for mark in marks:
                        self._found.put(mark)
            except redis.RedisError as exc:
                now = time.monotonic()
                if now - self._last_warning >= WARN_EVERY:
                    self._last_warning = now
                    log.warning("cannot read the teacher's marks from Redis (%s): neutral poses are learned "
                                "without them until it answers", exc)

"""One student id numbering per (session, stream), shared by plain frames and a call's grid.

A stream's students are numbered by the face tracker (tracker.py) on plain frames and by the tile
tracker (gallery.py) on frames that show a call's grid. With a numbering each, both started at 1: a
screen that showed a person, then a call (or a false grid for a frame), gave the person and a
participant the same id, and the report, the live page and the aggregator, which key students by
(session, stream, id), merged them (issue 21). One allocator handed to both keeps the two trackers
apart from each other's state (neither reads the other's tracks or counters), and a stream that
only ever shows one of the two is numbered 1, 2, ... as before.
"""

from __future__ import annotations

StreamKey = tuple[str, str]  # (session, stream)


class StudentIds:
    """The next student id of each stream; ids start at 1."""

    def __init__(self) -> None:
        self._next: dict[StreamKey, int] = {}

    def take(self, key: StreamKey) -> int:
        """A new student id of the stream, never given before (since its last reset)."""
        sid = self._next.get(key, 1)
        self._next[key] = sid + 1
        return sid

    def reset(self, key: StreamKey) -> None:
        """The stream is forgotten: its numbering starts over. Its trackers are reset with it (the
        service forgets a stream in both at once), so no id still in use is given again."""
        self._next.pop(key, None)

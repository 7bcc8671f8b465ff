"""Whether a page watches the live video: the web says so in Redis, the reporter reads it.

The `live` link is PUB/SUB, so the reporter cannot see who reads it; drawing the overlay and
encoding it as JPEG for a page nobody has open was most of its CPU (a 5x5 call's 1920x1080 frame:
about 30 ms). The web, which holds the browsers' video streams, keeps these keys (P = REDIS_PREFIX),
each with a short TTL and refreshed while true, so a web that stops leaves none behind:

  P:live:web                              a web reads the live link and says here what is watched
  P:live:watched:<session>                a page watches every stream of the session
  P:live:watched:<session>:stream:<id>    a page watches that stream (the page shows one tile each)

One key per fact, never one value listing them: two webs on one Redis only ever refresh keys, so
neither hides what the other's pages watch. Not under P:session:<sid>: those keys get the long
TTL of a reported session (REPORTED_SESSION_TTL). The timings are in shared/ops/config.py
(LIVE_WATCH_*): the layers below ops take them as arguments.

The reporter draws a stream's live frame when a page watches it, and whenever it cannot know:
Redis unreadable, or no web saying anything (P:live:web absent: no web, or one without Redis):
the safe side is a page that works.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import redis


def web_key(prefix: str) -> str:
    return f"{prefix}:live:web"


def session_key(prefix: str, session: str) -> str:
    return f"{prefix}:live:watched:{session}"


def stream_key(prefix: str, session: str, stream: str) -> str:
    return f"{prefix}:live:watched:{session}:stream:{stream}"


def say_watched(client: redis.Redis, prefix: str, ttl: float, session: str | None, every_stream: bool,
                streams: Iterable[str]) -> None:
    """The web's refresh: it is here, and what its pages watch of `session` (None: no live session
    yet). Raises redis.RedisError (the caller says it and tries again)."""
    ms = max(1, int(ttl * 1000))
    pipe = client.pipeline(transaction=False)
    pipe.set(web_key(prefix), "1", px=ms)
    if session is not None:
        if every_stream:
            pipe.set(session_key(prefix, session), "1", px=ms)
        for stream in streams:
            pipe.set(stream_key(prefix, session, stream), "1", px=ms)
    pipe.execute()


@dataclass(frozen=True)
class Watching:
    """What was read of one session: `known` False means "cannot tell" (draw)."""

    known: bool
    every_stream: bool = False
    streams: frozenset[str] = frozenset()

    def covers(self, stream: str) -> bool:
        return not self.known or self.every_stream or stream in self.streams

    @property
    def anything(self) -> bool:
        return not self.known or self.every_stream or bool(self.streams)


CANNOT_TELL = Watching(known=False)


def read_watching(client: redis.Redis, prefix: str, session: str, streams: Iterable[str]) -> Watching:
    """One read (MGET) of what the web says of `session` and its `streams`. Raises redis.RedisError."""
    names = sorted(set(streams))
    values = client.mget([web_key(prefix), session_key(prefix, session),
                          *(stream_key(prefix, session, s) for s in names)])
    if values[0] is None:
        return CANNOT_TELL  # no web says what is watched
    return Watching(True, values[1] is not None,
                    frozenset(s for s, v in zip(names, values[2:], strict=True) if v is not None))


@dataclass
class _Entry:
    watching: Watching
    next_read: float
    streams: set[str]


class WatchReader:
    """The reporter's cached view: at most one read a session every `interval` seconds (and at once for a
    stream it has not asked about yet); after a failed read, `retry` seconds of drawing before the next,
    so a Redis that hangs costs a timeout that often, not every second."""

    def __init__(self, client: redis.Redis, prefix: str, interval: float, retry: float) -> None:
        self.r = client
        self.prefix = prefix
        self.interval = interval
        self.retry = retry
        self.entries: dict[str, _Entry] = {}
        self.error: str = ""  # the last read's failure, "" when it worked

    def watching(self, session: str, stream: str) -> Watching:
        now = time.monotonic()
        entry = self.entries.get(session)
        if entry is not None and now < entry.next_read and stream in entry.streams:
            return entry.watching
        streams = (entry.streams if entry else set()) | {stream}
        try:
            watching, next_read = read_watching(self.r, self.prefix, session, streams), now + self.interval
            self.error = ""
        except redis.RedisError as exc:
            watching, next_read = CANNOT_TELL, now + self.retry
            self.error = str(exc) or type(exc).__name__
        # Sessions not asked about for a minute are forgotten (a reporter runs for months of classes).
        for old in [s for s, e in self.entries.items() if e.next_read < now - 60]:
            del self.entries[old]
        self.entries[session] = _Entry(watching, next_read, streams)
        return watching

    def forget(self, session: str) -> None:
        self.entries.pop(session, None)

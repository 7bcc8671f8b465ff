"""The web says in Redis which live video its pages watch, so the reporter draws and encodes only
frames a page shows (the keys: shared/data/live_watch.py).

A thread of its own, never the HTTP server's event loop nor the live link's loop: a Redis that
hangs holds up only this. It refreshes every LIVE_WATCH_REFRESH seconds, and at once when a page
opens a video (the reporter then reads it within LIVE_WATCH_READ): the video starts within a
second or two. A page that leaves is not said: its keys lapse (LIVE_WATCH_TTL), so another web
on the same Redis never has its pages' keys deleted.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis
from prometheus_client import Counter, Gauge

from services.web.fanout import VideoFeeds
from shared.data.live_watch import say_watched

WATCH_ERRORS = Counter("engagement_web_watch_errors_total",
                       "Failed writes of which live video the pages watch (the reporter then draws every frame)")
WATCHED = Gauge("engagement_web_video_watched", "1 while a page watches some of the live video")


class WatchKeeper:
    def __init__(self, client: redis.Redis, prefix: str, video: VideoFeeds, session: Callable[[], str | None],
                 ttl: float, refresh: float, log: logging.Logger) -> None:
        self.r = client
        self.prefix = prefix
        self.video = video
        self.session = session
        self.ttl = ttl
        self.refresh_every = refresh
        self.log = log
        self.stop = threading.Event()
        self.said: tuple[bool, list[str]] | None = None  # what was watched at the last refresh (a log line a change)
        self.failing = False
        self.thread = threading.Thread(target=self._run, name="live-watch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.video.opened.clear()
            self.refresh()
            self.video.opened.wait(self.refresh_every)

    def refresh(self) -> None:
        every, streams = self.video.watched()
        WATCHED.set(int(every or bool(streams)))
        if (every, streams) != self.said:
            self.said = (every, streams)
            if every or streams:
                self.log.info("the live video is watched (%s): the reporter draws it",
                              "every stream" if every else ", ".join(streams))
            else:
                self.log.info("no page watches the live video: the reporter does not draw it")
        try:
            say_watched(self.r, self.prefix, self.ttl, self.session(), every, streams)
        except redis.RedisError as exc:
            WATCH_ERRORS.inc()
            if not self.failing:
                self.log.warning("cannot say in Redis which live video is watched (%s): the reporter draws all of it "
                                 "while it cannot read that", exc)
            self.failing = True
            return
        self.failing = False

    def close(self) -> None:
        self.stop.set()
        self.video.opened.set()
        self.thread.join(5)

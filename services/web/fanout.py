"""One bounded queue per browser: what a slow browser cannot take is dropped for it alone.

The service's loop thread publishes (a JPEG, an update); each connected page reads its own
queue on the web server's event loop. A full queue drops its oldest item and counts it, so
a browser that stops reading never holds memory or slows the pipeline.

A Fanout given an `encode` takes documents and encodes each once for all its browsers; with
no browser connected nothing is encoded (every update of a class nobody watches was a JSON
dump for nobody): the last document waits as it is, encoded when a page comes. A document
published later (`publish_later`) is not even made while nobody reads: the class's snapshot of
72 webcams was most of the web's CPU, for every update of a class nobody watched.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Gauge

CLIENTS = Gauge("engagement_web_clients", "Browsers connected to a live stream", ["stream"])
DROPPED = Counter("engagement_web_dropped_total",
                  "Items dropped for a browser that did not read them in time (its queue was full)", ["stream"])
SENT = Counter("engagement_web_sent_total", "Items put on browsers' queues", ["stream"])


class Subscription:
    def __init__(self, fanout: Fanout, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.fanout = fanout
        self.loop = loop
        self.items: deque[Any] = deque()
        self.size = size
        self.ready = asyncio.Event()
        self.closed = False

    def put(self, item: Any) -> None:
        """Any thread. Drops the oldest item when full (counted)."""
        if len(self.items) >= self.size:
            self.items.popleft()
            DROPPED.labels(self.fanout.name).inc()
        self.items.append(item)
        SENT.labels(self.fanout.name).inc()
        try:
            self.loop.call_soon_threadsafe(self.ready.set)
        except RuntimeError:  # the event loop is gone: the server is stopping
            self.closed = True

    async def get(self, timeout: float) -> Any | None:
        """The next item; None after `timeout` seconds without one (time for a keep-alive)."""
        while not self.items:
            if self.closed:
                raise ConnectionAbortedError("stream closed")
            self.ready.clear()
            try:
                await asyncio.wait_for(self.ready.wait(), timeout)
            except TimeoutError:
                return None
        return self.items.popleft()

    def close(self) -> None:
        self.fanout.unsubscribe(self)


class Fanout:
    def __init__(self, name: str, queue_size: int, encode: Callable[[Any], Any] | None = None,
                 on_subscribe: Callable[[], None] | None = None, latest_max_age: float | None = None) -> None:
        self.name = name
        self.queue_size = queue_size
        self.encode = encode
        self.on_subscribe = on_subscribe  # a page came (the video: say so now, not at the next refresh)
        # The video's last frame is given to a new page only this fresh: frames stop while nobody watches,
        # and a page opened later would start on a picture of minutes ago (None: any age, the documents).
        self.latest_max_age = latest_max_age
        self.latest_at = 0.0
        self.lock = threading.Lock()
        self.subscriptions: set[Subscription] = set()
        self.latest: Any = None  # a new page starts with the last item, not with nothing
        self.unencoded: Any = None  # the last document while nobody reads (with `encode`): the latest, once encoded
        self.unmade: Callable[[], Any] | None = None  # makes the last document while nobody reads (publish_later)

    def subscribe(self) -> Subscription:
        sub = Subscription(self, asyncio.get_running_loop(), self.queue_size)
        with self.lock:
            make, self.unmade = self.unmade, None
        if make is not None:  # made outside the lock: it takes the state's own; it is the latest from here
            self.publish(make())
        with self.lock:
            self.subscriptions.add(sub)
            if self.unencoded is not None:
                assert self.encode is not None
                self.latest, self.unencoded = self.encode(self.unencoded), None
            max_age = self.latest_max_age
            if self.latest is not None and (max_age is None or time.monotonic() - self.latest_at <= max_age):
                sub.items.append(self.latest)
        CLIENTS.labels(self.name).set(len(self.subscriptions))
        if self.on_subscribe is not None:
            self.on_subscribe()
        return sub

    def watched(self) -> bool:
        """Whether a browser reads this stream now."""
        with self.lock:
            return bool(self.subscriptions)

    def unsubscribe(self, sub: Subscription) -> None:
        with self.lock:
            self.subscriptions.discard(sub)
        CLIENTS.labels(self.name).set(len(self.subscriptions))

    def publish(self, item: Any) -> None:
        """An item for every browser (a document, when the Fanout encodes: see the module's doc)."""
        if self.encode is not None:
            with self.lock:
                self.unmade = None  # this one is newer
                if not self.subscriptions:  # nobody reads: encoded if a page comes before the next one
                    self.unencoded = item
                    return
            item = self.encode(item)  # outside the lock: pages joining meanwhile are not held up
        with self.lock:
            self.latest, self.unencoded, self.latest_at = item, None, time.monotonic()
            subs = list(self.subscriptions)
        for sub in subs:
            sub.put(item)

    def publish_later(self, make: Callable[[], Any]) -> None:
        """A document made now if a browser reads this fanout, else only when the next page comes (from the
        state as it is then, the newest). With an `encode` only: a page's first item is then a document."""
        assert self.encode is not None, "publish_later is for a Fanout of documents"
        with self.lock:
            if not self.subscriptions:
                self.unencoded, self.unmade = None, make
                return
        self.publish(make())

    def close(self) -> None:
        """Ends every stream (the server is stopping)."""
        with self.lock:
            subs = list(self.subscriptions)
        for sub in subs:
            sub.closed = True
            try:
                sub.loop.call_soon_threadsafe(sub.ready.set)
            except RuntimeError:
                pass


class VideoFeeds:
    """The live video: the whole session's frames, and one feed per stream (a tile each on the page).

    A stream's feed is made when its first frame comes, or when a page asks for a stream the
    live session has (its tile opens before the first frame), at most `max_feeds` of them (a
    class has a few cameras; the bound keeps memory and metric labels small whatever comes).
    """

    def __init__(self, name: str, queue_size: int, max_feeds: int = 16, latest_max_age: float | None = None) -> None:
        self.name = name
        self.queue_size = queue_size
        self.max_feeds = max_feeds
        self.latest_max_age = latest_max_age
        # Set when a page opens a feed: what is watched goes to Redis at once (services/web/watching.py).
        self.opened = threading.Event()
        self.all = self._fanout(name)
        self.lock = threading.Lock()
        self.feeds: dict[str, Fanout] = {}

    def _fanout(self, name: str) -> Fanout:
        return Fanout(name, self.queue_size, on_subscribe=self.opened.set, latest_max_age=self.latest_max_age)

    def watched(self) -> tuple[bool, list[str]]:
        """Whether a page reads the session's feed (every stream), and the streams whose own feed one reads."""
        with self.lock:
            feeds = dict(self.feeds)
        return self.all.watched(), sorted(stream for stream, feed in feeds.items() if feed.watched())

    def publish(self, stream: str, item: Any) -> None:
        self.all.publish(item)
        with self.lock:
            feed = self.feeds.get(stream)
            if feed is None and len(self.feeds) < self.max_feeds:
                feed = self.feeds[stream] = self._fanout(f"{self.name}:{stream}")
        if feed is not None:
            feed.publish(item)

    def feed(self, stream: str | None, known: bool = False) -> Fanout | None:
        """The session's feed (no stream asked), that stream's, or None for a stream never seen.

        known: the live session has this stream (its updates came): a page may wait for its
        first frame, so the feed is made now.
        """
        if not stream:
            return self.all
        with self.lock:
            feed = self.feeds.get(stream)
            if feed is None and known and len(self.feeds) < self.max_feeds:
                feed = self.feeds[stream] = self._fanout(f"{self.name}:{stream}")
            return feed

    def close(self) -> None:
        self.all.close()
        with self.lock:
            feeds = list(self.feeds.values())
        for feed in feeds:
            feed.close()

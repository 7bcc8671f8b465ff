"""The web says in the real Redis which live video its pages watch (shared/data/live_watch.py):
the keys come while a real client holds a video stream, and lapse once it has gone."""

from __future__ import annotations

import time
import uuid

import httpx
import redis

from shared.data.live_watch import read_watching, session_key, stream_key, web_key
from shared.ops.config import LIVE_WATCH_TTL
from tests.support.web import REDIS_URL, poll_value


def _live_session(web, link) -> str:
    session = f"web-{uuid.uuid4().hex[:8]}"

    def shown() -> bool:
        link.update(session, 0, {1: 0}, stream="cam0")
        return httpx.get(f"{web.url}/api/live").json()["session"] == session
    poll_value(shown, 15, 0.2, "the update on /api/live")
    return session


def _first_bytes(r: httpx.Response) -> None:
    assert r.status_code == 200 and r.headers["content-type"].startswith("multipart/x-mixed-replace")


def test_the_web_says_which_video_a_page_watches_and_it_lapses_after(web, live_link):
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    session = _live_session(web, live_link)
    # A web with no page on the video: it is there, and says nothing is watched.
    poll_value(lambda: r.exists(web_key(web.prefix)), 5, what="the web's key")
    nothing = read_watching(r, web.prefix, session, ["cam0"])
    assert nothing.known and not nothing.anything
    assert web.metric("engagement_web_video_watched") == 0
    # A page opens stream cam0's tile: said at once, for that stream only.
    with httpx.stream("GET", f"{web.url}/api/live/video.mjpg?stream=cam0", timeout=10) as resp:
        _first_bytes(resp)
        poll_value(lambda: r.exists(stream_key(web.prefix, session, "cam0")), 3, what="cam0 watched")
        # Longer than a TTL later it is still there: refreshed while the page holds the video.
        time.sleep(LIVE_WATCH_TTL + 1)
        watching = read_watching(r, web.prefix, session, ["cam0", "cam1"])
        assert watching.covers("cam0") and not watching.covers("cam1") and not watching.every_stream
        assert 0 < r.pttl(stream_key(web.prefix, session, "cam0")) <= LIVE_WATCH_TTL * 1000
        assert web.metric("engagement_web_video_watched") == 1
    # The page has gone: the key lapses.
    poll_value(lambda: not r.exists(stream_key(web.prefix, session, "cam0")), LIVE_WATCH_TTL + 5,
               what="cam0's key lapsed")
    assert r.exists(web_key(web.prefix))
    # The whole session's video (every stream).
    with httpx.stream("GET", f"{web.url}/api/live/video.mjpg", timeout=10) as resp:
        _first_bytes(resp)
        poll_value(lambda: r.exists(session_key(web.prefix, session)), 3, what="every stream watched")
        assert read_watching(r, web.prefix, session, ["cam7"]).covers("cam7")
    poll_value(lambda: not r.exists(session_key(web.prefix, session)), LIVE_WATCH_TTL + 5, what="the key lapsed")
    assert web.metric("engagement_web_watch_errors_total") == 0

"""The live page's fan-out (services/web/fanout.py) with an encoding: what nobody reads is never encoded,
and a page that comes late still starts with the last document, encoded as the others."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from services.web.fanout import Fanout, VideoFeeds
from services.web.live import LiveState
from services.web.streams import sse_event
from shared.bus.messages import make_header
from shared.data.running_totals import Totals


def _counting_encoder() -> tuple[list[Any], Any]:
    calls: list[Any] = []

    def encode(doc: dict[str, Any]) -> bytes:
        calls.append(doc)
        return sse_event(doc)
    return calls, encode


def test_nothing_is_encoded_for_nobody_and_a_late_page_gets_the_last_document():
    calls, encode = _counting_encoder()
    fan = Fanout("events-test", 4, encode=encode)
    docs = [{"seq": i, "students": [{"id": 1, "level": i % 4, "probs": [0.25] * 4}]} for i in range(50)]
    for doc in docs:
        fan.publish(doc)
    assert calls == []  # fifty updates of a class nobody watches: not one JSON dump

    async def page() -> tuple[bytes, bytes]:
        sub = fan.subscribe()
        first = await sub.get(1.0)
        fan.publish({"seq": 99})
        second = await sub.get(1.0)
        sub.close()
        return first, second

    first, second = asyncio.run(page())
    assert first == sse_event(docs[-1]) and second == sse_event({"seq": 99})
    assert len(calls) == 2  # the late page's first document, then one encoding for every page
    fan.publish({"seq": 100})  # the page has gone: nobody again
    assert len(calls) == 2


def test_a_document_published_later_is_not_made_for_nobody_and_a_late_page_gets_the_state_it_comes_to():
    calls, encode = _counting_encoder()
    fan = Fanout("events-test", 4, encode=encode)
    state = {"seq": 0}
    made: list[int] = []

    def snapshot() -> dict[str, Any]:
        made.append(state["seq"])
        return dict(state)

    for seq in range(1, 51):  # fifty updates of a class nobody watches: no snapshot made, none encoded
        state["seq"] = seq
        fan.publish_later(snapshot)
    assert made == [] and calls == []
    state["seq"] = 51  # applied, its document not yet published when the page comes

    async def page() -> list[bytes | None]:
        sub = fan.subscribe()
        first = await sub.get(1.0)
        state["seq"] = 52
        fan.publish_later(snapshot)  # a page reads: made and encoded now
        second = await sub.get(1.0)
        sub.close()
        return [first, second]

    assert asyncio.run(page()) == [sse_event({"seq": 51}), sse_event({"seq": 52})]
    assert made == [51, 52] and len(calls) == 2
    fan.publish_later(snapshot)  # the page has gone
    fan.publish({"seq": 53})  # a document published as it is (a class's end) is newer than any waiting
    assert made == [51, 52]

    async def late_page() -> bytes | None:
        sub = fan.subscribe()
        first = await sub.get(1.0)
        sub.close()
        return first

    assert asyncio.run(late_page()) == sse_event({"seq": 53}) and made == [51, 52]


def test_every_page_gets_each_document_encoded_once():
    calls, encode = _counting_encoder()
    fan = Fanout("events-test", 8, encode=encode)

    async def pages() -> list[list[bytes]]:
        subs = [fan.subscribe() for _ in range(3)]
        for seq in range(5):
            fan.publish({"seq": seq})
        got = [[await sub.get(1.0) for _ in range(5)] for sub in subs]
        for sub in subs:
            sub.close()
        return got

    got = asyncio.run(pages())
    assert got == [[sse_event({"seq": seq}) for seq in range(5)]] * 3
    assert len(calls) == 5


def test_an_event_of_several_streams_carries_each_streams_totals_as_the_update_had_them():
    """The snapshot takes each stream's map from the session's, converted once; a stream without totals yet
    shows zeros."""
    one = {"frames": 3, "frames_without_faces": 1, "faces": 2, "predictions": 2, "levels": {"0": 1, "1": 0, "2": 1,
                                                                                             "3": 0}}
    totals = Totals.of({**one, "frames": 3, "streams": {"a": one}})
    live = LiveState(class_level_only=False)
    live.load("s-fan", {"streams": ["a", "b"]}, one, [])  # Redis lists "b", nothing counted in it yet
    update = make_header("update", "s-fan", "a", 3, 1000.0, {}, totals=totals,
                         predictions=[{"student": 1, "box": [1, 2, 3, 4], "probs": [0.7, 0.1, 0.1, 0.1], "level": 0}])
    live.apply_update(update)
    event = live.snapshot(history=False)
    zeros = {"frames": 0, "frames_without_faces": 0, "faces": 0, "predictions": 0,
             "levels": {"0": 0, "1": 0, "2": 0, "3": 0}}
    assert event["stream_totals"] == {"a": one, "b": zeros}
    assert event["totals"] == {**one, "streams": {"a": one}}


def test_a_page_opening_the_video_starts_on_the_last_frame_only_if_it_is_fresh():
    """No page watching, no frames come (the reporter draws none): a frame of long ago is not shown as live."""
    stale, fresh = VideoFeeds("video-test", 2, latest_max_age=0.1), VideoFeeds("video-test", 2, latest_max_age=60)
    stale.publish("cam0", b"old")
    fresh.publish("cam0", b"new")
    time.sleep(0.3)

    async def first(feeds: VideoFeeds, stream: str) -> bytes | None:
        feed = feeds.feed(stream)
        assert feed is not None
        sub = feed.subscribe()
        item = await sub.get(0.2)
        sub.close()
        return item

    assert asyncio.run(first(stale, "cam0")) is None and asyncio.run(first(stale, "")) is None
    assert asyncio.run(first(fresh, "cam0")) == b"new" and asyncio.run(first(fresh, "")) == b"new"
    # A page opening a feed is said at once (services/web/watching.py waits on it).
    assert stale.opened.is_set()

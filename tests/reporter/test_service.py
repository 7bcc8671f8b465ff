"""The reporter as a running service, fed by the real aggregator over real ZeroMQ.

The test sends predictions to the aggregator; the aggregator writes Redis and sends
updates and eos to the reporter; the reporter builds the report from Redis. The preview
link is a real XPUB socket, so the test knows when the reporter has subscribed.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import msgpack
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import redis
import zmq

from services.aggregator.service import AggregatorService
from services.reporter import service as reporter_service
from services.reporter.messaging import Publisher
from services.reporter.outbox import Outbox
from services.reporter.service import ReporterService, expand_argv
from shared.bus.messages import Header, as_dict, make_header
from shared.data.durable_queue import DurableQueue
from shared.data.envelope import parse
from shared.data.live_watch import say_watched
from shared.data.outbox import outbox_path, queued_for
from shared.data.totals import FrameRecord, Store
from shared.ops.config import load_settings
from shared.ops.ports import free_ports
from tests.aggregator.harness import (
    PrivateRedis,
    eos_header,
    predictions_header,
    unique_prefix,
)
from tests.harness import Peer, Running
from tests.mqtt_bridge.helpers import PlainBroker
from tests.support.env import REDIS_URL
from tests.support.metrics import local_metric
from tests.support.mqtt import Collector
from tests.support.waiting import wait_for, wait_until
from tests.support.web import WebProcess


class Pipeline:
    """Test -> aggregator -> reporter, plus a preview publisher, on free loopback ports."""

    def __init__(self, tmp_path: Path, streams: str = "", **reporter_values) -> None:
        self.prefix = unique_prefix()
        self.session = f"s-{self.prefix}"
        # Three ports from one call: separate calls may hand out the same port twice.
        pred_ep, upd_ep, preview_ep = (f"tcp://127.0.0.1:{port}" for port in free_ports(3))
        self.report_dir = tmp_path / "reports"
        common = dict(redis_url=REDIS_URL, redis_prefix=self.prefix, hwm=1000, class_id="class-r", streams=streams)
        self.aggregator = Running(AggregatorService, predictions_in=f"pull+bind:{pred_ep}",
                                  updates_out=f"push+bind:{upd_ep}", **common)
        values = dict(updates_in=f"pull+connect:{upd_ep}", preview_in=f"sub+connect:{preview_ep}",
                      report_dir=str(self.report_dir), headless=1, **common)
        values.update(reporter_values)
        self.reporter = Running(ReporterService, **values)
        self.preview = zmq.Context.instance().socket(zmq.XPUB)
        self.preview.setsockopt(zmq.LINGER, 0)
        self.preview.bind(preview_ep)
        self.sender = Peer(zmq.PUSH, pred_ep, bind=False)

    def __enter__(self) -> Pipeline:
        # Updates are droppable (overlay data): wait until the reporter is connected to the
        # aggregator, or the first updates would be dropped for want of a peer.
        aggregator = self.aggregator.__enter__()
        self.reporter_svc = self.reporter.__enter__()
        # The link counts its own handshaked peers (shared/bus/link_peers.py): a second monitor on the
        # socket would replace that one (ZeroMQ keeps one a socket) and kill its thread.
        peers = aggregator.senders["updates"].peers
        deadline = time.monotonic() + 10
        while peers.peers < 1:
            assert time.monotonic() < deadline, "reporter never connected to the aggregator"
            time.sleep(0.02)
        # XPUB hands us the reporter's subscription: from then on no preview frame is lost.
        assert self.preview.poll(10_000), "reporter never subscribed to the preview"
        self.preview.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.aggregator.__exit__(*exc)
            self.reporter.__exit__(*exc)
        finally:
            self.sender.close()
            self.preview.close()
            r = redis.Redis.from_url(REDIS_URL)
            keys = list(r.scan_iter(match=f"{self.prefix}:*"))
            if keys:
                r.delete(*keys)

    def frame(self, seq: int, image: np.ndarray, stream: str = "cam0") -> None:
        h, w = image.shape[:2]
        header = make_header("frame", self.session, stream, seq, time.time(), {}, width=w, height=h,
                             encoding="bgr", t_media=seq * 0.5, source="test")
        self.preview.send_multipart([b"frame", msgpack.packb(as_dict(header)), image.tobytes()])

    def report_paths(self) -> tuple[Path, Path]:
        return self.report_dir / f"{self.session}.txt", self.report_dir / f"{self.session}.json"

    def wait_report(self, timeout: float = 20.0) -> dict:
        txt, js = self.report_paths()
        wait_for(lambda: txt.exists() and js.exists(), "the report", timeout)
        return json.loads(js.read_text())


def _frames(session: str, n: int) -> list[Header]:
    # Students 1 and 2 with changing levels; every fourth frame has no face.
    return [predictions_header(session, seq, [] if seq % 4 == 3 else [(1, seq % 4), (2, (seq + 1) % 4)])
            for seq in range(n)]


def test_eos_writes_both_reports_with_the_totals_that_were_sent(tmp_path, capsys):
    with Pipeline(tmp_path) as p:
        frames = _frames(p.session, 12)
        for h in frames:
            p.sender.send(h)
        p.sender.send(frames[4])  # a repeat: counted once
        p.sender.send(eos_header(p.session, 12))
        report = p.wait_report()
    levels = Counter(pr["level"] for h in frames for pr in h.predictions)
    per_student = Counter(pr["student"] for h in frames for pr in h.predictions)
    totals = report["totals"]
    assert totals["frames"] == 12 and totals["frames_without_faces"] == 3
    assert totals["predictions"] == sum(levels.values())
    assert {int(k): v for k, v in totals["levels"].items() if v} == dict(levels)
    assert {s["student"]: s["predictions"] for s in report["students"]} == dict(per_student)
    assert report["session"] == p.session and report["class"] == "class-r"
    assert report["ended"] is not None and report["model"]["baseline"] is True
    txt, js = p.report_paths()
    assert "Total frames: 12" in txt.read_text()
    assert f"report: {txt} {js}" in capsys.readouterr().out
    assert not list(p.report_dir.glob(".*"))  # no temp file left behind


@pytest.mark.parametrize("setting", ["class_level_only", "eu_ai_act_mode"])
def test_class_level_only_reports_have_no_student_rows(tmp_path, setting):
    with Pipeline(tmp_path, **{setting: 1}) as p:
        for h in _frames(p.session, 6):
            p.sender.send(h)
        p.sender.send(eos_header(p.session, 6))
        report = p.wait_report()
    assert report["class_level_only"] is True
    assert report["students"] == [] and report["timeline"] == [] and report["episodes"] == []
    assert report["totals"]["frames"] == 6
    text = p.report_paths()[0].read_text()
    assert "id 1" not in text and "id 2" not in text


def test_overlay_and_recording_of_matched_frames(tmp_path):
    rec_dir = tmp_path / "rec"
    image = np.full((240, 320, 3), 90, np.uint8)
    drawn_before = local_metric("engagement_overlay_frames_total")
    with Pipeline(tmp_path, record=1, record_path=str(rec_dir), record_filename="session.avi",
                  record_width=320, record_height=240) as p:
        frames = _frames(p.session, 8)
        for h in frames:
            p.frame(h.seq, image)
            p.sender.send(h)
        wait_for(lambda: local_metric("engagement_overlay_frames_total") >= drawn_before + 8, "8 frames drawn")
        p.sender.send(eos_header(p.session, 8))
        p.wait_report()
    cap = cv2.VideoCapture(str(rec_dir / "session.avi"))
    count = 0
    first = None
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        first = frame if first is None else first
        count += 1
    assert count == 8
    # The overlay is in the recording: the plain grey frame was drawn on.
    assert np.abs(first.astype(int) - 90).max() > 60


def test_a_16_9_class_is_recorded_16_9_within_record_width_and_height(tmp_path):
    rec_dir = tmp_path / "rec"
    drawn_before = local_metric("engagement_overlay_frames_total")
    with Pipeline(tmp_path, record=1, record_path=str(rec_dir), record_filename="wide.avi",
                  record_width=320, record_height=240) as p:
        frames = _frames(p.session, 3)
        for h in frames:
            p.frame(h.seq, np.full((720, 1280, 3), 90, np.uint8))
            p.sender.send(h)
        wait_for(lambda: local_metric("engagement_overlay_frames_total") >= drawn_before + 3, "3 frames drawn")
        p.sender.send(eos_header(p.session, 3))
        p.wait_report()
    cap = cv2.VideoCapture(str(rec_dir / "wide.avi"))
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    cap.release()
    assert size == (320, 180)  # the bound, aspect kept (it was squashed to 320x240)


def test_no_recording_without_record(tmp_path):
    rec_dir = tmp_path / "rec"
    with Pipeline(tmp_path, record_path=str(rec_dir)) as p:
        for h in _frames(p.session, 3):
            p.frame(h.seq, np.zeros((120, 160, 3), np.uint8))
            p.sender.send(h)
        p.sender.send(eos_header(p.session, 3))
        p.wait_report()
    assert not rec_dir.exists()


def test_bad_input_is_counted_and_the_report_still_comes(tmp_path):
    rejected_before = local_metric("engagement_messages_rejected_total", service="reporter", reason="bad_msgpack")
    bad_frames_before = local_metric("engagement_bad_frames_total", service="reporter")
    # Recording: the frame is wanted, so it is decoded (one nobody would see is not even read).
    with Pipeline(tmp_path, record=1) as p:
        p.preview.send_multipart([b"frame", b"\xc1\x00junk", b""])
        # A frame whose JPEG header is fine but whose data is not an image.
        header = make_header("frame", p.session, "cam0", 0, time.time(), {}, width=64, height=48,
                             encoding="jpeg", t_media=0.0, source="test")
        p.preview.send_multipart([b"frame", msgpack.packb(as_dict(header)), b"\xff\xd8not a jpeg"])
        for h in _frames(p.session, 4):
            p.sender.send(h)
        wait_for(lambda: local_metric("engagement_bad_frames_total", service="reporter") >= bad_frames_before + 1,
                 "the undecodable frame counted", timeout=10)
        p.sender.send(eos_header(p.session, 4))
        report = p.wait_report()
    assert report["totals"]["frames"] == 4
    assert local_metric("engagement_messages_rejected_total", service="reporter", reason="bad_msgpack") \
        == rejected_before + 1
    assert local_metric("engagement_bad_frames_total", service="reporter") == bad_frames_before + 1


class Subscriber:
    """A real MQTT client on the local Mosquitto, collecting JSON payloads per topic."""

    def __init__(self, topics: list[str]) -> None:
        self.messages: list[tuple[str, dict]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.raw: list[bytes] = []
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", 1883)
        self.client.loop_start()
        assert self.ready.wait(10), "MQTT subscription not acknowledged"

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.raw.append(message.payload)
        self.messages.append((message.topic, json.loads(message.payload)))

    def wait_for(self, kind: str, timeout: float = 15.0) -> list[dict]:
        def got() -> list[dict]:
            return [m for _, m in self.messages if m.get("type") == kind]

        wait_for(got, f"a {kind} over MQTT", timeout)
        return got()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_messaging_publishes_report_and_totals_to_a_real_subscriber(tmp_path):
    device = f"dev-{uuid.uuid4().hex[:8]}"
    sub = Subscriber([f"engagement/{device}/report", f"engagement/{device}/totals"])
    try:
        with Pipeline(tmp_path, messaging=1, device_id=device, mqtt_totals_interval=0.2) as p:
            frames = _frames(p.session, 5)
            for h in frames:
                p.sender.send(h)
            totals = sub.wait_for("totals")
            p.sender.send(eos_header(p.session, 5))
            report = p.wait_report()
            [published] = sub.wait_for("report")
    finally:
        sub.close()
    assert set(published) == {"schema", "type", "id", "device_id", "session", "sent_at", "body"}
    assert published["schema"] == 1 and published["id"] == f"{p.session}:report"
    assert published["device_id"] == device and published["session"] == p.session
    assert published["body"] == report
    assert totals[0]["id"] == f"{p.session}:totals:1"
    # The MQTT bridge accepts every envelope as it is (its own validator, not a copy of it).
    assert {parse(raw).type for raw in sub.raw} == {"report", "totals"}
    assert 0 < totals[0]["body"]["frames"] <= 5


def test_reference_short_options_map_onto_the_settings():
    argv = expand_argv(["-r", "-p", "/tmp/v", "-f", "a.avi", "-c", "XVID", "-fps", "5", "-hg", "240",
                        "-w", "320", "-m", "--headless"])
    s = load_settings("reporter", argv, env={})
    assert (s.record, s.record_path, s.record_filename, s.record_codec) == (1, "/tmp/v", "a.avi", "XVID")
    assert (s.record_fps, s.record_height, s.record_width, s.messaging, s.headless) == (5.0, 240, 320, 1, 1)
    s = load_settings("reporter", expand_argv(["--record", "0", "--messaging=0"]), env={})
    assert (s.record, s.messaging) == (0, 0)
    s = load_settings("reporter", expand_argv([]), env={})
    # 0 = follow the capture (its FPS and frame size), so a recording plays at the class's speed
    assert (s.record, s.record_codec, s.record_fps, s.record_width, s.record_height) == (0, "MJPG", 0.0, 0, 0)


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs Debian's redis-server")
def test_redis_down_at_eos_the_report_is_retried_until_it_comes(tmp_path):
    server = PrivateRedis(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    server.start()
    prefix = unique_prefix()
    session = f"s-{prefix}"
    store = Store.from_url(server.url, prefix=prefix)
    for h in _frames(session, 5):
        preds = [{"student": p["student"], "level": p["level"], "probs": p["probs"]} for p in h.predictions]
        store.record_frame(FrameRecord(session, "c", "cam0", h.seq, h.t_capture, h.t_media,
                                       len(preds), preds, h.model))
    upd_port, preview_port = free_ports(2)
    updates = Peer(zmq.PUSH, f"tcp://127.0.0.1:{upd_port}", bind=True)
    errors_before = local_metric("engagement_report_errors_total", reason="redis")
    report_dir = tmp_path / "reports"
    try:
        with Running(ReporterService, redis_url=server.url, redis_prefix=prefix, headless=1,
                     report_dir=str(report_dir), updates_in=f"pull+connect:tcp://127.0.0.1:{upd_port}",
                     preview_in=f"sub+connect:tcp://127.0.0.1:{preview_port}"):
            server.stop()
            updates.send(eos_header(session, 5))
            wait_for(lambda: local_metric("engagement_report_errors_total", reason="redis") > errors_before,
                     "the failed report counted", timeout=15)
            assert not (report_dir / f"{session}.json").exists()
            server.start()  # same append-only file: the totals are back
            wait_for((report_dir / f"{session}.json").exists, "the report after Redis came back")
        report = json.loads((report_dir / f"{session}.json").read_text())
        assert report["totals"]["frames"] == 5
        assert report["totals"]["predictions"] == sum(len(h.predictions) for h in _frames(session, 5))
    finally:
        updates.close()
        server.stop()


def test_messaging_with_the_broker_down_still_writes_the_report(tmp_path, monkeypatch):
    monkeypatch.setattr(reporter_service, "MQTT_ACK_TIMEOUT", 0.5)
    closed_port = free_ports(1)[0]  # nothing listens there
    with Pipeline(tmp_path, messaging=1, mqtt_port=closed_port, device_id="nowhere") as p:
        for h in _frames(p.session, 3):
            p.sender.send(h)
        p.sender.send(eos_header(p.session, 3))
        report = p.wait_report()
        # Not lost, queued (issue 22): the report and the final totals wait in the outbox for the broker.
        wait_for(lambda: queued_for(outbox_path(p.report_dir), p.session) == 2, "the report queued in the outbox")
    assert report["totals"]["frames"] == 3


def test_running_totals_with_the_broker_away_are_counted_not_waited_for(tmp_path, monkeypatch, caplog):
    # A snapshot every 0.2 s, the broker away: each would have held the reporter's loop (the live video)
    # a second and said an error; they are counted, said once a minute, and the report still queued.
    monkeypatch.setattr(reporter_service, "MQTT_ACK_TIMEOUT", 0.5)
    before = local_metric("engagement_mqtt_errors_total", type="totals")
    with Pipeline(tmp_path, messaging=1, mqtt_port=free_ports(1)[0], device_id="away", mqtt_totals_interval=0.2) as p:
        for h in _frames(p.session, 3):
            p.sender.send(h)
        wait_for(lambda: local_metric("engagement_mqtt_errors_total", type="totals") - before >= 5,
                 "running totals counted as not sent", timeout=10)
        p.sender.send(eos_header(p.session, 3))
        p.wait_report()
        wait_for(lambda: queued_for(outbox_path(p.report_dir), p.session) == 2, "the report queued in the outbox")
    said = [r.getMessage() for r in caplog.records if "running totals not sent" in r.getMessage()]
    assert len(said) == 1 and "the local broker is away" in said[0], said
    assert not [r for r in caplog.records if "not published: no connection" in r.getMessage() and ":totals:" in
                r.getMessage() and "final" not in r.getMessage()]


def _live_messages(p: Pipeline, live_port: int, image: np.ndarray, after_join: int = 3) -> list:
    """Frames and predictions through the pipeline until the live SUB has joined (a PUB drops
    what comes before), `after_join` more, then the eos; every live message up to its eos."""
    sub = Peer(zmq.SUB, f"tcp://127.0.0.1:{live_port}", bind=False)
    try:
        frames = _frames(p.session, 60)
        got, seq = [], 0
        while not got or after_join:
            assert seq < len(frames), "the live link carried nothing"
            if got:
                after_join -= 1
            p.frame(seq, image)
            p.sender.send(frames[seq])
            seq += 1
            if not got and sub.socket.poll(200):
                got.append(sub.recv())
        p.sender.send(eos_header(p.session, seq))
        p.wait_report()
        return got + sub.recv_until_eos()
    finally:
        sub.close()


def _page_watches(p: Pipeline, *streams: str, every: bool = False) -> None:
    """What the web says in Redis when a page has those streams' video open (none: a web whose pages
    watch nothing); a TTL longer than the test, where the web refreshes a short one."""
    say_watched(redis.Redis.from_url(REDIS_URL), p.prefix, 300, p.session, every, streams)


def _first_live_frame(p: Pipeline, sub: Peer, image: np.ndarray, start: int, pairs: int = 100) -> int | None:
    """Frames and their predictions, a few a second, until a live frame comes: its seq, or None."""
    for seq in range(start, start + pairs):
        p.frame(seq, image)
        p.sender.send(predictions_header(p.session, seq, [(1, seq % 4)]))
        while sub.socket.poll(50):
            msg = sub.recv()
            if msg.kind == "frame":
                return msg.header.seq
    return None


def test_live_link_carries_updates_the_drawn_overlay_and_the_end(tmp_path):
    (live_port,) = free_ports(1)
    image = np.full((240, 320, 3), 90, np.uint8)
    with Pipeline(tmp_path, live_out=f"pub+bind:tcp://127.0.0.1:{live_port}", live_video_fps=0) as p:
        _page_watches(p, every=True)
        msgs = _live_messages(p, live_port, image)
    kinds = Counter(m.kind for m in msgs)
    assert kinds["update"] >= 3 and kinds["frame"] >= 2 and kinds["eos"] == 1
    frame = next(m for m in msgs if m.kind == "frame")
    assert frame.header.encoding == "jpeg"
    drawn = cv2.imdecode(np.frombuffer(frame.payload, np.uint8), cv2.IMREAD_COLOR)
    assert drawn.shape == (240, 320, 3) and np.abs(drawn.astype(int) - 90).max() > 60  # the overlay, once
    update = next(m for m in msgs if m.kind == "update" and m.header.predictions)
    assert update.header.totals.frames >= 1 and update.header.model.baseline is True
    assert msgs[-1].header.session == p.session and msgs[-1].header.reason == "report_written"



def test_live_video_is_capped_per_stream_while_every_update_goes(tmp_path):
    """Frames drawn faster than LIVE_VIDEO_FPS (a file played unthrottled): the page gets at most
    that many a second, the rest counted; every update still goes."""
    (live_port,) = free_ports(1)
    image = np.full((240, 320, 3), 90, np.uint8)
    skipped_before = local_metric("engagement_live_frames_skipped_total")
    drawn_before = local_metric("engagement_overlay_frames_total")
    with Pipeline(tmp_path, live_out=f"pub+bind:tcp://127.0.0.1:{live_port}", live_video_fps=2) as p:
        _page_watches(p, "cam0")
        started = time.monotonic()
        msgs = _live_messages(p, live_port, image, after_join=20)
        elapsed = time.monotonic() - started
    kinds = Counter(m.kind for m in msgs)
    assert kinds["update"] >= 20
    assert 1 <= kinds["frame"] <= 2 * elapsed + 1, (kinds, elapsed)
    assert local_metric("engagement_live_frames_skipped_total") - skipped_before >= 20 - (2 * elapsed + 1)
    # Headless, not recording: a frame the page does not get is not drawn either.
    assert local_metric("engagement_overlay_frames_total") - drawn_before <= 2 * elapsed + 1


def test_no_page_watching_no_live_frame_is_drawn_while_every_update_goes(tmp_path):
    """The web says no page has the video open: nothing is drawn or encoded for it, and the captures
    are told to send no frame for it (the preview unsubscribed)."""
    (live_port,) = free_ports(1)
    drawn_before = local_metric("engagement_overlay_frames_total")
    with Pipeline(tmp_path, live_out=f"pub+bind:tcp://127.0.0.1:{live_port}", live_video_fps=0) as p:
        _page_watches(p, "another-stream")  # a page watches a stream of the class, not this one
        msgs = _live_messages(p, live_port, np.full((240, 320, 3), 90, np.uint8), after_join=10)
        changes = _subscriptions(p)
    kinds = Counter(m.kind for m in msgs)
    assert kinds["update"] >= 10 and kinds["eos"] == 1 and kinds["frame"] == 0, kinds
    assert changes[:1] == [b"\x00"], changes
    assert local_metric("engagement_overlay_frames_total") == drawn_before


def test_a_page_that_opens_the_video_mid_class_gets_it(tmp_path):
    (live_port,) = free_ports(1)
    image = np.full((240, 320, 3), 90, np.uint8)
    with Pipeline(tmp_path, live_out=f"pub+bind:tcp://127.0.0.1:{live_port}", live_video_fps=0) as p:
        _page_watches(p)
        sub = Peer(zmq.SUB, f"tcp://127.0.0.1:{live_port}", bind=False)
        try:
            assert _first_live_frame(p, sub, image, 0, pairs=20) is None
            assert local_metric("engagement_preview_subscribed") == 0
            _page_watches(p, "cam0")
            seq = _first_live_frame(p, sub, image, 20)
            assert seq is not None and seq >= 20
        finally:
            sub.close()


def _subscription(p: Pipeline) -> bytes:
    """The next subscription change the reporter sends the captures' publisher: b"\\x01" on, b"\\x00" off."""
    assert p.preview.poll(10_000), "the reporter's preview subscription did not change"
    return p.preview.recv()


def _subscriptions(p: Pipeline) -> list[bytes]:
    """Every subscription change the reporter has sent so far."""
    changes = []
    while p.preview.poll(0):
        changes.append(p.preview.recv())
    return changes


def test_with_nothing_showing_the_preview_the_captures_send_no_frame_until_a_page_watches(tmp_path):
    """Headless, not recording, and the web says no page watches: the reporter unsubscribes from the
    preview, so the capture's PUB drops each frame unsent (the XPUB here sees the subscription go and the
    reporter receives none); a page opening the video subscribes it again and gets drawn frames."""
    (live_port,) = free_ports(1)
    image = np.full((240, 320, 3), 90, np.uint8)
    received = functools.partial(local_metric, "engagement_messages_received_total", service="reporter", kind="frame")
    with Pipeline(tmp_path, live_out=f"pub+bind:tcp://127.0.0.1:{live_port}", live_video_fps=0) as p:
        _page_watches(p)  # a web whose pages watch nothing
        p.sender.send(predictions_header(p.session, 0, [(1, 0)]))  # the class's first update
        assert _subscription(p) == b"\x00"
        assert local_metric("engagement_preview_subscribed") == 0
        before = received()
        updates = local_metric("engagement_messages_received_total", service="reporter", kind="update")
        for seq in range(1, 6):
            p.frame(seq, image)
            p.sender.send(predictions_header(p.session, seq, [(1, seq % 4)]))
        wait_for(lambda: local_metric("engagement_messages_received_total", service="reporter", kind="update")
                 >= updates + 5, "the updates of the frames sent")
        assert received() == before
        _page_watches(p, "cam0")
        assert _subscription(p) == b"\x01"
        assert local_metric("engagement_preview_subscribed") == 1
        sub = Peer(zmq.SUB, f"tcp://127.0.0.1:{live_port}", bind=False)
        try:
            assert _first_live_frame(p, sub, image, 6) is not None
        finally:
            sub.close()
        assert received() > before


def test_without_a_live_page_recording_or_window_the_preview_is_never_taken(tmp_path):
    with Pipeline(tmp_path) as p:  # headless, no recording, no live link
        assert _subscription(p) == b"\x00"
        assert local_metric("engagement_preview_subscribed") == 0


def _mjpeg_seqs(r, enough: Callable[[int], bool], most: int = 100) -> list[int]:
    """The X-Seq of each MJPEG part read, until one is `enough` (at most `most` parts)."""
    buf = b""
    for chunk in r.iter_bytes():
        buf += chunk
        seqs = [int(m) for m in re.findall(rb"X-Seq: (\d+)\r\n", buf)]  # whole header lines only
        if seqs and (enough(seqs[-1]) or len(seqs) >= most):
            return seqs
    raise AssertionError("the video ended")


def test_a_browser_on_the_real_webs_video_gets_the_reporters_frames(tmp_path):
    """Reporter -> web over the real live link, the real web saying what its page watches: before a
    page opens the video nothing is drawn; a client on the video route gets the drawn frames."""
    import httpx

    (live_port,) = free_ports(1)
    image = np.full((240, 320, 3), 90, np.uint8)
    with Pipeline(tmp_path, live_out=f"pub+bind:tcp://127.0.0.1:{live_port}", live_video_fps=0) as p:
        web = WebProcess(tmp_path / "web-reports", f"sub+connect:tcp://127.0.0.1:{live_port}", prefix=p.prefix)
        web.start()
        stop = threading.Event()
        sent = [-1]

        def feed() -> None:  # a class going on, a few frames a second
            for seq in range(10_000):
                if stop.wait(0.1):
                    return
                sent[0] = seq
                p.frame(seq, image)
                p.sender.send(predictions_header(p.session, seq, [(1, seq % 4)]))
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        try:
            wait_for(lambda: httpx.get(f"{web.url}/api/live").json()["session"] == p.session, "the class on the page")
            # No page: the web says so and the reporter stops taking the frames (nothing drawn).
            wait_for(lambda: local_metric("engagement_preview_subscribed") == 0, "the preview no longer taken")
            # Drawn before the web said anything (no web: drawn) is older than this: the page's part is new.
            not_drawn_after = sent[0]
            with httpx.stream("GET", f"{web.url}/api/live/video.mjpg?stream=cam0", timeout=20) as r:
                seqs = _mjpeg_seqs(r, lambda seq: seq > not_drawn_after)
            assert seqs[-1] > not_drawn_after
        finally:
            stop.set()
            feeder.join(5)
            web.stop()


@pytest.mark.parametrize("how", ["redis_down", "no_web"])
def test_the_video_is_drawn_when_whether_anyone_watches_cannot_be_read(tmp_path, how):
    """Redis unreachable for the reporter, or no web saying anything: drawn (the page works)."""
    (live_port, dead) = free_ports(2)
    down = {"redis_url": f"redis://127.0.0.1:{dead}/0"} if how == "redis_down" else {}
    with Pipeline(tmp_path, live_out=f"pub+bind:tcp://127.0.0.1:{live_port}", live_video_fps=0, **down) as p:
        sub = Peer(zmq.SUB, f"tcp://127.0.0.1:{live_port}", bind=False)
        try:
            assert _first_live_frame(p, sub, np.full((240, 320, 3), 90, np.uint8), 0) is not None
        finally:
            sub.close()


def test_live_link_is_class_level_only_when_reports_are(tmp_path):
    (live_port,) = free_ports(1)
    with Pipeline(tmp_path, class_level_only=1, live_out=f"pub+bind:tcp://127.0.0.1:{live_port}") as p:
        msgs = _live_messages(p, live_port, np.full((120, 160, 3), 90, np.uint8))
    assert {m.kind for m in msgs} == {"update", "eos"}  # no video
    assert all(m.header.predictions == [] for m in msgs if m.kind == "update")


def _roster(tmp_path: Path) -> Path:
    path = tmp_path / "roster.csv"
    path.write_text("stream,student,name\ncam0,1,Ada Lovelace\n,2,Alan Turing\ncam9,1,Someone Else\n")
    return path


def _class_with_mqtt(tmp_path: Path, roster: Path, before: Callable[[Pipeline], None] | None = None
                     ) -> tuple[Pipeline, dict, dict, bytes]:
    """Five frames and the end through the reporter with MQTT on: (pipeline, report, the report
    published over MQTT, every byte published)."""
    device = f"dev-{uuid.uuid4().hex[:8]}"
    sub = Subscriber([f"engagement/{device}/report", f"engagement/{device}/totals"])
    try:
        with Pipeline(tmp_path, messaging=1, device_id=device, mqtt_totals_interval=0.2, roster=str(roster)) as p:
            if before:
                before(p)
            for h in _frames(p.session, 5):
                p.sender.send(h)
            sub.wait_for("totals")
            p.sender.send(eos_header(p.session, 5))
            report = p.wait_report()
            [published] = sub.wait_for("report")
    finally:
        sub.close()
    return p, report, published, b"".join(sub.raw)


def test_roster_names_are_in_the_files_on_the_box_and_not_over_mqtt(tmp_path):
    p, report, published, raw = _class_with_mqtt(tmp_path, _roster(tmp_path))
    assert {s["student"]: s.get("name") for s in report["students"]} == {1: "Ada Lovelace", 2: "Alan Turing"}
    text = p.report_paths()[0].read_text()
    assert "id 1 (Ada Lovelace):" in text and "id 2 (Alan Turing):" in text
    assert b"Ada" not in raw and b"Turing" not in raw  # names stay on the box
    assert [s["student"] for s in published["body"]["students"]] == [1, 2]


def test_class_level_only_reports_carry_no_roster_name(tmp_path):
    with Pipeline(tmp_path, class_level_only=1, roster=str(_roster(tmp_path))) as p:
        for h in _frames(p.session, 4):
            p.sender.send(h)
        p.sender.send(eos_header(p.session, 4))
        p.wait_report()
    txt, js = p.report_paths()
    assert "Ada" not in txt.read_text() + js.read_text()


@pytest.mark.parametrize("content, says", [
    ("who,what\n1,Ada\n", "must name the columns student,name"),
    ("student,name\nfirst,Ada\n", "line 2: student 'first' is not an id"),
    ("student,name\n1,\n", "line 2: a name of 1 to 80 characters"),
])
def test_a_bad_roster_is_one_line_naming_the_file_and_row(tmp_path, content, says):
    from shared.data.roster import RosterError, load_roster

    path = tmp_path / "roster.csv"
    path.write_text(content)
    with pytest.raises(RosterError) as err:
        load_roster(path)
    assert says in str(err.value) and str(path) in str(err.value)


def test_marks_made_during_the_class_are_in_its_report(tmp_path):
    from shared.data.marks import MarkStore, validate_mark  # noqa: PLC0415

    with Pipeline(tmp_path) as p:
        frames = _frames(p.session, 6)
        for h in frames:
            p.sender.send(h)
        marks = MarkStore(redis.Redis.from_url(REDIS_URL, decode_responses=True), prefix=p.prefix)
        t = frames[1].t_capture
        marks.add(validate_mark({"session": p.session, "student": 2, "t": t, "level_given": 2,
                                 "level_predicted": 2, "signals": {"pitch": 33.0}}))
        p.sender.send(eos_header(p.session, 6))
        report = p.wait_report()
        # The reported session's totals may now be evicted (they get a TTL); the marks never.
        r = marks.r
        deadline = time.monotonic() + 10  # the TTLs are set just after the files are written
        while not all(r.ttl(k) > 0 for k in r.scan_iter(match=f"{p.prefix}:session:{p.session}:*")):
            assert time.monotonic() < deadline, "the reported session's keys never got a TTL"
            time.sleep(0.05)
        assert [r.ttl(k) for k in r.scan_iter(match=f"{p.prefix}:marks:*")] == [-1] * 3
    assert [(m["student"], m["level_given"], m["t"]) for m in report["marks"]] == [("2", 2, t)]
    assert report["agreement"]["rate"] == 1.0
    assert "Teacher's marks: 1" in p.report_paths()[0].read_text()


def test_two_streams_one_report_after_both_ended_names_on_the_box_only(tmp_path):
    """STREAMS=cam0,cam1 through the real aggregator and reporter: cam1 gives up mid-class (no
    report yet, cam0 goes on), cam0's end writes the one report with a section per stream; the
    roster's (stream, student) names are in the files, never over MQTT (per-stream totals are)."""
    device = f"dev-{uuid.uuid4().hex[:8]}"
    roster = tmp_path / "roster.csv"
    roster.write_text("stream,student,name\ncam0,1,Ada Lovelace\ncam1,1,Grace Hopper\n")
    sub = Subscriber([f"engagement/{device}/report", f"engagement/{device}/totals"])
    try:
        with Pipeline(tmp_path, streams="cam0,cam1", messaging=1, device_id=device, mqtt_totals_interval=0.2,
                      roster=str(roster)) as p:
            for seq in range(4):
                p.sender.send(predictions_header(p.session, seq, [(1, 0), (2, 1)], stream="cam0"))
                p.sender.send(predictions_header(p.session, seq, [(1, 3)], stream="cam1"))
            p.sender.send(eos_header(p.session, 4, stream="cam1", reason="gave_up"))
            for seq in range(4, 8):
                p.sender.send(predictions_header(p.session, seq, [(1, 2)], stream="cam0"))
            totals = sub.wait_for("totals")
            wait_for(lambda: any(t["body"]["frames"] == 12 for t in sub.wait_for("totals")), "all 12 frames counted")
            assert not p.report_paths()[1].exists()  # cam0 still going: no report yet
            p.sender.send(eos_header(p.session, 8, stream="cam0"))
            report = p.wait_report()
            [published] = sub.wait_for("report")
            totals = sub.wait_for("totals")
    finally:
        sub.close()
    assert [(s["stream"], s["student"], s["predictions"], s.get("name")) for s in report["students"]] == \
        [("cam0", 1, 8, "Ada Lovelace"), ("cam0", 2, 4, None), ("cam1", 1, 4, "Grace Hopper")]
    assert [(st["stream"], st["end_reason"], st["totals"]["frames"]) for st in report["streams"]] == \
        [("cam0", "end_of_file", 8), ("cam1", "gave_up", 4)]
    text = p.report_paths()[0].read_text()
    assert "cam0 #1 (Ada Lovelace): 8 predictions" in text and "cam1 #1 (Grace Hopper): 4 predictions" in text
    raw = b"".join(sub.raw)
    assert b"Ada" not in raw and b"Grace" not in raw  # names stay on the box
    assert [st["totals"]["frames"] for st in published["body"]["streams"]] == [8, 4]
    assert any(set(t["body"].get("streams", {})) == {"cam0", "cam1"} for t in totals)


def _count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return count


def test_two_streams_are_recorded_one_file_each(tmp_path):
    rec_dir = tmp_path / "rec"
    drawn_before = local_metric("engagement_overlay_frames_total")
    with Pipeline(tmp_path, streams="cam0,cam1", record=1, record_path=str(rec_dir), record_filename="class.avi",
                  record_width=320, record_height=240) as p:
        for seq in range(6):
            for stream, grey, n in (("cam0", 60, 6), ("cam1", 200, 4)):
                if seq < n:
                    p.frame(seq, np.full((240, 320, 3), grey, np.uint8), stream=stream)
                    p.sender.send(predictions_header(p.session, seq, [(1, seq % 4)], stream=stream))
        wait_for(lambda: local_metric("engagement_overlay_frames_total") >= drawn_before + 10, "10 frames drawn")
        p.sender.send(eos_header(p.session, 4, stream="cam1", reason="gave_up"))
        p.sender.send(eos_header(p.session, 6, stream="cam0"))
        report = p.wait_report()
    assert _count_frames(rec_dir / "class-cam0.avi") == 6 and _count_frames(rec_dir / "class-cam1.avi") == 4
    assert report["recordings"] == {"cam0": str((rec_dir / "class-cam0.avi").resolve()),
                                    "cam1": str((rec_dir / "class-cam1.avi").resolve())}
    assert [st.get("recording") for st in report["streams"]] == list(report["recordings"].values())
    assert "recording" not in report and not (rec_dir / "class.avi").exists()


# --- names read on a call's tiles (GALLERY_NAMES=ocr): the roster's tile_name column, else as read;
# on the box only, none with CLASS_LEVEL_ONLY=1.


def _tile_labels(p: Pipeline) -> None:
    from shared.data.roster import TileNames

    # What facedetect saves: student 1's tile read "LukasMuller" (OCR lost the space and the
    # umlaut), student 2's "Li Wei".
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    TileNames(client, p.prefix).save(p.session, "cam0", {1: "LukasMuller", 2: "Li Wei"})


def test_a_roster_tile_name_gives_the_display_name_and_an_unlisted_tile_shows_its_label(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("tile_name,name\nLukas Müller,Lukas Müller (3B)\n")
    p, report, published, raw = _class_with_mqtt(tmp_path, roster, before=_tile_labels)
    assert {s["student"]: s.get("name") for s in report["students"]} == {1: "Lukas Müller (3B)", 2: "Li Wei"}
    assert "id 1 (Lukas Müller (3B)):" in p.report_paths()[0].read_text()
    assert b"Lukas" not in raw and b"Li Wei" not in raw  # names stay on the box
    assert [s["student"] for s in published["body"]["students"]] == [1, 2]


def test_class_level_only_reports_carry_no_tile_name(tmp_path):
    with Pipeline(tmp_path, class_level_only=1) as p:
        _tile_labels(p)
        for h in _frames(p.session, 4):
            p.sender.send(h)
        p.sender.send(eos_header(p.session, 4))
        p.wait_report()
    txt, js = p.report_paths()
    assert "Lukas" not in txt.read_text() + js.read_text() and "Li Wei" not in js.read_text()


def test_roster_tile_names_match_however_the_label_is_written(tmp_path):
    from shared.data.roster import RosterError, load_roster, name_of

    path = tmp_path / "roster.csv"
    path.write_text("tile_name,name\nJosé Álvarez,José\n\"O'Brien, James\",Jim\n")
    roster = load_roster(path)
    assert name_of(roster, "cam0", 4, "jose alvarez") == "José"
    assert name_of(roster, "cam0", 4, "OBrien James") == "Jim"
    assert name_of(roster, "cam0", 4, "Someone New") == "Someone New"
    assert name_of(roster, "cam0", 4) is None
    path.write_text("tile_name,name\n...,Jim\n")
    with pytest.raises(RosterError, match="line 2: tile_name '...' has no letter or digit"):
        load_roster(path)


# --- the outbox (issue 22): the next reporter on a folder sends what an earlier one queued, each once ---

def _queue_an_earlier_report(path: Path, device: str, session: str) -> None:
    """What a reporter whose broker was down left behind (its process long gone)."""
    publisher = Publisher("127.0.0.1", 1, device)  # never connects: only builds the envelope
    try:
        queue = DurableQueue(path)
        queue.enqueue(f"{session}:report", "report", publisher.topic("report"),
                      [publisher.envelope("report", f"{session}:report", session, {"totals": {"frames": 7}})])
        queue.close()
    finally:
        publisher.close()


def test_the_next_reporter_sends_what_an_earlier_one_queued_then_its_own_once(tmp_path: Path) -> None:
    broker = PlainBroker(tmp_path)
    broker.start()
    device = f"outbox-{uuid.uuid4().hex[:8]}"
    earlier = f"earlier-{uuid.uuid4().hex[:6]}"
    box = outbox_path(tmp_path / "reports")
    _queue_an_earlier_report(box, device, earlier)
    collector = Collector(broker.port, device)
    try:
        with Pipeline(tmp_path, messaging=1, mqtt_port=broker.port, device_id=device,
                      mqtt_totals_interval=3600) as p:
            assert wait_until(lambda: f"{earlier}:report" in collector.ids(), 15), collector.ids()
            for h in _frames(p.session, 4):
                p.sender.send(h)
            p.sender.send(eos_header(p.session, 4))
            p.wait_report()
            expected = sorted([f"{earlier}:report", f"{p.session}:report", f"{p.session}:totals:final"])
            assert wait_until(lambda: collector.ids() == expected, 15), collector.ids()
            # A row leaves on the broker's PUBACK, which may reach the reporter after the subscriber has the message.
            assert wait_until(lambda: queued_for(box, p.session) == 0 and queued_for(box, earlier) == 0, 15), \
                (queued_for(box, p.session), queued_for(box, earlier))
            # A report written again (a recovery) is not sent again: its id was delivered.
            outbox = Outbox(box, p.reporter_svc.publisher)
            outbox.put("report", f"{p.session}:report", p.session, {"totals": {}})
            assert outbox.flush(connect_timeout=2.0) == 0
            outbox.close()
            time.sleep(1.0)
            assert collector.ids() == expected
    finally:
        collector.close()
        broker.stop()

"""The aggregator as a running service: real ZeroMQ in and out, the real Redis.

The outage test starts a private redis-server (append-only file on, as in compose), stops
it mid-stream, keeps sending, restarts it on the same data: the totals end exact.
"""

from __future__ import annotations

import random
import shutil
from collections import Counter

import msgpack
import pytest
import redis
import zmq

from services.aggregator import service as aggregator_service
from services.aggregator.service import AggregatorService
from shared.bus.messages import Header, as_dict
from shared.data.totals import Store
from shared.ops.ports import free_ports
from tests.aggregator.harness import (
    PrivateRedis,
    endpoints,
    eos_header,
    predictions_header,
    unique_prefix,
)
from tests.harness import Peer, Running
from tests.support.env import REDIS_URL
from tests.support.metrics import local_metric
from tests.support.waiting import wait_for


def _wire(redis_url: str = REDIS_URL, **extra):
    # The test binds the updates side: a connecting PUSH has its pipe at once, so the first
    # updates are queued instead of dropped while TCP connects.
    pred_ep, upd_ep = endpoints()
    prefix = unique_prefix()
    values = dict(redis_url=redis_url, redis_prefix=prefix, predictions_in=f"pull+bind:{pred_ep}",
                  updates_out=f"push+connect:{upd_ep}", class_id="class-a", hwm=1000, **extra)
    return values, pred_ep, upd_ep, prefix


def _cleanup(url: str, prefix: str) -> None:
    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(match=f"{prefix}:*"))
    if keys:
        r.delete(*keys)


def _random_frames(session: str, count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [predictions_header(session, seq, [(s, rng.randrange(4)) for s in rng.sample(range(6), rng.randrange(4))])
            for seq in range(count)]


def _expected(frames: list[Header]) -> tuple[Counter, Counter]:
    levels, students = Counter(), Counter()
    for h in frames:
        for p in h.predictions:
            levels[p["level"]] += 1
            students[p["student"]] += 1
    return levels, students


def _through_the_aggregator(values: dict, pred_ep: str, upd_ep: str, messages: list) -> list:
    """Send `messages` in order to a running aggregator; what it sent back, up to its eos."""
    sender = Peer(zmq.PUSH, pred_ep, bind=False)
    receiver = Peer(zmq.PULL, upd_ep, bind=True)
    try:
        with Running(AggregatorService, **values):
            for h in messages:
                sender.send(h)
            return receiver.recv_until("eos")
    finally:
        sender.close()
        receiver.close()


def test_counts_exactly_what_was_sent_and_a_repeat_counts_once():
    values, pred_ep, upd_ep, prefix = _wire()
    session = f"s-{prefix}"
    frames = _random_frames(session, 30, seed=1)
    try:
        redelivered = [frames[5], frames[17]]  # must not count twice
        got = _through_the_aggregator(values, pred_ep, upd_ep, [*frames, *redelivered, eos_header(session, 30)])
        updates = [m for m in got if m.kind == "update"]
        # One update per frame: a repeat (inference resends what is acknowledged late) sends none, so
        # frames through + frames dropped add up to frames captured downstream (issue 22, item 9).
        assert len(updates) == 30
        assert sorted(u.header.seq for u in updates) == list(range(30))
        assert got[-1].kind == "eos" and got[-1].header.reason == "end_of_file"
        # The running totals in the updates grow to the final totals.
        assert updates[-1].header.totals.frames == 30
        assert updates[0].header.predictions == frames[0].predictions
        store = Store.from_url(REDIS_URL, prefix=prefix)
        levels, students = _expected(frames)
        data = store.load_session(session)
        totals = data["totals"]
        assert totals["frames"] == 30
        assert totals["predictions"] == sum(levels.values())
        assert {int(k): v for k, v in totals["levels"].items() if v} == dict(levels)
        assert {s["student"]: s["predictions"] for s in data["students"]} == dict(students)
        assert data["meta"]["ended"] is not None and data["meta"]["class"] == "class-a"
        assert store.class_totals("class-a")["predictions"] == totals["predictions"]
        assert len(data["timeline"]) == totals["predictions"]
    finally:
        _cleanup(REDIS_URL, prefix)


def test_bad_input_is_counted_and_the_service_keeps_counting():
    values, pred_ep, upd_ep, prefix = _wire()
    session = f"s-{prefix}"
    sender = Peer(zmq.PUSH, pred_ep, bind=False)
    receiver = Peer(zmq.PULL, upd_ep, bind=True)
    before = {r: local_metric("engagement_messages_rejected_total", service="aggregator", reason=r)
              for r in ("bad_msgpack", "wrong_version", "bad_level", "unexpected_kind")}
    try:
        with Running(AggregatorService, **values):
            sender.send(predictions_header(session, 0, [(1, 0)]))
            sender.send_raw([b"predictions", b"\xc1garbage", b""])
            wrong_version = {**as_dict(predictions_header(session, 1, [])), "v": 99}
            sender.send_raw([b"predictions", msgpack.packb(wrong_version), b""])
            bad_level = predictions_header(session, 2, [(1, 0)])
            bad_level.predictions[0]["level"] = 7
            sender.send(bad_level)
            frame = {**as_dict(predictions_header(session, 3, [])), "kind": "frame"}
            sender.send_raw([b"frame", msgpack.packb(frame), b""])
            sender.send(predictions_header(session, 4, [(1, 3)]))
            sender.send(eos_header(session, 5))
            receiver.recv_until("eos")
        for reason, count in before.items():
            assert local_metric("engagement_messages_rejected_total", service="aggregator", reason=reason) == count + 1
        totals = Store.from_url(REDIS_URL, prefix=prefix).session_totals(session)
        assert totals["frames"] == 2 and totals["levels"] == {"0": 1, "1": 0, "2": 0, "3": 1}
    finally:
        sender.close()
        receiver.close()
        _cleanup(REDIS_URL, prefix)


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs Debian's redis-server")
def test_redis_outage_mid_stream_loses_nothing(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    values, pred_ep, upd_ep, prefix = _wire(server.url)
    session = f"s-{prefix}"
    frames = _random_frames(session, 45, seed=3)
    sender = Peer(zmq.PUSH, pred_ep, bind=False)
    receiver = Peer(zmq.PULL, upd_ep, bind=True)
    errors_before = local_metric("engagement_redis_errors_total")
    try:
        with Running(AggregatorService, **values) as svc:
            for h in frames[:15]:
                sender.send(h)
            receiver_got = [receiver.recv() for _ in range(15)]
            server.stop()
            for h in frames[15:30]:
                sender.send(h)
            # Updates keep flowing while Redis is down, with locally computed running totals.
            receiver_got += [receiver.recv() for _ in range(15)]
            assert receiver_got[-1].header.totals.frames == 30
            backlog_during_outage = local_metric("engagement_aggregator_backlog")
            server.start()
            for h in frames[30:]:
                sender.send(h)
            sender.send(eos_header(session, 45))
            receiver.recv_until("eos", timeout=30)
            # eos leaves the backlog after its send
            wait_for(lambda: not svc.backlog, "an empty backlog", timeout=5)
        assert backlog_during_outage >= 15
        assert local_metric("engagement_redis_errors_total") > errors_before
        data = Store.from_url(server.url, prefix=prefix).load_session(session)
        levels, students = _expected(frames)
        assert data["totals"]["frames"] == 45
        assert data["totals"]["predictions"] == sum(levels.values())
        assert {int(k): v for k, v in data["totals"]["levels"].items() if v} == dict(levels)
        assert {s["student"]: s["predictions"] for s in data["students"]} == dict(students)
        assert data["meta"]["ended"] is not None
        assert local_metric("engagement_aggregator_backlog") == 0
    finally:
        sender.close()
        receiver.close()
        server.stop()


def test_full_backlog_drops_are_counted_and_nothing_crashes(monkeypatch):
    monkeypatch.setattr(aggregator_service, "STOP_FLUSH_SECONDS", 0.5)
    dead_url = f"redis://127.0.0.1:{free_ports(1)[0]}/0"  # nothing listens there
    values, pred_ep, upd_ep, prefix = _wire(dead_url, backlog_max=3)
    session = f"s-{prefix}"
    sender = Peer(zmq.PUSH, pred_ep, bind=False)
    receiver = Peer(zmq.PULL, upd_ep, bind=True)
    dropped_before = local_metric("engagement_aggregator_dropped_total")
    try:
        with Running(AggregatorService, **values) as svc:
            for seq in range(5):
                sender.send(predictions_header(session, seq, [(1, 1)]))
            updates = [receiver.recv() for _ in range(5)]
            assert [u.header.seq for u in updates] == list(range(5))
            assert len(svc.backlog) == 3
        assert local_metric("engagement_aggregator_dropped_total") == dropped_before + 2
    finally:
        sender.close()
        receiver.close()


@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs Debian's redis-server")
def test_a_password_in_redis_url_works_and_is_not_logged(tmp_path, caplog):
    secret = "s3cret-" + unique_prefix()
    server = PrivateRedis(tmp_path, password=secret)
    server.start()
    values, pred_ep, upd_ep, prefix = _wire(server.url)
    session = f"s-{prefix}"
    try:
        with caplog.at_level("INFO"):
            _through_the_aggregator(values, pred_ep, upd_ep, [predictions_header(session, 0, [(1, 2)]),
                                                              eos_header(session, 1)])
        assert Store.from_url(server.url, prefix=prefix).session_totals(session)["levels"]["2"] == 1
        assert "totals in Redis at redis://***@127.0.0.1" in caplog.text
        assert secret not in caplog.text
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=server.port).ping()
    finally:
        server.stop()


def test_a_multitask_model_has_every_state_counted_and_in_the_updates():
    """Predictions of a four-head bundle (as inference sends them, with `heads`): the running
    totals in the updates and the totals in Redis count each state, not only boredom."""
    values, pred_ep, upd_ep, prefix = _wire()
    session = f"mt-{prefix}"
    heads = ["boredom", "engagement", "confusion", "frustration"]
    frames = []
    for seq in range(4):
        h = predictions_header(session, seq, [(1, seq % 4)])
        h.predictions[0]["heads"] = {name: [0.85 if i == (seq + k) % 4 else 0.05 for i in range(4)]
                                        for k, name in enumerate(heads)}
        frames.append(h)
    try:
        got = _through_the_aggregator(values, pred_ep, upd_ep, [*frames, eos_header(session, 4)])
        last = [m for m in got if m.kind == "update"][-1]
        expected = {name: {str(i): 1 for i in range(4)} for name in heads}  # each level once per head
        assert last.header.totals.states == expected
        assert Store.from_url(REDIS_URL, prefix=prefix).session_totals(session)["states"] == expected
    finally:
        _cleanup(REDIS_URL, prefix)


def test_two_streams_end_the_session_only_after_the_second_eos_across_a_restart():
    """STREAMS=cam0,cam1: cam1 gives up (its end and reason recorded, no eos forwarded), cam0's
    frames keep counting, an aggregator restart in between forgets nothing (the ends are in
    Redis), and cam0's eos ends the session; a repeated eos stays harmless."""
    values, pred_ep, upd_ep, prefix = _wire(streams="cam0,cam1")
    session = f"two-{prefix}"
    sender = Peer(zmq.PUSH, pred_ep, bind=False)
    receiver = Peer(zmq.PULL, upd_ep, bind=True)
    store = Store.from_url(REDIS_URL, prefix=prefix)
    gave_up_before = local_metric("engagement_streams_ended_total", reason="gave_up")
    try:
        with Running(AggregatorService, **values):
            for seq in range(3):
                sender.send(predictions_header(session, seq, [(1, 0)], stream="cam0"))
                sender.send(predictions_header(session, seq, [(1, 3)], stream="cam1"))
            sender.send(eos_header(session, 3, stream="cam1", reason="gave_up"))
            for seq in range(3, 6):
                sender.send(predictions_header(session, seq, [(2, 1)], stream="cam0"))
            got = [receiver.recv() for _ in range(9)]
            assert [m.kind for m in got] == ["update"] * 9  # cam1's eos was not forwarded
            assert got[-1].header.totals.frames == 9
        assert store.session_meta(session)["ended"] is None
        by_id = {s["stream"]: s for s in store.streams(session)}
        assert by_id["cam1"]["end_reason"] == "gave_up" and by_id["cam1"]["ended"] is not None
        assert by_id["cam0"]["ended"] is None
        assert local_metric("engagement_streams_ended_total", reason="gave_up") == gave_up_before + 1
        with Running(AggregatorService, **values):  # a new process: what ended is read from Redis
            sender.send(predictions_header(session, 6, [(2, 2)], stream="cam0"))
            sender.send(eos_header(session, 7, stream="cam0"))
            got = receiver.recv_until("eos")
            assert got[-1].header.stream == "cam0" and got[-1].header.reason == "end_of_file"
            sender.send(eos_header(session, 7, stream="cam0"))  # repeated: the end stays the first
            receiver.recv_until("eos")
            sender.send(eos_header(session, 4, stream="cam1", reason="gave_up"))  # repeated: not counted again
            receiver.recv_until("eos")
        meta = store.session_meta(session)
        assert meta["ended"] is not None and meta["end_reason"] == "end_of_file"
        assert meta["ended"] >= by_id["cam1"]["ended"]
        assert local_metric("engagement_streams_ended_total", reason="gave_up") == gave_up_before + 1
        assert store.session_totals(session)["frames"] == 10
        assert {s["stream"]: s["end_reason"] for s in store.streams(session)} == {"cam0": "end_of_file",
                                                                                  "cam1": "gave_up"}
    finally:
        sender.close()
        receiver.close()
        _cleanup(REDIS_URL, prefix)


def test_a_stream_streams_does_not_list_is_said_once_and_must_end_too(caplog):
    values, pred_ep, upd_ep, prefix = _wire(streams="cam0")
    session = f"typo-{prefix}"
    sender = Peer(zmq.PUSH, pred_ep, bind=False)
    receiver = Peer(zmq.PULL, upd_ep, bind=True)
    try:
        with caplog.at_level("WARNING"), Running(AggregatorService, **values):
            for seq in range(3):
                sender.send(predictions_header(session, seq, [(1, 0)], stream="cam0"))
                sender.send(predictions_header(session, seq, [(1, 1)], stream="camO"))
            sender.send(eos_header(session, 3, stream="cam0"))
            [receiver.recv() for _ in range(6)]
            sender.send(eos_header(session, 3, stream="camO"))
            assert receiver.recv_until("eos")[-1].header.stream == "camO"  # only now the session ends
        said = [r.getMessage() for r in caplog.records if "not in STREAMS" in r.getMessage()]
        assert len(said) == 1 and "'camO'" in said[0]
    finally:
        sender.close()
        receiver.close()
        _cleanup(REDIS_URL, prefix)


def test_without_streams_the_first_eos_ends_the_session_whatever_its_stream():
    values, pred_ep, upd_ep, prefix = _wire()  # STREAMS empty; STREAM_ID's cam0 is not required
    session = f"one-{prefix}"
    sender = Peer(zmq.PUSH, pred_ep, bind=False)
    receiver = Peer(zmq.PULL, upd_ep, bind=True)
    try:
        with Running(AggregatorService, **values):
            sender.send(predictions_header(session, 0, [(1, 0)], stream="screen"))
            sender.send(eos_header(session, 1, stream="screen"))
            assert receiver.recv_until("eos")[-1].header.stream == "screen"
        assert Store.from_url(REDIS_URL, prefix=prefix).session_meta(session)["ended"] is not None
    finally:
        sender.close()
        receiver.close()
        _cleanup(REDIS_URL, prefix)


def test_updates_of_two_streams_carry_the_running_totals_of_the_streams_they_change():
    values, pred_ep, upd_ep, prefix = _wire(streams="cam0,cam1")
    session = f"per-{prefix}"
    sender = Peer(zmq.PUSH, pred_ep, bind=False)
    receiver = Peer(zmq.PULL, upd_ep, bind=True)
    try:
        with Running(AggregatorService, **values):
            sender.send(predictions_header(session, 0, [(1, 0), (2, 1)], stream="cam0"))
            sender.send(predictions_header(session, 0, [(1, 3)], stream="cam1"))
            sender.send(predictions_header(session, 1, [(1, 2)], stream="cam0"))
            first, second, third = receiver.recv(), receiver.recv(), receiver.recv()
        assert first.header.totals.streams is None
        assert second.header.totals.predictions == 3
        # A stream's first frame: every stream's totals; after that, the frame's own stream's (its whole totals).
        assert {k: v.predictions for k, v in second.header.totals.streams.items()} == {"cam0": 2, "cam1": 1}
        assert third.header.totals.predictions == 4
        assert {k: v.predictions for k, v in third.header.totals.streams.items()} == {"cam0": 3}
        students = Store.from_url(REDIS_URL, prefix=prefix).students(session)
        assert [(s["stream"], s["student"]) for s in students] == [("cam0", 1), ("cam0", 2), ("cam1", 1)]
    finally:
        sender.close()
        receiver.close()
        _cleanup(REDIS_URL, prefix)


@pytest.mark.parametrize("gather", [0.05, 0.0])
def test_predictions_that_arrive_together_are_written_in_one_round_trip_each_counted_and_updated_alone(gather):
    """GATHER_SECONDS: the frames a run of messages brought go to Redis in one pipeline (one exchange, not one a
    frame); each is counted once, gets its own update and its acknowledgement as if written alone. 0 (woken for
    each message) writes each alone: the control that this test can tell the two apart."""
    values, pred_ep, upd_ep, prefix = _wire(streams="cam0,cam1", gather_seconds=gather)
    session = f"run-{prefix}"
    frames = [predictions_header(session, seq // 2, [(seq % 3, seq % 4)], stream=f"cam{seq % 2}")
              for seq in range(60)]
    writes_before = local_metric("engagement_aggregator_frames_per_write_count")
    frames_before = local_metric("engagement_aggregator_frames_per_write_sum")
    try:
        got = _through_the_aggregator(values, pred_ep, upd_ep,
                                      [*frames, frames[7], eos_header(session, 30, "cam0"),
                                       eos_header(session, 30, "cam1")])
        writes = local_metric("engagement_aggregator_frames_per_write_count") - writes_before
        updates = [m.header for m in got if m.kind == "update"]
        assert local_metric("engagement_aggregator_frames_per_write_sum") - frames_before == 61  # the repeat too
        if gather:
            assert writes <= 30, f"{writes} round trips for 61 frames sent at once"
        else:
            assert writes == 61
        assert sorted((u.stream, u.seq) for u in updates) == sorted((f.stream, f.seq) for f in frames)
        # Each update carries the totals its own write answered, in order: the session's frames grow by one.
        assert [u.totals.frames for u in updates] == list(range(1, 61))
        held = None  # the streams' totals as the page keeps them from update to update
        for u in updates:
            held = u.totals.carried_forward(held)
        assert {k: v.frames for k, v in held.streams.items()} == {"cam0": 30, "cam1": 30}
        data = Store.from_url(REDIS_URL, prefix=prefix).load_session(session)
        assert data["totals"]["frames"] == 60 and data["totals"]["predictions"] == 60
        assert data["meta"]["ended"] is not None
    finally:
        _cleanup(REDIS_URL, prefix)

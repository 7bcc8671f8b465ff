"""The aggregator as a real process, SIGKILLed mid-stream and restarted: nothing counts twice.

PUSH/PULL has no acknowledgements, so a sender that cannot know what the killed process
took replays from the start; the idempotent Redis writes make that replay safe.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import redis
import zmq

from shared.data.totals import Store
from shared.ops.ports import free_ports
from tests.aggregator.harness import eos_header, predictions_header, unique_prefix
from tests.harness import Peer
from tests.support.env import REDIS_URL


def _start(prefix: str, pred_port: int, upd_port: int) -> subprocess.Popen:
    env = {**os.environ, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix, "METRICS_PORT": "0", "HWM": "1000",
           "PREDICTIONS_IN": f"pull+bind:tcp://127.0.0.1:{pred_port}",
           "UPDATES_OUT": f"push+connect:tcp://127.0.0.1:{upd_port}"}
    return subprocess.Popen([sys.executable, "-m", "engagement.cli", "aggregator"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigkill_and_replay_counts_every_prediction_once():
    prefix = unique_prefix()
    session = f"s-{prefix}"
    pred_port, upd_port = free_ports(2)
    frames = [predictions_header(session, seq, [(seq % 3, seq % 4), (7, (seq + 2) % 4)]) for seq in range(40)]
    updates = Peer(zmq.PULL, f"tcp://127.0.0.1:{upd_port}", bind=True)
    sender = Peer(zmq.PUSH, f"tcp://127.0.0.1:{pred_port}", bind=False)
    proc = _start(prefix, pred_port, upd_port)
    try:
        for h in frames[:25]:
            sender.send(h)
        for _ in range(10):  # the first ten are surely written (their updates came back)
            updates.recv(timeout=30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc = _start(prefix, pred_port, upd_port)
        for h in frames:  # replay everything: the sender cannot know what the dead process took
            sender.send(h)
        sender.send(eos_header(session, 40))
        updates.recv_until("eos", timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        sender.close()
        updates.close()
    data = Store.from_url(REDIS_URL, prefix=prefix).load_session(session)
    levels = Counter(p["level"] for h in frames for p in h.predictions)
    assert data["totals"]["frames"] == 40
    assert data["totals"]["predictions"] == 80
    assert {int(k): v for k, v in data["totals"]["levels"].items() if v} == dict(levels)
    assert len(data["timeline"]) == 80
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=f"{prefix}:*"))
    if keys:
        r.delete(*keys)

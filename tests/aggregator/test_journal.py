"""The aggregator as a real process with its journal: frames its full backlog dropped while a real redis-server
was down are not lost, they reach Redis from the journal before the class's end."""

from __future__ import annotations

import os
import subprocess
import sys

import zmq

from shared.data.journal import find_journal, read_journal
from shared.data.totals import Store
from shared.ops.ports import free_ports
from tests.aggregator.harness import PrivateRedis, eos_header, predictions_header, unique_prefix
from tests.harness import Peer


def test_frames_the_full_backlog_dropped_reach_redis_from_the_journal(tmp_path):
    (tmp_path / "redis").mkdir()
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    prefix = unique_prefix()
    session = f"s-{prefix}"
    pred_port, upd_port = free_ports(2)
    env = {**os.environ, "REDIS_URL": server.url, "REDIS_PREFIX": prefix, "METRICS_PORT": "0", "HWM": "1000",
           "BACKLOG_MAX": "3", "JOURNAL_DIR": str(tmp_path / "runs"),
           "PREDICTIONS_IN": f"pull+bind:tcp://127.0.0.1:{pred_port}",
           "UPDATES_OUT": f"push+connect:tcp://127.0.0.1:{upd_port}"}
    updates = Peer(zmq.PULL, f"tcp://127.0.0.1:{upd_port}", bind=True)
    sender = Peer(zmq.PUSH, f"tcp://127.0.0.1:{pred_port}", bind=False)
    proc = subprocess.Popen([sys.executable, "-m", "engagement.cli", "aggregator"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    frames = [predictions_header(session, seq, [(1, seq % 4)]) for seq in range(20)]
    try:
        for h in frames[:5]:
            sender.send(h)
        for _ in range(5):
            updates.recv(timeout=30)
        server.stop()
        for h in frames[5:]:  # 3 wait in memory, 12 only in the journal
            sender.send(h)
        for _ in range(15):
            updates.recv(timeout=30)
        server.start()  # its append-only file has the first 5
        sender.send(eos_header(session, 20))
        updates.recv_until("eos", timeout=60)
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        sender.close()
        updates.close()
    try:
        totals = Store.from_url(server.url, prefix=prefix).session_totals(session)
    finally:
        server.stop()
    assert "kept in the journal only" in err and "(lost)" not in err
    assert totals["frames"] == 20 and totals["predictions"] == 20
    journal = read_journal(find_journal(tmp_path / "runs", session))
    assert len(journal.frames) == 20 and [e["stream"] for e in journal.eos] == ["cam0"]

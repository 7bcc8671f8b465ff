"""shared/bus/drain.py: a producer that waits until its consumer has read everything loses nothing when it
closes, where one that closed at once lost its last messages over ipc:// (libzmq issue 4660)."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time

import pytest
import zmq

from shared.bus.bus import Receiver, Sender
from shared.bus.drain import unread_bytes, wait_until_read
from shared.bus.messages import make_header

MESSAGES = 40
SIZE = 20_000  # a small JPEG frame's size: the loss needs small messages (of 60 KB and more none was lost)


def _produce(endpoint: str, wait: bool, result: mp.Queue) -> None:
    sender = Sender("producer", f"push+bind:{endpoint}", threading.Event(), hwm=4)
    sender.socket.setsockopt(zmq.LINGER, 300_000)  # ZeroMQ's own wait, long: not what loses the messages
    sender.socket.poll(5000, zmq.POLLOUT)  # the consumer has connected
    for seq in range(MESSAGES):
        sender.send(make_header("frame", "s", "cam", seq, time.time(), width=1, height=1, encoding="jpeg"),
                    b"\xff\xd8" + os.urandom(SIZE))
    read = wait_until_read(60.0) if wait else None
    sender.close()
    result.put(read)


def _consume(endpoint: str, wait: bool) -> tuple[list[int], object]:
    result: mp.Queue = mp.get_context("fork").Queue()
    receiver = Receiver("consumer", f"pull+connect:{endpoint}", hwm=4)
    producer = mp.get_context("fork").Process(target=_produce, args=(endpoint, wait, result))
    producer.start()
    seqs = []
    try:
        while receiver.socket.poll(3000):
            msg = receiver.read()
            if msg is not None:
                seqs.append(msg.header.seq)
            time.sleep(0.05)  # a consumer that is behind: busy, or its model still loading
        producer.join(30)
        return seqs, result.get(timeout=5)
    finally:
        producer.kill()
        receiver.close()


def test_a_producer_that_waits_until_its_messages_are_read_loses_none_when_it_closes(tmp_path):
    seqs, read = _consume(f"ipc://{tmp_path}/drain", wait=True)
    assert read is True and seqs == list(range(MESSAGES))


def test_without_the_wait_the_last_messages_can_be_lost(tmp_path):
    # What the wait is for, shown on this machine's libzmq: if this starts to pass every time,
    # the library has been fixed and the wait only costs QUIET_SECONDS a producer's end.
    seqs, _ = _consume(f"ipc://{tmp_path}/nodrain", wait=False)
    if seqs == list(range(MESSAGES)):
        pytest.skip("this libzmq lost nothing this time")
    assert seqs == list(range(len(seqs))) and len(seqs) < MESSAGES  # the tail, in order: nothing else


def test_unread_bytes_counts_what_a_peer_has_not_read_yet():
    import socket

    a, b = socket.socketpair()
    try:
        before = unread_bytes()
        a.sendall(b"x" * 1000)
        sent = unread_bytes()
        assert before is not None and sent is not None and sent >= before + 1000  # the kernel counts with overhead
        b.recv(1000)
        assert unread_bytes() == before
    finally:
        a.close()
        b.close()

"""Crops buffered from a received message are copies: a view would keep the whole message alive."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from services.sequencer.buffers import StreamBuffers
from shared.bus.bus import Receiver, Sender
from shared.bus.messages import Faces, make_header
from shared.ops.ports import free_ports

pytestmark = pytest.mark.timeout(60)
CROP = 16


def test_buffered_crops_outlive_the_received_message_and_do_not_hold_it():
    port = free_ports(1)[0]
    receiver = Receiver("seqtest", f"pull+bind:tcp://127.0.0.1:{port}")
    sender = Sender("seqtest", f"push+connect:tcp://127.0.0.1:{port}", threading.Event())
    try:
        faces = [{"student": s, "box": [10 * s, 10, 40, 40], "conf": 0.9} for s in range(3)]
        payload = b"".join(bytes([s + 1]) * (CROP * CROP * 3) for s in range(3))
        sender.send(make_header("faces", "s", "cam0", 0, 0.0, width=640, height=480, crop=CROP, faces=faces),
                    payload)
        assert receiver.socket.poll(5000)
        msg = receiver.read()
        assert msg is not None and isinstance(msg.header, Faces) and isinstance(msg.payload, memoryview)
        buffers = StreamBuffers(CROP, length=2, stride=1)
        buffers.add(msg.header.faces, msg.payload, 0.0, 0.0)
        frame = weakref.ref(msg.payload.obj)  # the zmq.Frame the payload views
        del msg
        gc.collect()
        assert frame() is None, "a buffered crop still holds the received message"
        crops = [buffers.students[s].crops[0] for s in range(3)]
        assert all(isinstance(c, bytes) for c in crops)
        assert crops == [bytes([s + 1]) * (CROP * CROP * 3) for s in range(3)]
    finally:
        sender.close()
        receiver.close()

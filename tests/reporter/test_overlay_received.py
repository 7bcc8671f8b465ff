"""The overlay draws on a preview frame received from the bus: a read-only view of the message."""

from __future__ import annotations

import threading

import msgspec
import numpy as np
import pytest

from services.reporter import overlay
from shared.bus.bus import Receiver, Sender
from shared.bus.messages import Frame, make_header
from shared.data.levels import LEVEL_LABELS
from shared.data.running_totals import no_totals
from shared.ops.ports import free_ports

pytestmark = pytest.mark.timeout(60)
BOX = [180, 40, 160, 180]


def test_drawing_on_a_received_frame_leaves_the_message_as_it_came():
    pixels = np.random.default_rng(7).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    port = free_ports(1)[0]
    receiver = Receiver("reptest", f"sub+bind:tcp://127.0.0.1:{port}")
    sender = Sender("reptest", f"pub+connect:tcp://127.0.0.1:{port}", threading.Event())
    try:
        header = make_header("frame", "s", "cam0", 0, 0.0, width=640, height=480, encoding="bgr")
        for _ in range(200):  # PUB drops until the subscription is through
            sender.send(header, pixels.tobytes())
            if receiver.socket.poll(50):
                break
        msg = receiver.read()
        assert msg is not None and isinstance(msg.header, Frame) and isinstance(msg.payload, memoryview)
        frame = overlay.decode_frame(msg.header, msg.payload)
        assert frame is not None and not frame.flags.writeable  # a view of the message
        preds = [{"student": 3, "box": BOX, "level": 1, "probs": [0.1, 0.7, 0.1, 0.1]}]
        totals = msgspec.structs.replace(no_totals(), levels={"0": 1})
        drawn = overlay.draw(frame, preds, preds, totals, LEVEL_LABELS)
        assert np.any(drawn != pixels)
        assert np.array_equal(np.frombuffer(msg.payload, np.uint8).reshape(480, 640, 3), pixels)
    finally:
        sender.close()
        receiver.close()

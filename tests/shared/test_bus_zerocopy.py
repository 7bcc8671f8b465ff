"""Received payloads are views of the ZeroMQ message, not copies, over real sockets.

A 640x480 BGR frame goes PUSH -> PULL (ipc and tcp) and PUB -> SUB through the project's
Sender and Receiver. The payload must be a read-only memoryview over the received zmq.Frame
(the same memory, no copy), stay pixel-exact while later messages arrive, and a consumer that
draws on it must copy it (the view refuses writes; it never corrupts the message).
"""

from __future__ import annotations

import gc
import tempfile
import threading
from collections.abc import Iterator

import cv2
import numpy as np
import pytest
import zmq

from shared.bus.bus import Receiver, Sender
from shared.bus.messages import BadMessage, Message, decode, encode, make_header
from shared.ops.ports import free_ports

pytestmark = pytest.mark.timeout(60)
WIDTH, HEIGHT = 640, 480
HELD_ACROSS = 20


def _pixels(seq: int) -> np.ndarray:
    return np.random.default_rng(seq).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def _frame(seq: int) -> tuple[object, memoryview]:
    header = make_header("frame", "zc", "cam0", seq, 0.0, width=WIDTH, height=HEIGHT, encoding="bgr")
    return header, memoryview(_pixels(seq)).cast("B")


@pytest.fixture(params=["ipc", "tcp"])
def push_pull(request) -> Iterator[tuple[Sender, Receiver]]:
    with tempfile.TemporaryDirectory(prefix="zc-") as tmp:  # short: an ipc path has a length limit
        endpoint = f"ipc://{tmp}/frames" if request.param == "ipc" else f"tcp://127.0.0.1:{free_ports(1)[0]}"
        receiver = Receiver("zctest", f"pull+bind:{endpoint}", hwm=4)
        sender = Sender("zctest", f"push+connect:{endpoint}", threading.Event(), hwm=4)
        try:
            yield sender, receiver
        finally:
            sender.close()
            receiver.close()


def _receive(receiver: Receiver) -> Message:
    assert receiver.socket.poll(5000), "nothing arrived"
    msg = receiver.read()
    assert msg is not None
    return msg


def _image(msg: Message) -> np.ndarray:
    return np.frombuffer(msg.payload, np.uint8).reshape(HEIGHT, WIDTH, 3)


def _is_view_of_a_zmq_frame(payload: object) -> bool:
    if not isinstance(payload, memoryview) or not isinstance(payload.obj, zmq.Frame):
        return False
    # The very bytes of the message: the array over the payload and over the frame's buffer start at one address.
    ours = np.frombuffer(payload, np.uint8)
    theirs = np.frombuffer(payload.obj.buffer, np.uint8)
    return bool(ours.ctypes.data == theirs.ctypes.data and not ours.flags.owndata)


def test_a_pulled_payload_is_the_received_message_not_a_copy(push_pull):
    sender, receiver = push_pull
    sender.send(*_frame(0))  # type: ignore[arg-type]
    msg = _receive(receiver)
    assert _is_view_of_a_zmq_frame(msg.payload)
    assert isinstance(msg.payload, memoryview) and msg.payload.readonly
    assert np.array_equal(_image(msg), _pixels(0))


def test_payloads_held_across_later_receives_stay_pixel_exact(push_pull):
    sender, receiver = push_pull
    held: dict[int, np.ndarray] = {}
    for seq in range(HELD_ACROSS + 1):
        sender.send(*_frame(seq))  # type: ignore[arg-type]
        msg = _receive(receiver)
        assert msg.header.seq == seq
        if seq in (0, HELD_ACROSS // 2):
            # Only an array over the payload is kept, as a consumer keeps an image: the message goes.
            held[seq] = _image(msg)
        del msg
        gc.collect()
    for seq, image in held.items():
        assert np.array_equal(image, _pixels(seq)), f"frame {seq} changed after later receives"


def test_a_consumer_that_draws_copies_and_the_message_is_left_as_it_was(push_pull):
    sender, receiver = push_pull
    sender.send(*_frame(3))  # type: ignore[arg-type]
    msg = _receive(receiver)
    image = _image(msg)
    assert not image.flags.writeable
    with pytest.raises((ValueError, cv2.error)):  # in place: refused, as it was on bytes
        cv2.rectangle(image, (10, 10), (100, 100), (0, 0, 255), 3)
    drawn = image.copy()
    cv2.rectangle(drawn, (10, 10), (100, 100), (0, 0, 255), 3)
    assert not np.array_equal(drawn, image)
    assert np.array_equal(image, _pixels(3))


def test_a_subscriber_gets_views_that_outlive_later_messages():
    port = free_ports(1)[0]
    sender = Sender("zctest", f"pub+bind:tcp://127.0.0.1:{port}", threading.Event(), hwm=4)
    receiver = Receiver("zctest", f"sub+connect:tcp://127.0.0.1:{port}", hwm=4)
    try:
        first = None
        for seq in range(200):  # PUB drops until the subscription is through: send until one arrives
            sender.send(*_frame(seq))  # type: ignore[arg-type]
            if receiver.socket.poll(50):
                first = _receive(receiver)
                break
        assert first is not None, "the subscriber never received a frame"
        assert _is_view_of_a_zmq_frame(first.payload)
        start = first.header.seq
        for seq in range(start + 1, start + 1 + HELD_ACROSS):
            sender.send(*_frame(seq))  # type: ignore[arg-type]
            later = _receive(receiver)
            assert np.array_equal(_image(later), _pixels(later.header.seq))
        gc.collect()
        assert np.array_equal(_image(first), _pixels(start))
    finally:
        sender.close()
        receiver.close()


def test_decode_of_views_checks_as_on_bytes_and_keeps_bytes_as_they_are():
    header = make_header("frame", "zc", "cam0", 1, 0.0, width=2, height=1, encoding="jpeg")
    jpeg_like = b"\xff\xd8rest"
    views = [memoryview(part) for part in encode(header, jpeg_like)]
    assert decode(views).payload == jpeg_like
    assert decode(encode(header, jpeg_like)).payload is jpeg_like  # bytes in: bytes out, not copied
    with pytest.raises(BadMessage) as bad:
        decode([memoryview(part) for part in encode(header, b"not a jpeg")])
    assert bad.value.reason == "bad_jpeg"
    raw = make_header("frame", "zc", "cam0", 1, 0.0, width=2, height=1, encoding="bgr")
    with pytest.raises(BadMessage) as bad:
        decode([memoryview(part) for part in encode(raw, b"\x00" * 5)])
    assert bad.value.reason == "payload_size"

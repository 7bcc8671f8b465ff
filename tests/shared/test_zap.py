"""The ZAP handler (shared/bus/zap.py) over real CURVE handshakes: a trusted key gets in, with its
z85 key as the user id; another key is refused; a handshake that comes long after the handler
started is answered at once (pyzmq's asyncio-polled handler left a first request unanswered in the
compose stack until the client's 30 s handshake timeout)."""

from __future__ import annotations

import time

import zmq
import zmq.auth

from shared.bus.zap import ZapHandler


def _pair(ctx: zmq.Context, server_keys: tuple[bytes, bytes], client_keys: tuple[bytes, bytes]):
    server = ctx.socket(zmq.PULL)
    server.linger = 0
    server.curve_publickey, server.curve_secretkey = server_keys
    server.curve_server = True
    port = server.bind_to_random_port("tcp://127.0.0.1")
    client = ctx.socket(zmq.PUSH)
    client.linger = 0
    client.curve_publickey, client.curve_secretkey = client_keys
    client.curve_serverkey = server_keys[0]
    client.connect(f"tcp://127.0.0.1:{port}")
    return server, client


def test_a_trusted_key_gets_in_late_and_at_once_and_another_key_does_not(tmp_path):
    trusted_dir, stranger_dir = tmp_path / "deployment", tmp_path / "stranger"
    trusted_dir.mkdir()
    stranger_dir.mkdir()
    _, secret = zmq.auth.create_certificates(str(trusted_dir), "bus")
    _, stranger_secret = zmq.auth.create_certificates(str(stranger_dir), "other")
    keys = zmq.auth.load_certificate(secret)
    stranger = zmq.auth.load_certificate(stranger_secret)
    ctx = zmq.Context()
    handler = ZapHandler(ctx)
    handler.trust(trusted_dir)
    sockets = []
    try:
        time.sleep(2.0)  # the handler idles in its poll: the first request comes much later
        server, client = _pair(ctx, keys, keys)
        sockets += [server, client]
        started = time.monotonic()
        client.send(b"hello")
        assert server.poll(5000), "the trusted client's handshake did not complete"
        frame = server.recv(copy=False)
        assert frame.bytes == b"hello" and time.monotonic() - started < 2.0
        assert frame.get("User-Id") == keys[0].decode()  # the z85 public key

        server2, intruder = _pair(ctx, keys, stranger)
        sockets += [server2, intruder]
        intruder.send(b"let me in")  # queued on its side: the handshake never lets it through
        assert not server2.poll(1500)
        assert handler.refused >= 1 and handler.answered >= 2
    finally:
        for sock in sockets:
            sock.close(0)
        handler.close()
        ctx.term()


def test_closing_the_handler_ends_its_thread_and_lets_the_context_end(tmp_path):
    ctx = zmq.Context()
    handler = ZapHandler(ctx)
    handler.close()
    assert not handler._thread.is_alive()
    started = time.monotonic()
    ctx.term()  # no socket of the handler's left open to hold it
    assert time.monotonic() - started < 1.0

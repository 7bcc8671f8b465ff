"""The end of stream a crashed capture could not send, sent by the launcher on its behalf.

A capture that crashes (SIGKILL, segfault) and has no restarts left never sends its `eos`:
its stream would stay open, and the class with it, until REPORT_TIMEOUT. The launcher knows
the capture's frames endpoint, session and stream: it binds that endpoint itself (the
capture is gone, so it is free) and sends the eos there, so the eos drains through the
pipeline behind the frames the capture sent, exactly as the capture's own would.
"""

from __future__ import annotations

import logging
import time

import zmq

from shared.bus.bus import open_socket
from shared.bus.messages import encode, make_header

log = logging.getLogger("launcher")

CRASHED_REASON = "capture_crashed"
CONSUMER_WAIT_SECONDS = 5.0  # facedetect reconnects to the endpoint within its reconnect interval


def send_eos_for(env: dict[str, str], reason: str = CRASHED_REASON) -> bool:
    """Send `env`'s capture's eos on its frames link; False (logged) if no consumer took it."""
    spec, session, stream = env.get("FRAMES_OUT", ""), env.get("SESSION_ID", ""), env.get("STREAM_ID", "")
    if not spec or not session:
        log.error("cannot end stream %s for its crashed capture: no frames link or session", stream)
        return False
    try:
        sock = open_socket(spec, curve_key_file=env.get("CURVE_SERVER_KEY", ""))
    except (zmq.ZMQError, OSError) as exc:
        log.error("cannot end stream %s for its crashed capture: %s", stream, exc)
        return False
    try:
        # seq 0: an eos carries no frame; its seq is only the ack's key, which the kind keeps apart.
        header = make_header("eos", session, stream, 0, time.time(), stamps={"launcher": time.time()},
                             reason=reason, source=env.get("SOURCE", ""))
        if not sock.poll(int(CONSUMER_WAIT_SECONDS * 1000), zmq.POLLOUT):
            log.error("stream %s: no consumer took the eos of its crashed capture", stream)
            return False
        sock.send_multipart(encode(header))
        log.warning("stream %s: its capture crashed and stays down; its end of stream (%s) sent for it",
                    stream, reason)
        return True
    finally:
        sock.close()  # lingers until the eos has left (open_socket's LINGER for senders)

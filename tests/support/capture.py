"""A capture service as a real process (`python -m engagement.cli capture`) with a consumer of its frames."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import zmq

from shared.ops.config import REPO_ROOT
from tests.harness import Peer
from tests.support.links import link


def start_capture(source: str, *flags: str, env: dict[str, str] | None = None,
                  session: str | None = "test-session", consumer_after: float = 0.0,
                  consumer_hwm: int | None = None, preview_out: str = "") -> tuple[subprocess.Popen, Peer]:
    """A capture process and a consumer of its frames; session None: no SESSION_ID (its own);
    consumer_after: seconds the consumer connects after the process starts; consumer_hwm: how
    many messages the consumer's queue takes ahead of its reads (ZeroMQ's default: 1000);
    preview_out: where its preview goes (by default a link nobody reads)."""
    frames_out, _, endpoint = link("frames")
    preview_out = preview_out or link("preview")[0]
    consumer = None if consumer_after else Peer(zmq.PULL, endpoint, bind=False, hwm=consumer_hwm)
    proc = subprocess.Popen([sys.executable, "-m", "engagement.cli", "capture", "--source", source,
                             "--frames-out", frames_out, "--preview-out", preview_out,
                             "--metrics-port", "0", *(["--session-id", session] if session else []), *flags],
                            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    if consumer is None:
        time.sleep(consumer_after)
        consumer = Peer(zmq.PULL, endpoint, bind=False, hwm=consumer_hwm)
    return proc, consumer


def played(source: str, *flags: str, read_after: float = 0.0) -> list:
    """Every message a capture of `source` sends, its eos last, the process ended cleanly; `read_after`:
    seconds the consumer waits before it reads (the capture blocks on a full queue meanwhile)."""
    proc, consumer = start_capture(source, *flags)
    try:
        time.sleep(read_after)
        got = consumer.recv_until_eos()
        assert proc.wait(20) == 0, proc.stderr.read()
    finally:
        proc.kill()
        consumer.close()
    return got

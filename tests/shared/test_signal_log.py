"""A stop request that lands while the main thread writes a log line still stops (shared/ops/signal_log.py).

A fresh clone's CI caught a reporter that never stopped: its SIGTERM came while it wrote "running"
to stderr, the handler's own line hit the same stream (RuntimeError: reentrant call inside
BufferedWriter) and the error left the handler before the stop was set. Here the signal is made to
land inside a real BufferedWriter's write, every time: the raw stream under it asks for the stop while
the writer holds its lock, as the interpreter does when it runs a handler mid-write.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from services.launcher.stopping import StopRequests
from shared.ops.service import Service
from shared.ops.settings import InferenceSettings
from tests.harness import settings_for


class _RawThatIsInterrupted(io.RawIOBase):
    """A stream whose first write is interrupted by `on_write` (the signal), the writer's lock held."""

    def __init__(self, on_write: Callable[[], None]) -> None:
        self.on_write, self.fired, self.written = on_write, False, b""

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if not self.fired:
            self.fired = True
            self.on_write()
        self.written += bytes(data)
        return len(data)


@contextmanager
def _stderr_like(log: logging.Logger, on_write: Callable[[], None]) -> Iterator[_RawThatIsInterrupted]:
    """The log's lines, and sys.stderr (where logging reports a line it could not write), on one stream."""
    raw = _RawThatIsInterrupted(on_write)
    # A buffer smaller than a line: the write reaches the raw stream inside BufferedWriter.write.
    stream = io.TextIOWrapper(io.BufferedWriter(raw, buffer_size=8), write_through=True)
    handler = logging.StreamHandler(stream)
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    saved, sys.stderr = sys.stderr, stream
    try:
        yield raw
    finally:  # the loggers as they were: later tests in this process read their levels
        sys.stderr = saved
        log.setLevel(level)
        log.removeHandler(handler)


class _Idle(Service[InferenceSettings]):
    name = "inference"


def test_a_sigterm_landing_in_a_services_log_write_still_stops_it():
    service = _Idle(settings_for(InferenceSettings))
    with _stderr_like(service.log, service.request_stop) as raw:
        service.log.info("running")
    assert raw.fired
    assert service.stop.is_set()
    assert b"running" in raw.written


def test_a_ctrl_c_landing_in_the_launchers_log_write_still_ends_the_class_and_tells_the_captures():
    stops, told = StopRequests(), []
    stops.on_first = lambda: told.append("captures")
    with _stderr_like(logging.getLogger("launcher"), stops.handle) as raw:
        logging.getLogger("launcher").info("starting facedetect")
    assert raw.fired
    assert stops.stopping.is_set() and told == ["captures"]
    # and a second one, mid-write too, hurries the stop
    with _stderr_like(logging.getLogger("launcher"), stops.handle):
        logging.getLogger("launcher").info("waiting for the report")
    assert stops.hurry.is_set()

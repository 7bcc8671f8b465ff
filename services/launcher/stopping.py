"""The launcher's stop requests (Ctrl-C, SIGTERM), each with a clear meaning and no traceback.

The first ends the class: what is starting stops starting (a stop during start-up starts
nothing more), the captures are told to end their streams, and the report is still written.
A second one hurries that stop: every service still running is killed at once instead of
being waited for, and the launcher still tidies up (report from Redis, run and bus folders).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

from shared.ops.signal_log import say

log = logging.getLogger("launcher")


class StopRequests:
    def __init__(self) -> None:
        self.stopping = threading.Event()  # the first request: end the class
        self.hurry = threading.Event()  # a second one: kill what still runs, now
        self.first_at: float | None = None  # monotonic time of the first request
        self.on_first: Callable[[], None] | None = None  # e.g. tell the captures to stop

    def install(self) -> None:
        signal.signal(signal.SIGINT, self.handle)
        signal.signal(signal.SIGTERM, self.handle)

    def handle(self, _signum: int = signal.SIGTERM, _frame: object = None) -> None:
        # Never raises: a KeyboardInterrupt raised here could land anywhere (in the clean-up too). The work
        # first, the line last and through `say`: the main thread may be mid-write (shared/ops/signal_log.py).
        if self.stopping.is_set():
            first_hurry = not self.hurry.is_set()
            self.hurry.set()
            if first_hurry:
                say(log, logging.WARNING, "second stop request: stopping every service now")
            return
        self.first_at = time.monotonic()
        self.stopping.set()
        if self.on_first:
            self.on_first()
        say(log, logging.INFO, "stop requested: ending the session (the report is still written)")


class StartStopped(Exception):
    """A stop was asked for while services were starting: nothing more is started."""

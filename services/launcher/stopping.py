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
        # Never raises: a KeyboardInterrupt raised here could land anywhere (in the clean-up too).
        if self.stopping.is_set():
            if not self.hurry.is_set():
                log.warning("second stop request: stopping every service now")
            self.hurry.set()
            return
        self.first_at = time.monotonic()
        self.stopping.set()
        log.info("stop requested: ending the session (the report is still written)")
        if self.on_first:
            self.on_first()


class StartStopped(Exception):
    """A stop was asked for while services were starting: nothing more is started."""

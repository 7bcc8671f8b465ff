"""A log line from a signal handler that never raises.

Python runs a signal handler on the main thread between two of its bytecodes, perhaps in the
middle of that thread's own write to stderr. The stream then refuses the handler's write
(RuntimeError: reentrant call inside BufferedWriter), and raised out of the handler that error
skipped the rest of the handler and landed wherever the main thread was: a SIGTERM that came while
a service logged "running" set no stop, and the service ran on (found by a fresh clone's CI). A
handler does its work first and says so last, through `say`: the line is lost then, not the work.
"""

from __future__ import annotations

import logging


def say(log: logging.Logger, level: int, message: str, *args: object) -> None:
    """`log.log(level, message, *args)`, or nothing when the stream is in the middle of a write."""
    try:
        log.log(level, message, *args)
    except RuntimeError:
        pass

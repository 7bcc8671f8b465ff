"""Whether what this process has sent has been read at the other end: before a producer closes its socket.

ZeroMQ's linger waits until its own queue has moved into the connection, not until the consumer has
read it. Over ipc:// a producer that closed while its consumer was still behind lost its last
messages (libzmq issue 4660, open): a video file of small JPEG frames played to its end lost its last
two frames and its eos, and the class never ended. The kernel knows how many bytes the consumer has
not read yet (SIOCOUTQ, on each of this process's sockets); once that stays 0 while ZeroMQ could write
more, nothing is left in ZeroMQ's queue either.
"""

from __future__ import annotations

import array
import fcntl
import os
import termios
import threading
import time

QUIET_SECONDS = 0.3  # nothing unread for this long: ZeroMQ had time to write whatever it still held
POLL_SECONDS = 0.05


def unread_bytes() -> int | None:
    """Bytes this process's sockets have sent that their peers have not read (unix sockets) or not
    acknowledged (TCP); None where the kernel cannot say (not Linux)."""
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    total = 0
    pending = array.array("i", [0])
    for name in fds:
        try:
            fd = int(name)
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            fcntl.ioctl(fd, termios.TIOCOUTQ, pending, True)  # SIOCOUTQ: the same request on a socket
        except (OSError, ValueError):
            continue  # closed meanwhile, a listening socket, not a stream
        total += pending[0]
    return total


def wait_until_read(timeout: float, stop: threading.Event | None = None) -> bool:
    """Until the peers have read everything sent (nothing unread for QUIET_SECONDS), `timeout` or a stop;
    whether they have. Where the kernel cannot say, waits QUIET_SECONDS and says True."""
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        unread = unread_bytes()
        now = time.monotonic()
        if unread is None or unread == 0:
            quiet_since = now if quiet_since is None else quiet_since
            if now - quiet_since >= QUIET_SECONDS:
                return True
        else:
            quiet_since = None
        time.sleep(POLL_SECONDS)
    return False

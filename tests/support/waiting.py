"""Wait for a condition, not for a fixed time: fast when the machine is fast, patient when it is not."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds passed; its last answer, as a bool."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 20.0, interval: float = 0.05) -> None:
    """Like wait_until, but fail the test naming `what` when the condition never came."""
    assert wait_until(predicate, timeout, interval), f"timed out after {timeout:.0f} s waiting for {what}"

"""Run a pipeline service in-process on a thread, with real ZeroMQ sockets on free ports.

`Service.run` installs signal handlers, which only the main thread may do, so the harness
drives the same steps itself: setup, open_sockets, loop, on_stop, close. Tests talk to the
service through real sockets bound/connected on free loopback ports.
"""

from __future__ import annotations

from services.launcher.ports import free_ports


def link(name: str) -> tuple[str, str, str]:
    """A free-port link: (producer spec, consumer spec, endpoint)."""
    port = free_ports(1)[0]
    endpoint = f"tcp://127.0.0.1:{port}"
    if name == "preview":
        return f"pub+bind:{endpoint}", f"sub+connect:{endpoint}", endpoint
    return f"push+bind:{endpoint}", f"pull+connect:{endpoint}", endpoint


def counter(metric, *labels: str) -> float:  # type: ignore[no-untyped-def]
    return metric.labels(*labels)._value.get()

"""Prometheus metrics common to every service, and the HTTP server for /metrics and /healthz.

Names start with `engagement_` and carry their unit. Each service is its own process, so
the `service` label is constant per target; it lets one Grafana query cover all stages.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, Counter, Enum, Histogram, make_wsgi_app
from prometheus_client.process_collector import ProcessCollector

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

# Buckets from 1 ms to 10 s: a bus hop is sub-millisecond, a cold model call can take seconds.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5,
                   0.75, 1.0, 2.5, 5.0, 10.0)

MESSAGES_RECEIVED = Counter("engagement_messages_received_total",
                            "Valid messages received", ["service", "kind"])
MESSAGES_SENT = Counter("engagement_messages_sent_total", "Messages sent", ["service", "kind"])
MESSAGES_REJECTED = Counter("engagement_messages_rejected_total",
                            "Malformed messages counted and dropped", ["service", "reason"])
LINK_RECONNECTS = Counter("engagement_link_reconnects_total",
                          "Times a link this service connects was connected again after ZeroMQ gave it up (no "
                          "peer and no attempt for RECONNECT_AFTER_SECONDS: a protocol error in a handshake)",
                          ["service", "link"])
FRAMES_DROPPED = Counter("engagement_frames_dropped_total",
                         "Frames dropped because a queue was full or a gap was seen",
                         ["service", "reason"])
PROCESSING_SECONDS = Histogram("engagement_processing_seconds",
                               "Time a stage spends handling one message",
                               ["service"], buckets=LATENCY_BUCKETS)
LATENCY_SECONDS = Histogram("engagement_latency_seconds",
                            "Time from frame capture until this stage received it",
                            ["service"], buckets=LATENCY_BUCKETS)
SERVICE_STATE = Enum("engagement_service_state", "Lifecycle state of the service",
                     ["service"], states=["starting", "running", "stopping", "failed"])

# Per-process CPU and memory under our own prefix (memory growth is the failure to watch).
ProcessCollector(namespace="engagement", registry=REGISTRY)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


METRICS_POLL_SECONDS = 30.0


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def shutdown(self) -> None:
        """Stopped at once, not at the next poll: a connection of its own wakes serve_forever to see it."""
        host, port = self.socket.getsockname()[:2]
        stopping = threading.Thread(target=super().shutdown, daemon=True)
        stopping.start()
        while stopping.is_alive():
            with contextlib.suppress(OSError):
                socket.create_connection((host, port), timeout=1).close()
            stopping.join(0.05)


def serve(host: str, port: int, healthy: Callable[[], bool],
          state: Callable[[], str] | None = None) -> WSGIServer | None:
    """Serve /metrics and /healthz in a daemon thread; port 0 disables it. /healthz's body is the
    service's state, so that a 503 tells "starting" (loading its model) from "failed"."""
    if not port:
        return None
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            ok = healthy()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain")])
            said = state() if state else ("ok" if ok else "not ready")
            return [f"{said}\n".encode()]
        body: Iterable[bytes] = metrics_app(environ, start_response)
        return body

    server = make_server(host, port, app, _ThreadingServer, handler_class=_QuietHandler)
    # A request wakes the server at once; the poll interval only bounds a shutdown(), which nobody calls (a
    # daemon thread): 0.5 s, the default, woke each of a box's ~80 processes twice a second for nothing.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": METRICS_POLL_SECONDS}, name="metrics",
                     daemon=True).start()
    return server

"""A real MJPEG camera over HTTP on loopback, for capture's live-source tests."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2

from tools.sample_video import render_frame


class MjpegServer:
    """A real HTTP MJPEG camera on loopback (multipart/x-mixed-replace, as IP cameras serve).

    Each connection gets `per_connection` frames at `fps`, then the server hangs up: the
    stream drops out, and capture must reconnect.
    """

    def __init__(self, per_connection: int = 15, fps: float = 30.0, hold: float = 0.0,
                 max_connections: int = 0) -> None:
        """`max_connections`: after that many, the camera is gone (503 to every later request)."""
        jpeg = cv2.imencode(".jpg", render_frame(0.0, 10.0, 1))[1].tobytes()
        part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n"
        self.connections = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.connections += 1
                if max_connections and server.connections > max_connections:
                    self.send_error(503, "camera gone")
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for _ in range(per_connection):
                        self.wfile.write(part)
                        time.sleep(1 / fps)
                    time.sleep(hold)  # a stalled camera: connection open, no frames
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/stream.mjpg"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

"""What goes down the live streams: MJPEG parts, server-sent events, and the response that
reads a browser's Fanout subscription until the browser or the service goes away."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from services.web.fanout import Subscription

KEEPALIVE_SECONDS = 15.0


def mjpeg_part(jpeg: bytes | memoryview, t_capture: float, seq: int, stream: str = "") -> bytes:
    # The stream id goes into a header: keep it to printable ASCII (an id is the operator's text).
    safe = "".join(c for c in stream if 32 < ord(c) < 127)[:64]
    head = (f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
            f"X-Capture-Time: {t_capture:.6f}\r\nX-Seq: {seq}\r\nX-Stream: {safe}\r\n\r\n").encode("ascii")
    return head + jpeg + b"\r\n"


def sse_event(document: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(document, separators=(",", ":")).encode("utf-8") + b"\n\n"


async def _items(sub: Subscription, first: bytes, keepalive: bytes) -> AsyncIterator[bytes]:
    try:
        if first:
            yield first
        while True:
            try:
                item = await sub.get(KEEPALIVE_SECONDS)
            except ConnectionAbortedError:  # the service is stopping
                return
            if item is not None:
                yield item
            elif keepalive:
                yield keepalive
    finally:
        sub.close()


def streaming(sub: Subscription, media_type: str, first: bytes = b"", keepalive: bytes = b"",
              headers: dict[str, str] | None = None) -> StreamingResponse:
    """`first` once, then every item; `keepalive` when nothing came for KEEPALIVE_SECONDS (an SSE
    comment keeps proxies from closing an idle stream; MJPEG has none)."""
    return StreamingResponse(_items(sub, first, keepalive), media_type=media_type,
                             headers={"Cache-Control": "no-store", **(headers or {})})

"""The report/totals MQTT envelope: built by the reporter, parsed by the bridge, split for AWS.

The reporter publishes `build(...)` = {"schema": 1, "type": "report"|"totals", "id",
"device_id", "session", "sent_at", "body"} on `topic(device_id, type)`; the bridge
validates it with `parse`. AWS IoT Core refuses payloads over 128 KB, so a larger envelope is sent
as numbered parts that carry the same id plus "part" (1-based), "parts" and "body_chunk" (a
slice of the body's JSON text); the cloud side (s3_consumer.ReportStore) reassembles them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

SCHEMA = 1
TYPES = ("report", "totals")
AWS_MAX_PAYLOAD_BYTES = 128 * 1024
AWS_MAX_TOPIC_BYTES = 256
AWS_MAX_TOPIC_SLASHES = 7
MAX_ID_CHARS = 200


def topic(device_id: str, kind: str) -> str:
    """The local broker's topic for one envelope type."""
    return f"engagement/{device_id}/{kind}"


def build(kind: str, message_id: str, device_id: str, session: str, body: dict[str, Any]) -> dict[str, Any]:
    """The envelope the reporter publishes (JSON-encoded by the caller)."""
    return {"schema": SCHEMA, "type": kind, "id": message_id, "device_id": device_id,
            "session": session, "sent_at": time.time(), "body": body}


class InvalidPayload(ValueError):
    """Not an envelope we forward; `reason` is a short label used for the counter."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Envelope:
    type: str
    id: str
    doc: dict[str, Any]
    raw: bytes


def parse(payload: bytes) -> Envelope:
    """Validate schema, type and id; raise InvalidPayload(reason) otherwise, whatever the bytes."""
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidPayload("not_json", str(exc)) from None
    except RecursionError:  # nested deeper than the interpreter's stack: never ours
        raise InvalidPayload("too_deep", "JSON nested deeper than the parser's recursion limit") from None
    except ValueError as exc:  # valid JSON Python refuses, e.g. an integer of more than 4300 digits
        raise InvalidPayload("not_json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise InvalidPayload("not_object")
    if doc.get("schema") != SCHEMA:
        raise InvalidPayload("wrong_schema", repr(doc.get("schema")))
    if doc.get("type") not in TYPES:
        raise InvalidPayload("wrong_type", repr(doc.get("type")))
    msg_id = doc.get("id")
    if not isinstance(msg_id, str) or not msg_id or len(msg_id) > MAX_ID_CHARS:
        raise InvalidPayload("bad_id")
    if not isinstance(doc.get("body"), dict):
        raise InvalidPayload("bad_body")
    return Envelope(doc["type"], msg_id, doc, payload)


def check_topic(topic: str) -> None:
    """AWS IoT Core topic limits (256 bytes, at most 7 slashes, no reserved '$' topics)."""
    if len(topic.encode()) > AWS_MAX_TOPIC_BYTES:
        raise ValueError(f"topic {topic!r} is longer than {AWS_MAX_TOPIC_BYTES} bytes (AWS IoT limit)")
    if topic.count("/") > AWS_MAX_TOPIC_SLASHES:
        raise ValueError(f"topic {topic!r} has more than {AWS_MAX_TOPIC_SLASHES} slashes (AWS IoT limit)")
    if topic.startswith("$") or any(c in topic for c in "+#"):
        raise ValueError(f"topic {topic!r} is reserved or holds a wildcard")


def _dump(doc: dict[str, Any]) -> bytes:
    # ensure_ascii: one character is one byte, so chunk sizes are predictable.
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=True).encode()


def split(env: Envelope, max_bytes: int = AWS_MAX_PAYLOAD_BYTES, max_parts: int = 64) -> list[bytes]:
    """The payloads to send: the original bytes if they fit, else numbered parts.

    Raises InvalidPayload("too_large") when even `max_parts` parts would not hold it.
    """
    if len(env.raw) <= max_bytes:
        return [env.raw]
    try:
        text = json.dumps(env.doc["body"], separators=(",", ":"), ensure_ascii=True)
    except RecursionError:  # parsed, but too deep to write again
        raise InvalidPayload("too_deep", "body nested too deep to split") from None
    head = {k: v for k, v in env.doc.items() if k != "body"}
    # Room for the chunk: the part envelope without its chunk, with the widest part numbers.
    overhead = len(_dump({**head, "part": max_parts, "parts": max_parts, "body_chunk": ""}))
    budget = max_bytes - overhead
    if budget < 1024:
        raise InvalidPayload("too_large", f"max payload {max_bytes} B leaves no room for a chunk")
    chunks: list[str] = []
    pos = 0
    while pos < len(text):
        size = budget
        # JSON escaping inside a string can grow a chunk (\" and \\): shrink until it fits.
        while len(json.dumps(text[pos:pos + size])) - 2 > budget:
            size = int(size * 0.9)
        chunks.append(text[pos:pos + size])
        pos += size
        if len(chunks) > max_parts:
            raise InvalidPayload("too_large", f"{len(env.raw)} B needs more than {max_parts} parts "
                                 f"of {max_bytes} B")
    n = len(chunks)
    return [_dump({**head, "part": i + 1, "parts": n, "body_chunk": c}) for i, c in enumerate(chunks)]


def join_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Rebuild the envelope from all its parts (any order)."""
    parts = sorted(parts, key=lambda p: p["part"])
    if [p["part"] for p in parts] != list(range(1, parts[0]["parts"] + 1)):
        raise ValueError("parts missing or repeated")
    head = {k: v for k, v in parts[0].items() if k not in ("part", "parts", "body_chunk")}
    return {**head, "body": json.loads("".join(p["body_chunk"] for p in parts))}

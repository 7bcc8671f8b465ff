"""The one message format of the bus, and its validation.

A message is a ZeroMQ multipart `[topic, header, payload]`: topic is the message kind as
ASCII, header is msgpack (a dict with a schema version), payload is raw bytes (BGR pixels
or JPEG) that is never re-serialised. Every receiver calls `decode`, which raises
`BadMessage` with a short reason; services count the reason and drop the message.

Kinds, and what their header carries beyond the common fields (v, kind, session, stream,
seq, t_capture, stamps):

  frame        width, height, encoding ('bgr'|'jpeg')      payload: the image
  faces        width, height, crop, faces[{student, box, conf}]
                                                           payload: crops, crop*crop*3 each
  batch        crop, length, students[{student, box, conf}]
                                                           payload: length crops per student
  predictions  model{name, kind, baseline, labels}, predictions[{student, box, probs, level}]
  update       totals{...}, predictions[...] (aggregator -> reporter)
  eos          reason: end of stream for (session, stream); never dropped
  ack          of: the kind acknowledged ('predictions'|'eos'), same session/stream/seq
               (aggregator -> inference once written to Redis; see shared/acks.py)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import msgpack

from shared.levels import LEVELS

SCHEMA_VERSION = 1
MAX_DIMENSION = 8192  # pixels; a header claiming more is lying or hostile
MAX_FACES = 64
MAX_HEADER_BYTES = 1 << 20

KINDS = ("frame", "faces", "batch", "predictions", "update", "eos", "ack")
NO_PAYLOAD_KINDS = frozenset({"predictions", "update", "eos", "ack"})  # header only: any payload is hostile
CONTROL_KINDS = frozenset({"eos"})  # never dropped


class BadMessage(ValueError):
    """A message that does not follow the contract. `reason` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Message:
    kind: str
    header: dict[str, Any]
    payload: bytes = b""
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.header[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.header.get(key, default)


def make_header(kind: str, session: str, stream: str, seq: int, t_capture: float,
                stamps: dict[str, float] | None = None, **fields: Any) -> dict[str, Any]:
    return {"v": SCHEMA_VERSION, "kind": kind, "session": session, "stream": stream,
            "seq": int(seq), "t_capture": float(t_capture), "stamps": dict(stamps or {}), **fields}


def follow_up(prev: Message | dict[str, Any], kind: str, stage: str, **fields: Any) -> dict[str, Any]:
    """Header of a message derived from `prev`: same identity and capture time, one more stamp."""
    h = prev.header if isinstance(prev, Message) else prev
    stamps = dict(h.get("stamps", {}))
    stamps[stage] = time.time()
    return make_header(kind, h["session"], h["stream"], h["seq"], h["t_capture"], stamps, **fields)


def encode(header: dict[str, Any], payload: bytes | memoryview = b"") -> list[bytes | memoryview]:
    return [header["kind"].encode("ascii"), msgpack.packb(header, use_bin_type=True), payload]


# --- validation -----------------------------------------------------------------------

def _need(h: dict[str, Any], key: str, types: type | tuple[type, ...]) -> Any:
    if key not in h:
        raise BadMessage("missing_field", key)
    value = h[key]
    if isinstance(value, bool) or not isinstance(value, types):
        raise BadMessage("wrong_type", f"{key}={type(value).__name__}")
    return value


def _dimension(h: dict[str, Any], key: str) -> int:
    value = _need(h, key, int)
    if not 0 < value <= MAX_DIMENSION:
        raise BadMessage("bad_dimension", f"{key}={value}")
    return value


def _box(face: Any) -> None:
    if not isinstance(face, dict):
        raise BadMessage("wrong_type", "face entry")
    _need(face, "student", int)
    box = _need(face, "box", (list, tuple))
    if len(box) != 4 or not all(isinstance(b, int | float) and not isinstance(b, bool) for b in box):
        raise BadMessage("bad_box", repr(box)[:40])


def _faces_list(h: dict[str, Any], key: str) -> list[dict[str, Any]]:
    faces = _need(h, key, list)
    if len(faces) > MAX_FACES:
        raise BadMessage("too_many_faces", str(len(faces)))
    for face in faces:
        _box(face)
    return faces


def _check_frame(h: dict[str, Any], payload: bytes) -> None:
    w, hh = _dimension(h, "width"), _dimension(h, "height")
    enc = _need(h, "encoding", str)
    if enc == "bgr":
        if len(payload) != w * hh * 3:
            raise BadMessage("payload_size", f"{len(payload)} != {w}x{hh}x3")
    elif enc == "jpeg":
        if not payload.startswith(b"\xff\xd8"):
            raise BadMessage("bad_jpeg")
    else:
        raise BadMessage("bad_encoding", enc[:20])


def _check_crops(h: dict[str, Any], payload: bytes, key: str, per_face: int) -> None:
    crop = _dimension(h, "crop")
    faces = _faces_list(h, key)
    if len(payload) != len(faces) * per_face * crop * crop * 3:
        raise BadMessage("payload_size", f"{len(payload)} for {len(faces)}x{per_face} crops of {crop}")


def _check_faces(h: dict[str, Any], payload: bytes) -> None:
    _dimension(h, "width")
    _dimension(h, "height")
    _check_crops(h, payload, "faces", 1)


def _check_batch(h: dict[str, Any], payload: bytes) -> None:
    length = _need(h, "length", int)
    if not 0 < length <= 256:
        raise BadMessage("bad_length", str(length))
    _check_crops(h, payload, "students", length)


def _check_predictions(h: dict[str, Any], payload: bytes) -> None:
    _need(h, "model", dict)
    for p in _faces_list(h, "predictions"):
        probs = _need(p, "probs", list)
        if len(probs) != LEVELS or not all(isinstance(x, int | float) for x in probs):
            raise BadMessage("bad_probs")
        level = _need(p, "level", int)
        if not 0 <= level < LEVELS:
            raise BadMessage("bad_level", str(level))


def _check_update(h: dict[str, Any], payload: bytes) -> None:
    _need(h, "totals", dict)
    _need(h, "predictions", list)


def _check_eos(h: dict[str, Any], payload: bytes) -> None:
    _need(h, "reason", str)


def _check_ack(h: dict[str, Any], payload: bytes) -> None:
    if _need(h, "of", str) not in ("predictions", "eos"):
        raise BadMessage("bad_ack", repr(h["of"])[:20])


_CHECKS = {"frame": _check_frame, "faces": _check_faces, "batch": _check_batch,
           "predictions": _check_predictions, "update": _check_update, "eos": _check_eos, "ack": _check_ack}


def decode(parts: list[bytes], expect: tuple[str, ...] | None = None) -> Message:
    """Parse and validate one multipart message; raise BadMessage on any contract breach."""
    if len(parts) != 3:
        raise BadMessage("wrong_part_count", str(len(parts)))
    topic, raw_header, payload = (bytes(p) for p in parts)
    if len(raw_header) > MAX_HEADER_BYTES:
        raise BadMessage("header_too_large", str(len(raw_header)))
    try:
        header = msgpack.unpackb(raw_header, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise BadMessage("bad_msgpack", type(exc).__name__) from None
    if not isinstance(header, dict):
        raise BadMessage("header_not_map")
    if header.get("v") != SCHEMA_VERSION:
        raise BadMessage("wrong_version", repr(header.get("v"))[:20])
    kind = header.get("kind")
    if kind not in KINDS:
        raise BadMessage("unknown_kind", repr(kind)[:20])
    if topic != kind.encode("ascii"):
        raise BadMessage("topic_mismatch")
    if expect is not None and kind not in expect:
        raise BadMessage("unexpected_kind", kind)
    _need(header, "session", str)
    _need(header, "stream", str)
    _need(header, "seq", int)
    _need(header, "t_capture", (int, float))
    if kind in NO_PAYLOAD_KINDS and payload:
        raise BadMessage("unexpected_payload", f"{len(payload)} bytes on a {kind} message")
    stamps = _need(header, "stamps", dict)
    if not all(isinstance(v, int | float) for v in stamps.values()):
        raise BadMessage("wrong_type", "stamps")
    _CHECKS[kind](header, payload)
    return Message(kind=kind, header=header, payload=payload)

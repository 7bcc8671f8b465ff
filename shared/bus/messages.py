"""The one message format of the bus: one typed structure per message kind, and its decoding.

A message is a ZeroMQ multipart `[topic, header, payload]`: topic is the message kind as
ASCII, header is msgpack (a map with a schema version), payload is raw bytes (BGR pixels or
JPEG) that is never re-serialised. A received payload is not copied either: it is a read-only
memoryview of the ZeroMQ message (`Payload`), valid for as long as it is referenced. Each
kind's header is a msgspec Struct below (`Frame`, `Faces`, `Batch`, `Predictions`, `Update`,
`Eos`, `Ack`): every field is named once, there, with its type and range. Every receiver
calls `decode`, which raises `BadMessage` with a short reason; services count the reason and
drop the message.

Why msgspec Structs (not dataclasses + hand-written checks): one call decodes the msgpack
map *and* validates every field's type and range (and the nested face/prediction entries)
in C, and picks the kind's Struct from the "kind" tag; a dataclass would need the map
decoded first and each field checked by hand, which is what this module used to do. The
wire format is unchanged: the same map, the same field names, schema version 1.
"""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal, TypedDict

import msgpack
import msgspec
from typing_extensions import NotRequired  # typing's own from 3.11; the Jetson image runs 3.10

from shared.data.levels import LEVELS
from shared.data.model_info import ModelInfo
from shared.data.running_totals import Totals

SCHEMA_VERSION: Final = 1
MAX_DIMENSION = 8192  # pixels; a header claiming more is lying or hostile
MAX_FACES = 64
MAX_SEQUENCE = 256  # crops per student in a batch
MAX_HEADER_BYTES = 1 << 20

KINDS = ("frame", "faces", "batch", "predictions", "update", "eos", "ack")
NO_PAYLOAD_KINDS = frozenset({"predictions", "update", "eos", "ack"})  # header only: any payload is hostile
CONTROL_KINDS = frozenset({"eos"})  # never dropped

# A message's payload: bytes when built here, a read-only memoryview of the received ZeroMQ
# message when decoded (a 7.4 MB batch is not copied on every hop). Both take len(), slicing,
# np.frombuffer and bytes.join; a view holds its message's memory for as long as it is referenced
# (a slice too: a crop kept from a batch keeps the batch). Read-only, as bytes are: a consumer
# that draws on the pixels copies them first.
Payload = bytes | memoryview


class BadMessage(ValueError):
    """A message that does not follow the contract. `reason` is a short metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# --- the pieces headers are made of ------------------------------------------------------

Dimension = Annotated[int, msgspec.Meta(gt=0, le=MAX_DIMENSION)]
Box = Annotated[list[int | float], msgspec.Meta(min_length=4, max_length=4)]  # x, y, w, h in pixels


class Face(TypedDict):
    """One detected face (facedetect on): the tracker's student id, where, how sure."""

    student: int
    box: Box
    conf: NotRequired[float]


class Prediction(TypedDict):
    """One student's level in one frame (inference on)."""

    student: int
    box: Box
    conf: NotRequired[float]
    probs: Annotated[list[float], msgspec.Meta(min_length=LEVELS, max_length=LEVELS)]
    level: Annotated[int, msgspec.Meta(ge=0, lt=LEVELS)]
    heads: NotRequired[dict[str, list[float]]]  # multitask bundles: every head's probabilities
    signals: NotRequired[dict[str, Any]]  # the attention baseline: what the level was read from


FaceList = Annotated[list[Face], msgspec.Meta(max_length=MAX_FACES)]
PredictionList = Annotated[list[Prediction], msgspec.Meta(max_length=MAX_FACES)]


# --- one Struct per kind -------------------------------------------------------------------

class Header(msgspec.Struct, kw_only=True, tag_field="kind"):
    """The fields every message carries; `kind` is the tag that picks the Struct."""

    v: Literal[1]  # SCHEMA_VERSION
    session: str
    stream: str
    seq: int
    t_capture: float  # wall-clock capture time: any stage can measure end-to-end latency
    stamps: dict[str, float]  # stage -> wall-clock time it sent this message

    @property
    def kind(self) -> str:
        return str(self.__struct_config__.tag)  # every kind's tag is its name (tag="...")

    def check_payload(self, payload: Payload) -> None:
        """What the header says about the payload must hold (kinds without one carry none)."""
        if payload:
            raise BadMessage("unexpected_payload", f"{len(payload)} bytes on a {self.kind} message")


class Frame(Header, tag="frame"):
    """capture -> facedetect (frames) and -> reporter (preview). Payload: the image.

    `seq` is the frame's number in its stream, counted once per (session, stream, seq): a
    restarted file capture replays it from 0, a restarted live one continues it (services/capture).
    """

    width: Dimension
    height: Dimension
    encoding: Literal["bgr", "jpeg"]
    t_media: float | None = None  # position in a file source, seconds; None for a live one
    source: str = ""

    def check_payload(self, payload: Payload) -> None:
        if self.encoding == "bgr" and len(payload) != self.width * self.height * 3:
            raise BadMessage("payload_size", f"{len(payload)} != {self.width}x{self.height}x3")
        if self.encoding == "jpeg" and payload[:2] != b"\xff\xd8":
            raise BadMessage("bad_jpeg")


class Faces(Header, tag="faces"):
    """facedetect -> sequencer. Payload: one crop x crop x 3 BGR crop per face, in order."""

    width: Dimension
    height: Dimension
    crop: Dimension
    faces: FaceList
    t_media: float | None = None

    def check_payload(self, payload: Payload) -> None:
        _check_crops(payload, len(self.faces), 1, self.crop)


class Batch(Header, tag="batch"):
    """sequencer -> inference. Payload: `length` crops per student, students in order."""

    crop: Dimension
    length: Annotated[int, msgspec.Meta(gt=0, le=MAX_SEQUENCE)]
    students: FaceList  # the students whose sequence is due in this frame
    faces: FaceList = []  # every face of the frame (the overlay draws those not due too)
    width: Dimension | None = None
    height: Dimension | None = None
    t_media: float | None = None

    def check_payload(self, payload: Payload) -> None:
        _check_crops(payload, len(self.students), self.length, self.crop)


class Predictions(Header, tag="predictions"):
    """inference -> aggregator."""

    model: ModelInfo  # which model (shared/data/model_info.py, the report's too)
    predictions: PredictionList
    faces: FaceList | None = None  # every face of the frame; None: the predicted ones are all
    t_media: float | None = None


class Update(Header, tag="update"):
    """aggregator -> reporter: the frame's predictions with the session's running totals."""

    totals: Totals  # the session's, after this frame (shared/data/running_totals.py)
    predictions: PredictionList
    faces: FaceList = []
    model: ModelInfo = msgspec.field(default_factory=ModelInfo)
    t_media: float | None = None


class Eos(Header, tag="eos"):
    """End of stream for (session, stream); forwarded by every stage and never dropped.

    Sent by capture, or by the launcher for a capture that crashed for good (reason
    capture_crashed, seq 0, stamped `launcher`)."""

    reason: str
    source: str = ""


class Ack(Header, tag="ack"):
    """aggregator -> inference: the message (session, stream, seq) of kind `of` is in Redis, and so is each of
    `more`: further (stream, seq) of the same session and kind, gathered into one message (shared/bus/acks.py)."""

    of: Literal["predictions", "eos"]
    more: list[tuple[str, int]] = []


HEADER_TYPES: dict[str, type[Header]] = {str(cls.__struct_config__.tag): cls
                                         for cls in (Frame, Faces, Batch, Predictions, Update, Eos, Ack)}
assert tuple(HEADER_TYPES) == KINDS

_ENCODER = msgspec.msgpack.Encoder()


def _check_crops(payload: Payload, faces: int, per_face: int, crop: int) -> None:
    if len(payload) != faces * per_face * crop * crop * 3:
        raise BadMessage("payload_size", f"{len(payload)} for {faces}x{per_face} crops of {crop}")


@dataclass
class Message:
    kind: str
    header: Header
    payload: Payload = b""
    extra: dict[str, Any] = field(default_factory=dict)



# --- building ------------------------------------------------------------------------------

def make_header(kind: str, session: str, stream: str, seq: int, t_capture: float,
                stamps: dict[str, float] | None = None, **fields: Any) -> Header:
    """The typed header of a new message; a field the kind does not have is a TypeError."""
    return HEADER_TYPES[kind](v=SCHEMA_VERSION, session=session, stream=stream, seq=int(seq),
                              t_capture=float(t_capture), stamps=dict(stamps or {}), **fields)


def follow_up(prev: Message | Header, kind: str, stage: str, **fields: Any) -> Header:
    """Header of a message derived from `prev`: same identity and capture time, one more stamp."""
    h = prev.header if isinstance(prev, Message) else prev
    stamps = dict(h.stamps)
    stamps[stage] = time.time()
    return make_header(kind, h.session, h.stream, h.seq, h.t_capture, stamps, **fields)


def as_dict(header: Header | dict[str, Any]) -> dict[str, Any]:
    """The header as the plain map that goes on the wire (tests edit it to break the contract)."""
    return dict(header) if isinstance(header, dict) else msgspec.to_builtins(header)


def encode(header: Header | dict[str, Any], payload: Payload = b"") -> list[Payload]:
    """The multipart message. A plain dict is sent as it is, unchecked (tests send malformed ones)."""
    if isinstance(header, Header):
        return [header.kind.encode("ascii"), _ENCODER.encode(header), payload]
    return [str(header["kind"]).encode("ascii"), msgpack.packb(header, use_bin_type=True), payload]


# --- decoding ------------------------------------------------------------------------------

# A value of the right type but out of range, by field: the reason it is counted under.
_RANGE_REASONS = {"v": "wrong_version", "kind": "unknown_kind", "width": "bad_dimension",
                  "height": "bad_dimension", "crop": "bad_dimension", "length": "bad_length",
                  "faces": "too_many_faces", "students": "too_many_faces", "predictions": "too_many_faces",
                  "encoding": "bad_encoding", "of": "bad_ack", "level": "bad_level"}
# Anything wrong inside these fields is counted under one reason.
_FIELD_REASONS = {"box": "bad_box", "probs": "bad_probs"}


@functools.cache
def _decoder(expect: tuple[str, ...] | None) -> msgspec.msgpack.Decoder[Header]:
    """A decoder of the kinds a receiver expects only: any other kind is refused by the tag."""
    kinds = [HEADER_TYPES[k] for k in (expect or KINDS) if k in HEADER_TYPES]
    # The Union of the expected Header subclasses, built at run time (mypy cannot spell it: Any).
    union: Any = functools.reduce(operator.or_, kinds)
    return msgspec.msgpack.Decoder(union)


def _reason(error: msgspec.ValidationError, raw_header: bytes) -> str:
    """msgspec's message (e.g. "Expected `int` >= 1 - at `$.width`") -> a short metric label."""
    try:  # malformed msgpack may still start like a header: it is bad msgpack all the same
        msgspec.msgpack.decode(raw_header)
    except msgspec.DecodeError:
        return "bad_msgpack"
    text = str(error)
    if text.startswith("Invalid value '") and text.endswith("`$.kind`"):
        return "unexpected_kind" if text.split("'")[1] in KINDS else "unknown_kind"
    if text.startswith("Expected `object`, got") and " - at `" not in text:
        return "header_not_map"
    if " - at `" not in text:  # about the whole header
        if text.startswith("Object missing required field"):
            missing = text.split("`")[1]
            return {"v": "wrong_version", "kind": "unknown_kind"}.get(missing, "missing_field")
        return "wrong_type"
    path = text.rsplit(" - at `", 1)[1].rstrip("`")
    names = [part.split("[")[0] for part in path.split(".")[1:]]
    for name in names:
        if name in _FIELD_REASONS:
            return _FIELD_REASONS[name]
    if text.startswith("Object missing required field"):
        return "missing_field"
    last = names[-1] if names else ""
    if ", got `" in text or last not in _RANGE_REASONS:
        return "wrong_version" if last == "v" else "wrong_type"
    return _RANGE_REASONS[last]


def decode(parts: Sequence[Payload], expect: tuple[str, ...] | None = None) -> Message:
    """Parse and validate one multipart message; raise BadMessage on any contract breach.

    The parts are bytes, or memoryviews of the received ZeroMQ frames (Receiver.read): the topic
    and header, a few hundred bytes, are copied; the payload is kept as a read-only view."""
    if len(parts) != 3:
        raise BadMessage("wrong_part_count", str(len(parts)))
    if len(parts[1]) > MAX_HEADER_BYTES:
        raise BadMessage("header_too_large", str(len(parts[1])))
    topic, raw_header = bytes(parts[0]), bytes(parts[1])
    payload = parts[2] if isinstance(parts[2], bytes) else parts[2].toreadonly()
    try:
        header = _decoder(expect).decode(raw_header)
    except msgspec.ValidationError as exc:
        raise BadMessage(_reason(exc, raw_header), str(exc)[:80]) from None
    except msgspec.DecodeError as exc:
        raise BadMessage("bad_msgpack", str(exc)[:80]) from None
    kind = header.kind
    if topic != kind.encode("ascii"):
        raise BadMessage("topic_mismatch")
    header.check_payload(payload)
    return Message(kind=kind, header=header, payload=payload)

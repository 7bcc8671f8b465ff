"""The bus contract: valid messages round-trip, every breach is a BadMessage with a reason."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.bus.messages import SCHEMA_VERSION, BadMessage, Header, as_dict, decode, encode, follow_up, make_header
from shared.data.model_info import ModelInfo
from shared.data.running_totals import Totals, no_totals
from shared.data.totals import FrameRecord, add_record, empty_totals


def frame_parts(**override):
    """An 8x6 BGR frame; `override` changes header fields without changing the payload."""
    header = as_dict(make_header("frame", "s1", "cam0", 7, 1000.0, width=8, height=6, encoding="bgr"))
    header.update(override)
    return [bytes(p) for p in encode(header, np.zeros((6, 8, 3), np.uint8).tobytes())]


def test_frame_round_trip_keeps_identity_and_payload():
    msg = decode(frame_parts())
    assert (msg.kind, msg.header.session, msg.header.seq, msg.header.width) == ("frame", "s1", 7, 8)
    assert len(msg.payload) == 8 * 6 * 3


def test_follow_up_keeps_capture_time_and_adds_a_stamp():
    first = decode(frame_parts())
    header = follow_up(first, "faces", "facedetect", width=8, height=6, crop=4, faces=[])
    assert header.t_capture == 1000.0 and header.seq == 7
    assert "facedetect" in header.stamps
    assert decode([bytes(p) for p in encode(header)]).kind == "faces"


@pytest.mark.parametrize("parts, reason", [
    (frame_parts(width=9), "payload_size"),             # header lies about the size
    (frame_parts(v=SCHEMA_VERSION + 1), "wrong_version"),
    (frame_parts(width=10**6), "bad_dimension"),
    (frame_parts(width="8"), "wrong_type"),
    (frame_parts(encoding="png"), "bad_encoding"),
    (frame_parts(kind="nonsense"), "unknown_kind"),
    ([b"frame", b"\xc1", b""], "bad_msgpack"),
    ([b"frame", msgpack.packb([1, 2]), b""], "header_not_map"),
    ([b"frame", b""], "wrong_part_count"),
])
def test_breaches_are_named(parts, reason):
    with pytest.raises(BadMessage) as err:
        decode(parts)
    assert err.value.reason == reason


def test_topic_must_match_kind():
    parts = frame_parts()
    parts[0] = b"faces"
    with pytest.raises(BadMessage, match="topic_mismatch"):
        decode(parts)


def test_faces_payload_must_match_crops():
    header = make_header("faces", "s", "c", 1, 0.0, width=64, height=48, crop=4,
                         faces=[{"student": 1, "box": [1, 2, 3, 4], "conf": 0.9}])
    decode([bytes(p) for p in encode(header, bytes(4 * 4 * 3))])
    with pytest.raises(BadMessage, match="payload_size"):
        decode([bytes(p) for p in encode(header, bytes(4 * 4 * 3 - 1))])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=256), min_size=0, max_size=4))
def test_random_bytes_never_escape_as_other_errors(parts):
    try:
        decode(parts)
    except BadMessage:
        pass


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "kind", "session", "stream", "seq", "t_capture", "stamps",
                                        "width", "height", "encoding", "faces", "crop"]),
                       st.one_of(st.none(), st.integers(-5, 10**7), st.text(max_size=5),
                                 st.floats(allow_nan=True), st.lists(st.integers(-1000, 10**6), max_size=4),
                                 st.dictionaries(st.text(max_size=3), st.integers(-1000, 1000), max_size=2))),
       st.binary(max_size=64))
def test_random_headers_are_rejected_cleanly(header, payload):
    topic = str(header.get("kind", "frame")).encode("ascii", "replace")
    try:
        decode([topic, msgpack.packb(header), payload])
    except BadMessage:
        pass


# --- the typed contract ---------------------------------------------------------------------

PRED = {"student": 1, "box": [1, 2, 3, 4], "conf": 0.9, "probs": [0.7, 0.1, 0.1, 0.1], "level": 0}
FACE = {"student": 1, "box": [1, 2, 3, 4], "conf": 0.9}
GOOD = {  # kind -> (fields, payload) of one valid message
    "frame": ({"width": 8, "height": 6, "encoding": "bgr", "t_media": 0.5, "source": "x.avi"}, bytes(8 * 6 * 3)),
    "faces": ({"width": 8, "height": 6, "crop": 2, "faces": [FACE]}, bytes(2 * 2 * 3)),
    "batch": ({"crop": 2, "length": 3, "students": [FACE], "faces": [FACE]}, bytes(3 * 2 * 2 * 3)),
    "predictions": ({"model": ModelInfo(name="m", baseline=True), "predictions": [PRED], "faces": [FACE]}, b""),
    "update": ({"totals": no_totals(), "predictions": [PRED], "model": ModelInfo(name="m")}, b""),
    "eos": ({"reason": "end_of_file"}, b""),
    "ack": ({"of": "predictions"}, b""),
}


@pytest.mark.parametrize("kind", sorted(GOOD))
def test_every_kind_round_trips_typed_and_on_the_old_wire_format(kind):
    fields, payload = GOOD[kind]
    header = make_header(kind, "s", "cam0", 3, 12.5, {"capture": 12.5}, **fields)
    msg = decode([bytes(p) for p in encode(header, payload)])
    assert type(msg.header) is type(header) and msg.header == header and msg.kind == kind
    # The wire is the same msgpack map as before the Structs: a plain map decodes, and the
    # Struct encodes to a map with the schema version and the kind.
    wire = msgpack.unpackb(bytes(encode(header, payload)[1]))
    assert wire["v"] == SCHEMA_VERSION and wire["kind"] == kind and wire["seq"] == 3
    assert decode([kind.encode(), msgpack.packb(wire), payload]).header == header


def _totals_map(streams: bool, heads: bool) -> dict:
    """Running totals as shared/data/totals.py computes them (the map the update used to carry)."""
    probs = [0.1, 0.2, 0.6, 0.1]
    pred = {**PRED, "probs": probs, "level": 2, **({"heads": {"boredom": probs, "confusion": probs}} if heads else {})}
    totals = empty_totals()
    if streams:
        totals["streams"] = {}
    for seq, stream in enumerate(["cam0", "cam1", "cam0"]):
        totals = add_record(totals, FrameRecord("s", "c", stream, seq, 10.0 + seq, None, 1, [pred]))
    return totals


def _header_bytes(header: Header) -> bytes:
    return bytes(encode(header)[1])


@pytest.mark.parametrize("streams, heads", [(False, False), (True, False), (False, True), (True, True)])
def test_update_totals_are_typed_and_the_wire_is_the_same_bytes(streams, heads):
    totals = _totals_map(streams, heads)
    fields = {"predictions": [PRED], "model": {"name": "m"}, "t_media": 1.5}
    typed = make_header("update", "s", "cam0", 3, 12.5, {"capture": 12.5}, totals=Totals.of(totals), **fields)
    # The Struct before totals were typed held the plain map: the same header, encoded that way.
    untyped = make_header("update", "s", "cam0", 3, 12.5, {"capture": 12.5}, totals=totals, **fields)
    assert _header_bytes(typed) == _header_bytes(untyped)
    got = decode([b"update", _header_bytes(untyped), b""]).header
    assert isinstance(got.totals, Totals) and got.totals == typed.totals and got.totals.as_map() == totals
    assert (got.totals.streams is not None) == streams and (got.totals.states is not None) == heads
    assert got.totals.frames == 3 and got.totals.levels["2"] == 3
    if streams:
        assert got.totals.stream("cam0").frames == 2 and got.totals.stream("cam1").predictions == 1
    else:
        assert got.totals.stream("cam0") is got.totals


def test_the_model_is_the_same_map_on_the_wire_as_the_dict_inference_sent():
    full = {"name": "m", "kind": "frame", "baseline": True, "affect": False, "labels": ["a", "b", "c", "d"],
            "engine": "tflite", "device": "cpu"}
    typed = make_header("predictions", "s", "cam0", 3, 12.5, {"capture": 12.5}, model=ModelInfo(**full),
                        predictions=[PRED])
    untyped = make_header("predictions", "s", "cam0", 3, 12.5, {"capture": 12.5}, model=full, predictions=[PRED])
    assert _header_bytes(typed) == _header_bytes(untyped)
    assert decode([b"predictions", _header_bytes(untyped), b""]).header == typed
    # A key a sender left out reads as every reader read it before: empty text, false, no labels.
    partial = decode([b"predictions", msgpack.packb({**as_dict(untyped), "model": {"name": "m"}}), b""]).header
    assert partial.model == ModelInfo(name="m") and partial.model.labels == [] and partial.model.baseline is False


def test_an_update_with_broken_totals_is_refused_with_a_reason():
    totals = empty_totals()
    del totals["frames"]
    assert _breach("update", totals=totals) == "missing_field"
    assert _breach("update", totals={**empty_totals(), "levels": {"0": "many"}}) == "wrong_type"


def test_a_field_the_kind_does_not_have_cannot_be_built():
    with pytest.raises(TypeError):
        make_header("eos", "s", "c", 1, 0.0, reson="typo")


def _breach(kind: str, payload: bytes | None = None, **override) -> str:
    fields, good_payload = GOOD[kind]
    header = {**as_dict(make_header(kind, "s", "c", 1, 0.0, **fields)), **override}
    with pytest.raises(BadMessage) as err:
        decode([kind.encode(), msgpack.packb(header), good_payload if payload is None else payload])
    return err.value.reason


def test_each_breach_is_counted_under_its_own_reason():
    assert _breach("predictions", predictions=[{**PRED, "level": 4}]) == "bad_level"
    assert _breach("predictions", predictions=[{**PRED, "probs": [1.0]}]) == "bad_probs"
    assert _breach("predictions", predictions=[{**PRED, "box": [1, 2, "3", 4]}]) == "bad_box"
    assert _breach("faces", faces=[FACE] * 65, payload=bytes(65 * 12)) == "too_many_faces"
    assert _breach("batch", length=0) == "bad_length"
    assert _breach("ack", of="frame") == "bad_ack"
    assert _breach("eos", reason=None) == "wrong_type"
    assert _breach("eos", payload=b"x") == "unexpected_payload"
    assert _breach("frame", encoding="jpeg") == "bad_jpeg"
    fields, _ = GOOD["eos"]
    header = {k: v for k, v in as_dict(make_header("eos", "s", "c", 1, 0.0, **fields)).items() if k != "session"}
    with pytest.raises(BadMessage, match="missing_field"):
        decode([b"eos", msgpack.packb(header), b""])


def test_a_receiver_refuses_kinds_it_does_not_expect_by_name():
    fields, payload = GOOD["frame"]
    parts = [bytes(p) for p in encode(make_header("frame", "s", "c", 1, 0.0, **fields), payload)]
    with pytest.raises(BadMessage) as err:
        decode(parts, expect=("predictions", "eos"))
    assert err.value.reason == "unexpected_kind"
    assert decode(parts, expect=("frame",)).kind == "frame"

"""A frame model's batch: the faces of one frame, each student once, as inference takes them.

A model of single crops (the attention baseline, a frame CNN) samples every frame at STRIDE 1:
the sequencer buffers nothing for it, and its batch is the frame's own faces. The sequencer makes
that batch here, and so does inference when the launcher sends it facedetect's faces directly
(services/launcher/plan.py: a class with such a model runs no sequencer process, one hop and one
process fewer a frame), so both paths give the model the same crops in the same order.
"""

from __future__ import annotations

from shared.bus.messages import Batch, Face, Faces, Message, Payload, make_header


def frame_students(faces: list[Face]) -> list[tuple[int, Face]]:
    """(index in the frame, face) of each student once, in the order of their first face; a student listed
    twice in one frame (two detections the tracker gave one id) keeps the last one's crop, box and confidence."""
    last: dict[int, tuple[int, Face]] = {}
    for index, face in enumerate(faces):
        last[face["student"]] = (index, face)  # a repeated key keeps its first place, takes the new value
    return list(last.values())


def crops_at(payload: Payload, indices: list[int], faces: int, crop: int) -> Payload:
    """The crops at `indices` of a payload of `faces` crops of crop x crop x 3: every face in order is the
    received payload itself, not a copy (two copies of 7.4 MB a 49-face frame were the sequencer's work)."""
    if indices == list(range(faces)):
        return payload
    size = crop * crop * 3
    return b"".join(payload[i * size:(i + 1) * size] for i in indices)


def students_of(due: list[tuple[int, Face]]) -> list[Face]:
    """The batch header's students: what inference needs of each face (its box and confidence travel too)."""
    return [{"student": face["student"], "box": face["box"], "conf": face.get("conf", 0.0)} for _, face in due]


def frame_batch(msg: Message) -> Message:
    """A `faces` message as the `batch` of a frame model (length 1, every student due); any other kind as it is.
    The stamps stay the faces message's: no stage came between facedetect and inference."""
    h = msg.header
    if not isinstance(h, Faces):
        return msg
    due = frame_students(h.faces)
    header: Batch = make_header("batch", h.session, h.stream, h.seq, h.t_capture, h.stamps, crop=h.crop,  # type: ignore[assignment]
                                length=1, students=students_of(due), faces=h.faces, width=h.width,
                                height=h.height, t_media=h.t_media)
    payload = crops_at(msg.payload, [index for index, _ in due], len(h.faces), h.crop)
    return Message(kind="batch", header=header, payload=payload, extra=msg.extra)

"""Ring buffers of face crops for the students of one stream."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from shared.bus.frame_batch import crops_at
from shared.bus.messages import Face, Payload


@dataclass
class StudentBuffer:
    student: int
    crops: deque[bytes]
    box: list[float] = field(default_factory=list)
    conf: float = 0.0
    last_seen: float = 0.0  # stream time (media or capture seconds)
    since_sample: int = 0  # crops added since this student was last sent
    index: int = -1  # where its face is in the frame last added


class StreamBuffers:
    def __init__(self, crop: int, length: int, stride: int) -> None:
        self.crop = crop
        self.length = length
        self.stride = stride
        self.students: dict[int, StudentBuffer] = {}
        self.last_wall = 0.0

    def add(self, faces: list[Face], payload: Payload, t: float, wall: float) -> list[StudentBuffer]:
        """Append each face's crop to its student's buffer; return the students due for a sample.
        Sequences of one crop (a frame model) keep none: their batch is the frame's own crops (`batch_payload`)."""
        self.last_wall = wall
        size = self.crop * self.crop * 3
        due: dict[int, StudentBuffer] = {}  # a student listed twice in one frame is sent once
        for i, face in enumerate(faces):
            student = face["student"]
            buf = self.students.get(student)
            if buf is None:
                # A new buffer is due as soon as it is full, hence since_sample starts at stride - 1.
                buf = self.students[student] = StudentBuffer(student, deque(maxlen=self.length),
                                                             since_sample=self.stride - 1)
            if self.length > 1:
                # Copied: a view would keep the whole received message alive for as long as one crop
                # of it is buffered (a student gone holds it until the timeout, 7.4 MB a 49-face frame).
                buf.crops.append(bytes(payload[i * size:(i + 1) * size]))
            conf = face.get("conf", 0.0)
            buf.box, buf.last_seen, buf.index = list(face["box"]), t, i
            buf.conf = float(conf) if isinstance(conf, int | float) else 0.0
            buf.since_sample += 1
            if (self.length == 1 or len(buf.crops) == self.length) and buf.since_sample >= self.stride:
                buf.since_sample = 0
                due[student] = buf
        return list(due.values())

    def batch_payload(self, due: list[StudentBuffer], payload: Payload, faces: int) -> Payload:
        """The due students' crops, oldest first, in their order, for the frame just added (`payload`, of
        `faces` faces). A frame model's are this frame's (shared/bus/frame_batch.py: with every face due in the
        frame's order, nearly always, the received payload itself)."""
        if self.length > 1:
            return b"".join(b"".join(b.crops) for b in due)
        return crops_at(payload, [b.index for b in due], faces, self.crop)

    def evict_unseen(self, t: float, timeout: float) -> int:
        """Drop students unseen for more than `timeout` seconds of stream time; return how many."""
        gone = [s for s, b in self.students.items() if t - b.last_seen > timeout]
        for student in gone:
            del self.students[student]
        return len(gone)

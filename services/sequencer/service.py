"""Sequencer: per-student ring buffers of face crops, sampled with a stride.

For each `faces` message it sends one `batch`: the students whose buffer holds
SEQUENCE_LENGTH crops and whose stride is due (their crops oldest -> newest), plus every
face of the frame passed through. A student unseen for STUDENT_TIMEOUT seconds of the
stream's own time (media time for files, capture time for live) is evicted; a stream
that goes quiet for STUDENT_TIMEOUT wall-clock seconds loses all its buffers; `eos` drops
the stream's buffers and is forwarded.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge

from services.sequencer.buffers import StreamBuffers
from shared.bus.messages import Eos, Faces, Header, Message, Payload, follow_up
from shared.ops.service import Service
from shared.ops.settings import SequencerSettings

STUDENTS_TRACKED = Gauge("engagement_students_tracked", "Students with a crop buffer", ["service"])
STUDENTS_EVICTED = Counter("engagement_students_evicted_total", "Student buffers dropped",
                           ["service", "reason"])


class SequencerService(Service[SequencerSettings]):
    name = "sequencer"

    def setup(self) -> None:
        s = self.settings
        if s.sequence_length < 1 or s.stride < 1:
            raise ValueError("SEQUENCE_LENGTH and STRIDE must be at least 1")
        self.length = int(s.sequence_length)
        self.stride = int(s.stride)
        self.timeout = float(s.student_timeout)
        self.streams: dict[tuple[str, str], StreamBuffers] = {}
        self.log.info("sequences of %d crops, stride %d, students dropped after %.1f s unseen",
                      self.length, self.stride, self.timeout)

    def _update_gauge(self) -> None:
        STUDENTS_TRACKED.labels(self.name).set(sum(len(b.students) for b in self.streams.values()))

    def _evicted(self, reason: str, count: int) -> None:
        if count:
            STUDENTS_EVICTED.labels(self.name, reason).inc(count)

    def handle(self, link: str, msg: Message) -> None:
        h = msg.header
        key = (h.session, h.stream)
        if isinstance(h, Eos):
            buffers = self.streams.pop(key, None)
            self._evicted("eos", len(buffers.students) if buffers else 0)
            self._update_gauge()
            self.batches_send(follow_up(msg, "eos", self.name, reason=h.reason, source=h.source))
            return
        assert isinstance(h, Faces)  # the only other kind this link takes (decode checked)
        buffers = self.streams.get(key)
        if buffers is None or buffers.crop != h.crop:
            if buffers is not None:
                self.log.warning("crop size of %s changed %d -> %d: buffers restarted", key, buffers.crop, h.crop)
                self._evicted("crop_changed", len(buffers.students))
            buffers = self.streams[key] = StreamBuffers(h.crop, self.length, self.stride)
        t = h.t_capture if h.t_media is None else h.t_media
        due = buffers.add(h.faces, msg.payload, t, time.monotonic())
        self._evicted("timeout", buffers.evict_unseen(t, self.timeout))
        self._update_gauge()
        students = [{"student": s.student, "box": s.box, "conf": s.conf} for s in due]
        payload = buffers.batch_payload(due, msg.payload, len(h.faces))
        header = follow_up(msg, "batch", self.name, crop=buffers.crop, length=self.length, students=students,
                           faces=h.faces, width=h.width, height=h.height, t_media=h.t_media)
        self.batches_send(header, payload)

    def batches_send(self, header: Header, payload: Payload = b"") -> None:
        self.senders["batches"].send(header, payload)

    def tick(self) -> None:
        # A stream that went quiet (camera unplugged, capture killed without eos) is dropped whole.
        now = time.monotonic()
        for key in [k for k, b in self.streams.items() if now - b.last_wall > self.timeout]:
            self.log.info("stream %s/%s quiet for %.0f s: dropping its %d student buffers",
                          *key, self.timeout, len(self.streams[key].students))
            self._evicted("quiet", len(self.streams.pop(key).students))
        self._update_gauge()

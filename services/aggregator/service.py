"""Aggregator: running totals in Redis per session, student and class, plus a timeline.

For each `predictions` message it writes one frame to Redis (shared/totals.py,
one Lua script, idempotent per (session, stream, seq)) and sends an `update` to the
reporter with the session's running totals. On `eos` it records that stream's end (time,
reason) in Redis; once every stream of the class has ended (STREAMS, plus any stream seen; with
STREAMS empty the first eos) it marks the session ended and only then forwards `eos`, so the
reporter reads complete totals. Which streams ended lives in Redis, not here: a restarted
aggregator still ends the session on the last stream's eos.

While Redis is unreachable nothing accepted is lost: writes wait in a bounded in-memory
backlog, in arrival order, and are retried with exponential backoff; when the backlog is
full, further frames are dropped and counted (engagement_aggregator_dropped_total). An
`eos` waits in the same backlog behind its session's frames and is never dropped.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import redis
from prometheus_client import Counter, Gauge

from shared.acks import send_ack
from shared.backoff import Backoff
from shared.levels import LEVELS
from shared.messages import Eos, Message, Predictions, follow_up
from shared.service import Service
from shared.totals import FrameRecord, Store, add_record, empty_totals, expected_streams, safe_url

AGGREGATED = Counter("engagement_aggregated_predictions_total", "Predictions counted in Redis", ["level"])
DUPLICATES = Counter("engagement_duplicate_frames_total",
                     "Predictions messages already counted (redelivered), ignored")
REDIS_ERRORS = Counter("engagement_redis_errors_total", "Failed Redis operations")
BACKLOG = Gauge("engagement_aggregator_backlog", "Writes waiting for Redis")
BACKLOG_DROPPED = Counter("engagement_aggregator_dropped_total",
                          "Frames dropped because the Redis backlog was full")
STREAMS_ENDED = Counter("engagement_streams_ended_total",
                        "Streams whose end was recorded, by its reason (gave_up: a camera or file lost mid-class)",
                        ["reason"])
SESSION_TOTALS = Gauge("engagement_session_totals",
                       "Running predictions per level of the current session", ["level"])

RETRY_START, RETRY_CAP = 0.2, 5.0
STOP_FLUSH_SECONDS = 5.0


@dataclass
class EndOfSession:
    """A pending `eos`: written (session marked ended) and forwarded after its frames."""

    eos: Eos
    ended: float


class AggregatorService(Service):
    name = "aggregator"
    inputs = {"predictions": "predictions_in"}
    outputs = {"updates": "updates_out", "acks": "acks_out"}  # acks: optional (ACKS_OUT)
    expect = {"predictions": ("predictions", "eos")}

    def setup(self) -> None:
        s = self.settings
        self.store = Store.from_url(s.redis_url, prefix=s.redis_prefix)
        self.class_id = s.class_id
        # Empty (one camera): the first eos ends the session, whatever the stream's id.
        self.expected_streams = expected_streams(s.streams)
        self.unlisted: set[tuple[str, str]] = set()  # (session, stream) said once: not in STREAMS
        self.backlog: deque[FrameRecord | EndOfSession] = deque()
        self.backlog_max = max(1, int(s.backlog_max))
        self.retry = Backoff(RETRY_START, RETRY_CAP)
        self.next_retry = 0.0
        self.totals: dict[str, dict[str, Any]] = {}  # session -> last known running totals
        self.waiting: set[tuple[str, str, int]] = set()  # frames in the backlog (a resend is not queued twice)
        # Not fatal when Redis is down or refuses us: the backlog holds writes until it takes them.
        if self.store.check(self.log, "buffering meanwhile"):
            self.log.info("totals in Redis at %s (prefix %r)", safe_url(s.redis_url), s.redis_prefix)
        else:
            REDIS_ERRORS.inc()

    # --- messages ----------------------------------------------------------------------
    def handle(self, link: str, msg: Message) -> None:
        h = msg.header
        if isinstance(h, Eos):
            self._enqueue(EndOfSession(h, time.time()))
            return
        assert isinstance(h, Predictions)  # the only other kind this link takes (decode checked)
        self._check_listed(h.session, h.stream)
        record = self._record(h)
        if (record.session, record.stream, record.seq) in self.waiting:
            DUPLICATES.inc()  # resent while Redis is down: already waiting, acknowledged once written
            return
        outcome = self._enqueue(record)
        totals = self.totals.get(record.session) or empty_totals()
        if outcome == "queued":
            # Not in Redis yet: the overlay still gets running totals, computed locally.
            totals = self.totals[record.session] = add_record(totals, record)
        header = follow_up(h, "update", self.name, totals=totals, predictions=h.predictions,
                           faces=h.faces or [], model=h.model, t_media=h.t_media)
        # Droppable: updates only feed the overlay; the report is built from Redis.
        self.senders["updates"].send(header, droppable=True)

    def _check_listed(self, session: str, stream: str) -> None:
        """A stream STREAMS does not list is counted and must end too; say so once (a typo in
        STREAMS would otherwise keep the session open without a word)."""
        if self.expected_streams and stream not in self.expected_streams and (session, stream) not in self.unlisted:
            self.unlisted.add((session, stream))
            self.log.warning("session %s: stream %r is not in STREAMS (%s): counted, and the session ends "
                             "once it has ended too", session, stream, ",".join(self.expected_streams))

    def _record(self, h: Predictions) -> FrameRecord:
        n_faces = len(h.predictions) if h.faces is None else len(h.faces)
        preds = []
        for p in h.predictions:
            # What the level rests on travels into the timeline: box, detection confidence, and
            # the smoothed signals the baseline decided on (not its per-frame "now" reading).
            pred = {"student": p["student"], "level": p["level"], "probs": p["probs"], "box": p.get("box"),
                    "conf": p.get("conf")}
            if isinstance(p.get("signals"), dict):
                pred["signals"] = {k: v for k, v in p["signals"].items() if k != "now"}
            if isinstance(p.get("heads"), dict):  # a multi-task model: every state is counted (shared/totals.py)
                pred["heads"] = p["heads"]
            preds.append(pred)
        return FrameRecord(session=h.session, class_id=self.class_id, stream=h.stream, seq=h.seq,
                           t_capture=h.t_capture, t_media=h.t_media, faces=n_faces, predictions=preds,
                           model=dict(h.model))

    def _enqueue(self, item: FrameRecord | EndOfSession) -> str:
        """Write now when nothing waits before it, else queue behind: 'written'|'queued'|'dropped'."""
        if not self.backlog:
            try:
                self._write(item)
                return "written"
            except redis.RedisError as exc:
                self._redis_failed(exc)
        if isinstance(item, FrameRecord) and self._frames_waiting() >= self.backlog_max:
            BACKLOG_DROPPED.inc()
            self.log.error("Redis backlog full (%d frames): dropped %s/%s seq %d", self.backlog_max,
                           item.session, item.stream, item.seq)
            return "dropped"
        self.backlog.append(item)
        if isinstance(item, FrameRecord):
            self.waiting.add((item.session, item.stream, item.seq))
        BACKLOG.set(len(self.backlog))
        self._flush()
        return "queued" if item in self.backlog else "written"

    def _frames_waiting(self) -> int:
        return sum(isinstance(i, FrameRecord) for i in self.backlog)

    def _write(self, item: FrameRecord | EndOfSession) -> None:
        if isinstance(item, EndOfSession):
            eos = item.eos
            end = self.store.end_stream(eos.session, eos.stream, item.ended, eos.reason, self.expected_streams,
                                        self.class_id, eos.source)
            if end.first:
                STREAMS_ENDED.labels(eos.reason).inc()
            if end.session_ended:
                self.log.info("session %s ended (stream %s: %s); forwarding eos", eos.session, eos.stream, eos.reason)
                self.senders["updates"].send(follow_up(eos, "eos", self.name, reason=eos.reason))
                self.totals.pop(eos.session, None)
            else:
                self.log.info("session %s: stream %s ended (%s); the class goes on with %s", eos.session,
                              eos.stream, eos.reason, ", ".join(end.still_open))
            self._ack(eos.session, eos.stream, eos.seq, eos.t_capture, "eos")
            return
        held = (self.totals.get(item.session) or {}).get("streams") or {}
        counted, totals = self.store.record_frame(item, known_streams=len(held))
        if "streams" in totals:  # this frame's stream's totals, or every stream's when some were not held
            totals["streams"] = dict(sorted({**held, **totals["streams"]}.items()))
        if counted:
            for level, n in enumerate(item.level_counts()):
                if n:
                    AGGREGATED.labels(str(level)).inc(n)
        else:
            DUPLICATES.inc()
            self.log.info("%s/%s seq %d already counted: ignored", item.session, item.stream, item.seq)
        self.totals[item.session] = totals
        # Written (or counted before): inference may forget it. Never before the write.
        self._ack(item.session, item.stream, item.seq, item.t_capture, "predictions")
        for level in range(LEVELS):
            SESSION_TOTALS.labels(str(level)).set(totals["levels"][str(level)])

    def _ack(self, session: str, stream: str, seq: int, t_capture: float, of: str) -> None:
        if "acks" in self.senders:
            send_ack(self.name, self.senders["acks"].socket, session, stream, seq, t_capture, of)

    def _redis_failed(self, exc: Exception) -> None:
        REDIS_ERRORS.inc()
        now = time.monotonic()
        delay = self.retry.next_delay()
        if now >= self.next_retry:  # one line per retry, not per message that arrives meanwhile
            self.log.warning("Redis write failed (%s); %d writes waiting, retry in %.1f s",
                             exc, len(self.backlog) + 1, delay)
        self.next_retry = now + delay

    def _flush(self, force: bool = False) -> None:
        """Write the backlog in order while Redis takes it; stop at the first failure."""
        if not self.backlog or (not force and time.monotonic() < self.next_retry):
            return
        written = 0
        while self.backlog:
            try:
                self._write(self.backlog[0])
            except redis.RedisError as exc:
                self._redis_failed(exc)
                break
            done = self.backlog.popleft()
            if isinstance(done, FrameRecord):
                self.waiting.discard((done.session, done.stream, done.seq))
            written += 1
        BACKLOG.set(len(self.backlog))
        if not self.backlog:
            self.retry.reset()
            self.next_retry = 0.0
            if written:
                self.log.info("Redis back: caught up %d writes", written)

    def tick(self) -> None:
        self._flush()

    def on_stop(self) -> None:
        deadline = time.monotonic() + STOP_FLUSH_SECONDS
        while self.backlog and time.monotonic() < deadline:
            self._flush(force=True)
            if self.backlog:
                time.sleep(0.2)
        if self.backlog:
            self.log.error("stopping with %d writes Redis never took (lost)", len(self.backlog))

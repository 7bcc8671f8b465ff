"""Aggregator: running totals in Redis per session, student and class, plus a timeline.

For each `predictions` message it writes one frame to Redis (shared/data/totals.py,
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

With JOURNAL_DIR set (`engagement run` sets it to the run's folder) everything accepted is
first appended to the session's journal on local disk (shared/data/journal.py), so that no class
depends on Redis alone:
- every write carries its journal record number, and Redis answers with the highest it had
  applied: a lower one than we know it applied means Redis came back empty or from an old
  snapshot. The session is refilled from the journal (idempotent), said in the log, counted
  (engagement_aggregator_store_resets_total) and noted in the session's meta for the report;
- frames the full backlog dropped are replayed from the journal once Redis has caught up;
- a class that has ended while Redis is unreachable waits JOURNAL_HANDOFF_SECONDS, then its
  `eos` goes to the reporter anyway, which writes the report from the journal (Redis still
  gets the class when it is back, and the reporter is not asked twice).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec
import redis
from prometheus_client import Counter, Gauge, Histogram

from shared.bus.acks import AckGatherer
from shared.bus.backoff import Backoff
from shared.bus.messages import Eos, Message, Predictions, follow_up
from shared.data.journal import Journal, JournalContents, frames_of
from shared.data.levels import LEVELS
from shared.data.running_totals import Totals
from shared.data.totals import FrameRecord, FrameWrite, Store, add_record, empty_totals, expected_streams, safe_url
from shared.ops.config import report_fallback_dir
from shared.ops.service import Service
from shared.ops.settings import AggregatorSettings

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
STORE_RESETS = Counter("engagement_aggregator_store_resets_total",
                       "Sessions Redis lost (it came back empty or from an old snapshot), refilled from the journal")
REFILLED = Counter("engagement_aggregator_refilled_frames_total",
                   "Frames counted again in Redis from the journal (after a reset, or dropped from a full backlog)")
HANDOFFS = Counter("engagement_aggregator_journal_handoffs_total",
                   "Classes that ended while Redis was unreachable: the reporter was told to report from the journal")
JOURNAL_ERRORS = Counter("engagement_aggregator_journal_errors_total",
                         "Records the journal could not take (its folder and the fallback folder failed)")
WRITE_RUNS = Histogram("engagement_aggregator_frames_per_write",
                       "Frames one Redis round trip wrote (the frames that arrived together: GATHER_SECONDS)",
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))
SESSION_TOTALS = Gauge("engagement_session_totals",
                       "Running predictions per level of the current session", ["level"])
# Each level's series, looked up once: labels() on every frame cost more than the increments.
AGGREGATED_BY_LEVEL = [AGGREGATED.labels(str(level)) for level in range(LEVELS)]
SESSION_TOTALS_BY_LEVEL = [SESSION_TOTALS.labels(str(level)) for level in range(LEVELS)]

RETRY_START, RETRY_CAP = 0.2, 5.0
STOP_FLUSH_SECONDS = 5.0
STOP_FLUSH_JOURNALED_SECONDS = 0.5


@dataclass
class EndOfSession:
    """A pending `eos`: written (session marked ended) and forwarded after its frames."""

    eos: Eos
    ended: float
    journal_n: int = 0  # its record number in the journal (0: none)


class AggregatorService(Service[AggregatorSettings]):
    name = "aggregator"

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
        # session -> the streams' totals Redis answered for its last write: what an update carries (below)
        self.answered: dict[str, dict[str, Any]] = {}
        self.waiting: set[tuple[str, str, int]] = set()  # frames in the backlog (a resend is not queued twice)
        self.journal_dir = s.journal_dir
        self.fallback_dir = s.report_fallback_dir
        self.handoff_seconds = float(s.journal_handoff_seconds)
        self.journals: dict[str, Journal] = {}
        self.applied: dict[str, int] = {}  # session -> highest journal record Redis said it applied
        self.lost: dict[str, int] = {}  # session -> Redis's marker when it turned out to have lost the session
        self.replay_due: set[str] = set()  # sessions with frames only in the journal (dropped from the backlog)
        self.handed_off: set[str] = set()  # sessions whose eos went to the reporter before Redis had it
        self.failing_since: float | None = None  # monotonic time of the first failed write of this outage
        self.streams_seen: dict[str, set[str]] = {}
        self.streams_ended: dict[str, set[str]] = {}
        self.journal_failed: set[str] = set()  # sessions whose journal failed (said once)
        self.acks: AckGatherer | None = None  # once the acks link is open (ACKS_OUT set): acknowledgements gathered
        # The run of predictions being read (journaled, not yet in Redis): written together after it (after_turns).
        self.gathered: list[tuple[Predictions, FrameRecord]] = []
        # Not fatal when Redis is down or refuses us: the backlog holds writes until it takes them.
        if self.store.check(self.log, "buffering meanwhile"):
            self.log.info("totals in Redis at %s (prefix %r)", safe_url(s.redis_url), s.redis_prefix)
        else:
            REDIS_ERRORS.inc()

    # --- messages ----------------------------------------------------------------------
    def handle(self, link: str, msg: Message) -> None:
        h = msg.header
        if isinstance(h, Eos):
            self._write_gathered()  # a stream's end goes in after its frames
            end = EndOfSession(h, time.time())
            journal = self._journal(h.session)
            if journal:
                end.journal_n = self._journaled(h.session, lambda: journal.append_eos(
                    h.stream, h.seq, h.t_capture, end.ended, h.reason, h.source, self.class_id))
            self.streams_ended.setdefault(h.session, set()).add(h.stream)
            self._enqueue(end)
            return
        assert isinstance(h, Predictions)  # the only other kind this link takes (decode checked)
        self._check_listed(h.session, h.stream)
        record = self._record(h)
        if (record.session, record.stream, record.seq) in self.waiting:
            DUPLICATES.inc()  # resent while Redis is down: already waiting, acknowledged once written
            return
        self.streams_seen.setdefault(h.session, set()).add(h.stream)
        journal = self._journal(h.session)
        if journal:
            record.journal_n = self._journaled(h.session, lambda: journal.append_frame(record))
        if self.gather_seconds and not self.backlog:
            self.gathered.append((h, record))  # written with the run it came in (after_turns)
            return
        self._update(h, record, self._enqueue(record))

    def after_turns(self) -> None:
        self._write_gathered()

    def _write_gathered(self) -> None:
        """The run's frames in one round trip, in arrival order; then each one's update and acknowledgement as if
        written alone. Redis failing, they wait in the backlog as a frame written alone would."""
        if not self.gathered:
            return
        run, self.gathered = self.gathered, []
        if self.backlog or len(run) == 1:
            for h, record in run:
                self._update(h, record, self._enqueue(record))
            return
        # Each frame's known streams as if the run's earlier ones were written alone before it: a stream new to
        # us makes Redis answer every stream's totals for that frame, held by the time the next one's is applied.
        streams: dict[str, set[str]] = {}
        frames = []
        for _, record in run:
            known = streams.setdefault(record.session, set(self._held_streams(record.session)))
            frames.append((record, len(known), record.journal_n))
            known.add(record.stream)
        try:
            writes = self.store.record_journaled_frames(frames)
        except redis.RedisError as exc:
            self._redis_failed(exc)
            writes = []
        else:
            WRITE_RUNS.observe(len(run))
        for i, (h, record) in enumerate(run):
            outcome = ""
            if i < len(writes):
                try:
                    outcome = "written" if self._written(record, writes[i]) else "duplicate"
                except redis.RedisError as exc:  # refilling a session Redis lost
                    self._redis_failed(exc)
                    writes = writes[:i]  # this frame and the run's rest go to the backlog, in order
            self._update(h, record, outcome or self._queue(record))

    def _update(self, h: Predictions, record: FrameRecord, outcome: str) -> None:
        """The frame's update for the live page, by how its write went (`_enqueue`'s outcome)."""
        if outcome == "duplicate":
            return  # its update went (or was dropped, counted) the first time: one per frame, never two
        totals = self.totals.get(record.session) or empty_totals()
        if outcome == "queued":
            # Not in Redis yet: the overlay still gets running totals, computed locally (every stream's).
            totals = self.totals[record.session] = add_record(totals, record)
        elif "streams" in totals:
            # Several streams: the update carries the streams' totals this write answered (its own stream's, or
            # every stream's when one was new), not all of them: every update carried every stream's, a cost a
            # frame that grew with the streams (80 webcams: 6 KB a header, made, read and re-sent by three
            # services). The reporter and the web keep the others from earlier updates (Totals.carried_forward).
            totals = {**totals, "streams": self.answered.pop(record.session, None) or totals["streams"]}
        header = follow_up(h, "update", self.name, totals=Totals.of(totals), predictions=h.predictions,
                           faces=h.faces or [], model=h.model, t_media=h.t_media)
        # Droppable: updates only feed the overlay; the report is built from Redis.
        self.senders["updates"].send(header, droppable=True)

    # --- the journal ---------------------------------------------------------------------
    def _journal(self, session: str) -> Journal | None:
        """The session's journal, opened at its first record (None: no JOURNAL_DIR, or it failed)."""
        if not self.journal_dir or session in self.journal_failed:
            return self.journals.get(session)
        journal = self.journals.get(session)
        if journal is None:
            try:
                journal = self.journals[session] = Journal(self.journal_dir, session,
                                                           report_fallback_dir(self.fallback_dir), self.log)
            except OSError as exc:
                self._journal_failed(session, exc)
                return None
            if journal.n:  # we were restarted: what our predecessor's backlog held is replayed once Redis has it
                self.log.info("session %s: journal %s has %d records (a restart): replaying what Redis lacks",
                              session, journal.path, journal.n)
                self.replay_due.add(session)
        return journal

    def _journaled(self, session: str, append: Any) -> int:
        try:
            return int(append())
        except OSError as exc:
            self._journal_failed(session, exc)
            return 0

    def _journal_failed(self, session: str, exc: OSError) -> None:
        JOURNAL_ERRORS.inc()
        if session not in self.journal_failed:
            self.journal_failed.add(session)
            self.log.error("session %s: no journal (%s): its totals depend on Redis alone", session, exc)
        journal = self.journals.pop(session, None)
        if journal:
            try:
                journal.close()
            except OSError:
                pass  # said above

    def _close_journal(self, session: str) -> None:
        """The class is in Redis and ended: its journal stays on disk (for the reporter) but is closed here."""
        for state in (self.applied, self.streams_seen, self.streams_ended):
            state.pop(session, None)
        journal = self.journals.pop(session, None)
        if journal:
            try:
                journal.close()
            except OSError as exc:
                self.log.error("session %s: journal %s: %s", session, journal.path, exc)

    def _check_mark(self, session: str, n: int, mark: int) -> None:
        """After a write numbered n: Redis's marker lower than what it applied before means it lost the session."""
        applied = self.applied.get(session, 0)
        if 0 <= mark < applied and session not in self.lost:
            self.lost[session] = mark
        if n:
            self.applied[session] = max(applied, n)

    def _refill_lost(self) -> None:
        """Refill every session Redis lost from its journal (raises RedisError: tried again at the next write)."""
        for session, mark in list(self.lost.items()):
            frames = self._replay(session)
            self.store.note_refill(session, frames, time.time())
            del self.lost[session]
            STORE_RESETS.inc()
            self.log.warning("Redis at %s lost session %s (its journal marker was %d, we had written %d: it came back "
                             "empty or from an old snapshot): refilled %d frames from the journal %s",
                             safe_url(self.store.url), session, mark, self.applied.get(session, 0), frames,
                             self.journals[session].path if session in self.journals else "")

    def _replay(self, session: str) -> int:
        """Write the session's journal to Redis again (each frame counts once); the frames Redis lacked."""
        journal = self.journals.get(session)
        if journal is None or not journal.path.exists():  # none, or the report is written and it is gone
            return 0
        contents = JournalContents(journal.path)
        counted = 0
        for n, rec in frames_of(journal.path, contents):  # one at a time: a long class's journal is large
            counted += self.store.record_journaled_frame(rec, mark=n).counted
        for e in contents.eos:
            self.store.end_journaled_stream(session, e["stream"], e["ended"], e["reason"], self.expected_streams,
                                            e["class_id"], e["source"], mark=e["n"])
        self.applied[session] = max(self.applied.get(session, 0), contents.last_n)
        REFILLED.inc(counted)
        return counted

    def _ended_here(self, session: str) -> bool:
        """Whether the class has ended as far as this process saw (Redis, which knows for sure, being away)."""
        ended = self.streams_ended.get(session, set())
        if not self.expected_streams:
            return bool(ended)
        return (set(self.expected_streams) | self.streams_seen.get(session, set())) <= ended

    def _hand_off_ended(self) -> None:
        """A class that ended JOURNAL_HANDOFF_SECONDS ago and still waits for Redis: the reporter writes its
        report from the journal now (the eos goes on; Redis gets the class when it is back)."""
        for item in list(self.backlog):
            if not isinstance(item, EndOfSession):
                continue
            session = item.eos.session
            journal = self.journals.get(session)
            # Redis away this long (the eos may have come long after it went): the class need not wait for it.
            if (session in self.handed_off or journal is None or self.failing_since is None
                    or time.monotonic() - self.failing_since < self.handoff_seconds or not self._ended_here(session)):
                continue
            try:
                journal.sync()
            except OSError as exc:
                self._journal_failed(session, exc)
                continue
            self.handed_off.add(session)
            HANDOFFS.inc()
            self.log.error("Redis at %s unreachable for %.0f s and session %s has ended: the reporter writes its "
                           "report from the journal %s (Redis gets the class if it comes back)",
                           safe_url(self.store.url), time.monotonic() - self.failing_since, session, journal.path)
            self.senders["updates"].send(follow_up(item.eos, "eos", self.name, reason=item.eos.reason))

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
            if isinstance(p.get("heads"), dict):  # a multi-task model: every state is counted (shared/data/totals.py)
                pred["heads"] = p["heads"]
            preds.append(pred)
        return FrameRecord(session=h.session, class_id=self.class_id, stream=h.stream, seq=h.seq,
                           t_capture=h.t_capture, t_media=h.t_media, faces=n_faces, predictions=preds,
                           model=msgspec.to_builtins(h.model))  # plain data: the journal's JSON, Lua

    def _enqueue(self, item: FrameRecord | EndOfSession) -> str:
        """Write now when nothing waits before it, else queue behind: 'written'|'duplicate'|'queued'|'dropped'."""
        if not self.backlog:
            try:
                return "written" if self._write(item) else "duplicate"
            except redis.RedisError as exc:
                self._redis_failed(exc)
        return self._queue(item)

    def _queue(self, item: FrameRecord | EndOfSession) -> str:
        """Into the backlog, behind what waits there (a full one drops a frame, counted): 'queued'|'dropped', or
        'written' when the flush this starts wrote it at once."""
        if isinstance(item, FrameRecord) and self._frames_waiting() >= self.backlog_max:
            BACKLOG_DROPPED.inc()
            if item.journal_n:  # not lost: replayed from the journal once Redis has caught up
                if item.session not in self.replay_due:
                    self.log.error("Redis backlog full (%d frames): %s/%s from seq %d on are kept in the journal "
                                   "only until Redis is back", self.backlog_max, item.session, item.stream, item.seq)
                self.replay_due.add(item.session)
            else:
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

    def _write(self, item: FrameRecord | EndOfSession) -> bool:
        """Write one item; False when it is a frame Redis had counted already (a resend)."""
        if isinstance(item, EndOfSession):
            eos = item.eos
            if eos.session in self.replay_due:  # frames the full backlog dropped go in before the class ends
                self._replay(eos.session)
                self.replay_due.discard(eos.session)
            end, mark = self.store.end_journaled_stream(eos.session, eos.stream, item.ended, eos.reason,
                                                        self.expected_streams, self.class_id, eos.source,
                                                        mark=item.journal_n)
            self._check_mark(eos.session, item.journal_n, mark)
            self._refill_lost()  # before the reporter reads the class
            if end.first:
                STREAMS_ENDED.labels(eos.reason).inc()
            if end.session_ended and eos.session in self.handed_off:
                self.log.info("session %s: Redis has the class now (its report was written from the journal)",
                              eos.session)
            elif end.session_ended:
                self.log.info("session %s ended (stream %s: %s); forwarding eos", eos.session, eos.stream, eos.reason)
                self.senders["updates"].send(follow_up(eos, "eos", self.name, reason=eos.reason))
            if end.session_ended:
                self.totals.pop(eos.session, None)
                self.answered.pop(eos.session, None)
                self._close_journal(eos.session)
            else:
                self.log.info("session %s: stream %s ended (%s); the class goes on with %s", eos.session,
                              eos.stream, eos.reason, ", ".join(end.still_open))
            self._ack(eos.session, eos.stream, eos.seq, eos.t_capture, "eos")
            return True
        written = self.store.record_journaled_frame(item, len(self._held_streams(item.session)), item.journal_n)
        WRITE_RUNS.observe(1)
        return self._written(item, written)

    def _held_streams(self, session: str) -> dict[str, Any]:
        """The streams' totals held for `session` (several streams: Redis answers only what this lacks)."""
        held: dict[str, Any] = (self.totals.get(session) or {}).get("streams") or {}
        return held

    def _written(self, item: FrameRecord, written: FrameWrite) -> bool:
        """What follows a frame's write: Redis's marker checked, the totals kept, counted, acknowledged."""
        counted, totals, mark = written
        held = self._held_streams(item.session)
        self._check_mark(item.session, item.journal_n, mark)
        self._refill_lost()
        if "streams" in totals:  # this frame's stream's totals, or every stream's when some were not held
            self.answered[item.session] = totals["streams"]
            held.update(totals["streams"])  # in place: a frame costs its own stream, not a copy of every stream's
            totals["streams"] = held
        if counted:
            for level, n in enumerate(item.level_counts()):
                if n:
                    AGGREGATED_BY_LEVEL[level].inc(n)
        else:
            DUPLICATES.inc()
            self.log.info("%s/%s seq %d already counted: ignored", item.session, item.stream, item.seq)
        self.totals[item.session] = totals
        # Written (or counted before): inference may forget it. Never before the write.
        self._ack(item.session, item.stream, item.seq, item.t_capture, "predictions")
        levels = totals["levels"]
        for level, gauge in enumerate(SESSION_TOTALS_BY_LEVEL):
            gauge.set(levels[str(level)])
        return counted

    def _ack(self, session: str, stream: str, seq: int, t_capture: float, of: str) -> None:
        if self.acks is None and "acks" in self.senders:
            self.acks = AckGatherer(self.name, self.senders["acks"].socket)
        if self.acks is not None:
            self.acks.add(session, stream, seq, t_capture, of)

    def _redis_failed(self, exc: Exception) -> None:
        REDIS_ERRORS.inc()
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
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
            self.failing_since = None
            if written:
                self.log.info("Redis back: caught up %d writes", written)
            self._replay_dropped()

    def _replay_dropped(self) -> None:
        """Frames the full backlog dropped (or a predecessor's backlog held) are in the journal: Redis gets them."""
        for session in sorted(self.replay_due):
            try:
                frames = self._replay(session)
            except redis.RedisError as exc:
                self._redis_failed(exc)
                return
            self.replay_due.discard(session)
            if frames:
                self.log.info("session %s: %d frames Redis lacked written from the journal", session, frames)

    def tick(self) -> None:
        self._write_gathered()
        for session, journal in list(self.journals.items()):
            try:
                journal.sync()
            except OSError as exc:
                self._journal_failed(session, exc)
        self._flush()
        if not self.backlog and self.replay_due and time.monotonic() >= self.next_retry:
            self._replay_dropped()
        self._hand_off_ended()
        if self.acks is not None:
            self.acks.flush()  # what waited to go with others goes now: the class may have gone quiet

    def on_stop(self) -> None:
        self._write_gathered()
        # What the journal holds need not wait for Redis: the report and the next start read it from there.
        journaled = all(i.journal_n for i in self.backlog)
        deadline = time.monotonic() + (STOP_FLUSH_JOURNALED_SECONDS if journaled else STOP_FLUSH_SECONDS)
        while self.backlog and time.monotonic() < deadline:
            self._flush(force=True)
            if self.backlog:
                time.sleep(0.2)
        if self.acks is not None:
            self.acks.flush()  # before the sockets close
        kept = {s: j.path for s, j in self.journals.items() if j.path.exists()}
        for session, journal in self.journals.items():
            try:
                journal.close()
            except OSError as exc:
                self.log.error("session %s: journal %s not synced on stop: %s", session, journal.path, exc)
        for session in sorted({i.session if isinstance(i, FrameRecord) else i.eos.session for i in self.backlog}):
            writes = sum((i.session if isinstance(i, FrameRecord) else i.eos.session) == session for i in self.backlog)
            if session in kept:
                self.log.warning("stopping with %d writes of session %s Redis never took: kept in the journal %s, "
                                 "for the report and the next start", writes, session, kept[session])
            elif session in self.handed_off:
                self.log.warning("stopping with %d writes of session %s Redis never took: its report was written "
                                 "from the journal", writes, session)
            else:
                self.log.error("stopping with %d writes of session %s Redis never took (lost)", writes, session)

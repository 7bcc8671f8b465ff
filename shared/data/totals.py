"""The Redis schema of the running totals, and the only code that knows its keys.

The aggregator writes through `Store.record_frame` / `Store.end_session`; the reporter reads
through `Store.load_session`. Keys (P = key prefix, "engagement" unless a test sets its own):

  P:sessions                    set     every session id ever recorded
  P:reports_pending             set     sessions marked ended whose report is not written yet
                                        (a reporter that was down at the end writes them later)
  P:session:<sid>:meta          hash    class, stream (the first stream seen), started (first t_capture),
                                        ended (time the session was marked ended: its last stream's
                                        end), end_reason (that stream's), model_name,
                                        model_kind, baseline (0|1), affect (0|1), labels (JSON),
                                        engine, device (how inference ran the model); refills,
                                        refilled_frames, refilled_at (Redis lost the session and the
                                        aggregator refilled it from its journal, shared/data/journal.py)
  P:session:<sid>:journal       hash    n: the highest record number of the aggregator's journal applied
                                        (a lower one at a write: Redis came back empty or old)
  P:session:<sid>:streams       set     ids of the session's streams: every stream a frame or an eos came from,
                                        plus every stream the class expects (STREAMS) once one has ended
  P:session:<sid>:stream:<id>   hash    one stream's own start and end: started (its first t_capture), ended
                                        (time its eos was written), end_reason (the eos's: end_of_file,
                                        gave_up, stopped, ...), source (the eos's, when it names one)
  P:session:<sid>:stream:<id>:totals  hash  that stream's totals, the same fields as the session's
  P:session:<sid>:totals        hash    frames, frames_without_faces, faces, predictions,
                                        level:0 .. level:3; with a multi-task model also
                                        state:<head>:level:0 .. 3 for each of its heads
                                        (boredom, engagement, confusion, frustration)
  P:session:<sid>:seen          set     "<stream>:<seq>" of every frame already counted: the
                                        idempotency guard (a redelivered message or a restarted
                                        aggregator writing its backlog again never counts twice)
  P:session:<sid>:students      set     students seen in the session, as "<stream>/<id>": ids start at 1
                                        in every stream, so a student is (stream, id) (sessions written
                                        before several streams hold bare ids: the meta's stream)
  P:session:<sid>:student:<stream>/<id>  hash  predictions, level:0 .. level:3
                                        [state:<head>:level:N], first_seen, last_seen (t_capture),
                                        first_media, last_media (t_media, files)
  P:session:<sid>:timeline      stream  one entry per prediction, written in arrival order,
                                        one field d = JSON {stream, seq, student, level, probs,
                                        t_capture, t_media (null for live sources)} (one field,
                                        not seven: reading a long session back is 5x faster)
  P:session:<sid>:set_aside     hash    detections facedetect never made students of, by reason
                                        (short_lived, not_a_face; each a tentative face, counted once)
                                        and min_seconds (TRACK_MIN_SECONDS, for the report's wording)
  P:class:<cid>:sessions        set     sessions of the class
  P:class:<cid>:totals          hash    frames, frames_without_faces, faces, predictions,
                                        level:0 .. level:3 across all its sessions

A session ends (`Store.end_stream`, one Lua script) when every stream of P:session:<sid>:streams
has ended; with no expected streams given (STREAMS empty: one camera) its first eos ends it.

No key has a TTL until the reporter has written the session's report; then every key of the
session gets one (REPORTED_SESSION_TTL, shared/data/redis_retention.py), the only keys Redis's
volatile-ttl policy may evict.

One frame is written by one Lua script, so Redis applies it whole or not at all (a crash
between two increments cannot leave totals half-counted) and the idempotency check and the
increments cannot interleave with another writer. The script builds student keys from the
prefix itself, which ties this schema to a single Redis node (not Redis Cluster): a
classroom box runs one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast

import msgspec
import redis

from shared.data.levels import LEVELS
from shared.data.model_card import AFFECT_HEADS
from shared.data.report_doc import TimelineEntry
from shared.data.timeline_columns import LONG_TIMELINE, RawTimeline

DEFAULT_PREFIX = "engagement"
_HEAD_ORDER = {h: i for i, h in enumerate(AFFECT_HEADS)}
_ENTRY = msgspec.json.Decoder(TimelineEntry)
# A session with more predictions than this is read for its report as a RawTimeline: an hour of a 7x7
# gallery (352,800) as Structs was 386 MB of a 512 MB reporter.
RAW_TIMELINE_AFTER = LONG_TIMELINE
TOTAL_FIELDS = ("frames", "frames_without_faces", "faces", "predictions")
# Why facedetect never made a student of a detection (services/facedetect/tracker.py SetAside).
SET_ASIDE_REASONS = ("short_lived", "not_a_face")

# KEYS: none (single node, see above). ARGV: prefix, session, class, stream, seq, t_capture,
# t_media, faces, predictions JSON [{student, level, entry (the timeline entry's JSON)}], model JSON,
# known (how many streams' totals the caller holds), journal record number (0: none). Returns, as one JSON
# string, [1 if counted | 0 if this (session, stream, seq) was counted before, session totals, {stream id, its totals,
# ...}}: no stream with one stream, this frame's stream when the caller holds the others, else every stream; the journal
# marker before this write].
_JOURNAL_MARK = """
-- The journal's marker (shared/data/journal.py): the highest journal record number applied. Returns
-- the marker before this write (0: none, a Redis that lost the session), -1 when no number is given.
local function journal_mark(s, n)
  if n == 0 then return -1 end
  local key = s .. ':journal'
  local prev = tonumber(redis.call('HGET', key, 'n') or '0')
  if n > prev then redis.call('HSET', key, 'n', n) end
  return prev
end
"""

_RECORD_FRAME = _JOURNAL_MARK + """
local p, sid, cid, stream, seq = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local t_capture, t_media, faces = ARGV[6], ARGV[7], tonumber(ARGV[8])
local preds = cjson.decode(ARGV[9])
local model = cjson.decode(ARGV[10])
local known = tonumber(ARGV[11])
local s = p .. ':session:' .. sid
local prev_mark = journal_mark(s, tonumber(ARGV[12] or '0'))
-- {id, its totals (flat), ...}: see above (one HGETALL a frame, not one per stream)
local function stream_totals(s)
  local n = redis.call('SCARD', s .. ':streams')
  if n < 2 then return {} end
  local ids = {stream}
  if n ~= known then ids = redis.call('SMEMBERS', s .. ':streams') end
  local out = {}
  for _, id in ipairs(ids) do
    table.insert(out, id)
    table.insert(out, redis.call('HGETALL', s .. ':stream:' .. id .. ':totals'))
  end
  return out
end
if redis.call('SADD', s .. ':seen', stream .. ':' .. seq) == 0 then
  return cjson.encode({0, redis.call('HGETALL', s .. ':totals'), stream_totals(s), prev_mark})
end
redis.call('SADD', p .. ':sessions', sid)
redis.call('SADD', p .. ':class:' .. cid .. ':sessions', sid)
local meta = s .. ':meta'
redis.call('HSETNX', meta, 'class', cid)
redis.call('HSETNX', meta, 'stream', stream)
redis.call('SADD', s .. ':streams', stream)
for _, key in ipairs({meta, s .. ':stream:' .. stream}) do
  local started = redis.call('HGET', key, 'started')
  if (not started) or tonumber(t_capture) < tonumber(started) then
    redis.call('HSET', key, 'started', t_capture)
  end
end
if model['name'] and model['name'] ~= '' then
  redis.call('HSET', meta, 'model_name', tostring(model['name']), 'model_kind', tostring(model['kind'] or ''),
             'baseline', model['baseline'] and 1 or 0, 'affect', model['affect'] and 1 or 0,
             'labels', cjson.encode(model['labels'] or {}),
             'engine', tostring(model['engine'] or ''), 'device', tostring(model['device'] or ''))
end
local targets = {s .. ':totals', s .. ':stream:' .. stream .. ':totals', p .. ':class:' .. cid .. ':totals'}
for _, key in ipairs(targets) do
  redis.call('HINCRBY', key, 'frames', 1)
  redis.call('HINCRBY', key, 'faces', faces)
  redis.call('HINCRBY', key, 'predictions', #preds)
  if faces == 0 then redis.call('HINCRBY', key, 'frames_without_faces', 1) end
  for _, pr in ipairs(preds) do
    redis.call('HINCRBY', key, 'level:' .. pr['level'], 1)
    for head, level in pairs(pr['states'] or {}) do
      redis.call('HINCRBY', key, 'state:' .. head .. ':level:' .. level, 1)
    end
  end
end
for _, pr in ipairs(preds) do
  local student = stream .. '/' .. tostring(pr['student'])
  local sk = s .. ':student:' .. student
  redis.call('SADD', s .. ':students', student)
  redis.call('HINCRBY', sk, 'predictions', 1)
  redis.call('HINCRBY', sk, 'level:' .. pr['level'], 1)
  for head, level in pairs(pr['states'] or {}) do
    redis.call('HINCRBY', sk, 'state:' .. head .. ':level:' .. level, 1)
  end
  local first = redis.call('HGET', sk, 'first_seen')
  if (not first) or tonumber(t_capture) < tonumber(first) then
    redis.call('HSET', sk, 'first_seen', t_capture, 'first_media', t_media)
  end
  local last = redis.call('HGET', sk, 'last_seen')
  if (not last) or tonumber(t_capture) > tonumber(last) then
    redis.call('HSET', sk, 'last_seen', t_capture, 'last_media', t_media)
  end
  redis.call('XADD', s .. ':timeline', '*', 'd', pr['entry'])
end
return cjson.encode({1, redis.call('HGETALL', s .. ':totals'), stream_totals(s), prev_mark})
"""

# KEYS: none. ARGV: prefix, session, class, stream, ended, reason, source, expected streams JSON
# (empty list: this eos ends the session), journal record number (0: none). Returns {1 if the session has
# ended | 0, [streams still open], 1 if this eos is the stream's first end | 0, the journal marker before}.
_END_STREAM = _JOURNAL_MARK + """
local p, sid, cid, stream = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ended, reason, source = ARGV[5], ARGV[6], ARGV[7]
local expected = cjson.decode(ARGV[8])
local s = p .. ':session:' .. sid
local prev_mark = journal_mark(s, tonumber(ARGV[9] or '0'))
local meta = s .. ':meta'
redis.call('SADD', p .. ':sessions', sid)
if cid ~= '' then
  redis.call('HSETNX', meta, 'class', cid)
  redis.call('SADD', p .. ':class:' .. cid .. ':sessions', sid)
end
redis.call('HSETNX', meta, 'stream', stream)
redis.call('SADD', s .. ':streams', stream)
local sk = s .. ':stream:' .. stream
local first = redis.call('HSETNX', sk, 'ended', ended)
redis.call('HSETNX', sk, 'end_reason', reason)
if source ~= '' then redis.call('HSETNX', sk, 'source', source) end
local open = {}
if #expected > 0 then
  for _, id in ipairs(expected) do redis.call('SADD', s .. ':streams', id) end
  for _, id in ipairs(redis.call('SMEMBERS', s .. ':streams')) do
    if redis.call('HEXISTS', s .. ':stream:' .. id, 'ended') == 0 then table.insert(open, id) end
  end
end
if #open > 0 and redis.call('HEXISTS', meta, 'ended') == 0 then
  return {0, open, first, prev_mark}
end
redis.call('HSETNX', meta, 'ended', ended)
redis.call('HSETNX', meta, 'end_reason', reason)
redis.call('SADD', p .. ':reports_pending', sid)
return {1, open, first, prev_mark}
"""


class StreamEnd(NamedTuple):
    session_ended: bool
    still_open: list[str]  # the session's streams not ended yet
    first: bool  # False for a repeated eos (its first end is kept)


class FrameWrite(NamedTuple):
    counted: bool  # False if (session, stream, seq) was counted before
    totals: dict[str, Any]
    mark: int = -1  # the journal marker before this write (-1: no journal number given)


def expected_streams(setting: str) -> list[str]:
    """The STREAMS setting as a list of ids (empty: one stream, whichever it is)."""
    return [s.strip() for s in setting.split(",") if s.strip()]


@dataclass
class FrameRecord:
    """What one `predictions` message adds to the totals (plain data: it waits in a backlog)."""

    session: str
    class_id: str
    stream: str
    seq: int
    t_capture: float
    t_media: float | None
    faces: int
    predictions: list[dict[str, Any]]  # [{student, level, probs[, heads: {head: probs}]}]
    model: dict[str, Any] = field(default_factory=dict)
    journal_n: int = 0  # its record number in the aggregator's journal (shared/data/journal.py), 0: none

    def level_counts(self) -> list[int]:
        counts = [0] * LEVELS
        for p in self.predictions:
            counts[p["level"]] += 1
        return counts


def states_of(prediction: dict[str, Any]) -> dict[str, int]:
    """A multi-task prediction's level for each head (its most likely one); {} for one head."""
    heads = prediction.get("heads") or {}
    return {str(h): max(range(len(p)), key=p.__getitem__) for h, p in heads.items() if len(p) == LEVELS}


def timeline_entry(rec: FrameRecord, p: dict[str, Any]) -> dict[str, Any]:
    """One prediction's timeline entry (P:session:<sid>:timeline; the journal's reports build the same)."""
    entry = {"stream": rec.stream, "seq": int(rec.seq), "student": int(p["student"]), "level": int(p["level"]),
             "probs": [float(x) for x in p["probs"]], "t_capture": float(rec.t_capture),
             "t_media": None if rec.t_media is None else float(rec.t_media)}
    # What the level rests on, so a report explains itself: the face's box and detection
    # confidence, and the baseline's signals (yaw, pitch, eye openness, ...).
    for extra in ("box", "conf", "signals"):
        if p.get(extra) is not None:
            entry[extra] = p[extra]
    states = states_of(p)
    if states:
        entry["states"] = states
    return entry


def entry_json(entry: dict[str, Any]) -> str:
    """A timeline entry as Redis holds it (and a long class's journal report reads it: RawTimeline)."""
    return json.dumps(entry, separators=(",", ":"))


def _add_states(states: dict[str, dict[str, int]], prediction: dict[str, Any]) -> None:
    for head, level in states_of(prediction).items():
        states.setdefault(head, {str(i): 0 for i in range(LEVELS)})[str(level)] += 1


def _states_from_hash(raw: dict[str, str]) -> dict[str, dict[str, int]]:
    states: dict[str, dict[str, int]] = {}
    for key, value in raw.items():
        if key.startswith("state:"):
            head, _, level = key[len("state:"):].rpartition(":level:")
            states.setdefault(head, {str(i): 0 for i in range(LEVELS)})[level] = int(value)
    # DAiSEE's order (a Redis hash has none), other heads after them
    return dict(sorted(states.items(), key=lambda kv: (_HEAD_ORDER.get(kv[0], len(_HEAD_ORDER)), kv[0])))


def empty_totals() -> dict[str, Any]:
    return {**{f: 0 for f in TOTAL_FIELDS}, "levels": {str(i): 0 for i in range(LEVELS)}}


def add_record(totals: dict[str, Any], record: FrameRecord) -> dict[str, Any]:
    """Totals plus one frame, computed locally (for updates while Redis is unreachable)."""
    out = {**totals, "levels": dict(totals["levels"])}
    if "streams" in totals:  # several streams: the record's stream counts it too
        streams = dict(totals["streams"])
        streams[record.stream] = add_record(streams.get(record.stream) or empty_totals(), record)
        out["streams"] = streams
    out["frames"] += 1
    out["faces"] += record.faces
    out["predictions"] += len(record.predictions)
    out["frames_without_faces"] += record.faces == 0
    for level, n in enumerate(record.level_counts()):
        out["levels"][str(level)] += n
    if any("heads" in p for p in record.predictions) or "states" in totals:
        out["states"] = {h: dict(v) for h, v in totals.get("states", {}).items()}
        for p in record.predictions:
            _add_states(out["states"], p)
        if "streams" in out:  # Redis's order (_totals_from_hash), the update's too: states before streams
            out["streams"] = out.pop("streams")
    return out


def _totals_from_hash(raw: dict[str, str]) -> dict[str, Any]:
    totals = empty_totals()
    for f in TOTAL_FIELDS:
        totals[f] = int(raw.get(f, 0))
    for i in range(LEVELS):
        totals["levels"][str(i)] = int(raw.get(f"level:{i}", 0))
    states = _states_from_hash(raw)
    if states:  # a multi-task model: every head's levels, not only the primary one
        totals["states"] = states
    return totals


# The client decodes every reply (decode_responses=True, Store.from_url); redis-py's types say
# `bytes | str` for either mode, so a reply is narrowed to text here, once.
def _hash(raw: Mapping[Any, Any]) -> dict[str, str]:
    return cast(dict[str, str], raw)


def _members(raw: Iterable[Any]) -> set[str]:
    return cast(set[str], raw)


def _pairs(flat: list[str] | dict[str, Any]) -> dict[str, str]:
    """A flat HGETALL reply as a dict; cjson writes an empty one (a stream without totals yet) as {}."""
    if not flat:
        return {}
    assert isinstance(flat, list), "cjson writes only an empty table as an object"
    return dict(zip(flat[::2], flat[1::2], strict=True))


def split_student_key(member: str, default_stream: str) -> tuple[str, int]:
    """(stream, id) of a member of P:session:<sid>:students ("<stream>/<id>", or a bare id)."""
    stream, _, student = member.rpartition("/")
    return (stream if _ else default_stream), int(student)


def student_key(stream: str, student: int) -> str:
    """How a student is named across streams: "<stream>/<id>" (the Redis members, marks, the page)."""
    return f"{stream}/{int(student)}"


def _float_or_none(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def _labels(raw: str | None) -> list[str]:
    value = json.loads(raw) if raw else []
    return value if isinstance(value, list) else []  # Lua's cjson writes an empty list as {}


def safe_url(url: str) -> str:
    """The Redis URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def _frame_write(done: Any) -> FrameWrite:
    """The record script's answer. One JSON string, not Redis's nested reply: the client parsed ~35 items a frame
    in Python, the most of the aggregator's CPU after the write itself (cjson writes an empty list as {}: `or []`)."""
    counted, flat, per_stream, prev_mark = json.loads(done)
    flat, per_stream = flat or [], per_stream or []
    totals = _totals_from_hash(_pairs(flat))
    if per_stream:  # several streams: their totals too (one stream: nothing to add)
        totals["streams"] = {sid: _totals_from_hash(_pairs(raw))
                             for sid, raw in sorted(zip(per_stream[::2], per_stream[1::2], strict=True))}
    return FrameWrite(bool(counted), totals, int(prev_mark))


class Store:
    def __init__(self, client: redis.Redis, prefix: str = DEFAULT_PREFIX, url: str = "") -> None:
        self.r = client
        self.prefix = prefix
        self.url = url  # for log lines only (always through safe_url)
        self._record = client.register_script(_RECORD_FRAME)
        self._end_stream = client.register_script(_END_STREAM)

    @classmethod
    def from_url(cls, url: str, prefix: str = DEFAULT_PREFIX, timeout: float = 2.0) -> Store:
        # Short timeouts: a Redis that hangs must not freeze the service's loop for long.
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout,
                                      socket_connect_timeout=timeout)
        return cls(client, prefix, url)

    def check(self, log: logging.Logger, meanwhile: str) -> bool:
        """Ping Redis once at start-up; on failure say why in one line (ending with `meanwhile`).

        A wrong password is an error (retrying will not help until the URL is fixed); Redis not
        up yet is a warning. Never raises: callers keep running and retry on their own.
        """
        where = safe_url(self.url) or "(client)"
        try:
            self.r.ping()
            return True
        except redis.AuthenticationError as exc:
            log.error("Redis at %s refused the credentials (%s): set the password in REDIS_URL "
                      "(redis://:PASSWORD@host:port/0); %s", where, exc, meanwhile)
        except redis.RedisError as exc:
            log.warning("Redis at %s not reachable yet (%s): %s", where, exc, meanwhile)
        return False

    def _s(self, session: str) -> str:
        return f"{self.prefix}:session:{session}"

    def session_pattern(self, session: str) -> str:
        """SCAN pattern of every key of one session (the class keys are not among them)."""
        return f"{self._s(session)}:*"

    # --- writes (aggregator) ------------------------------------------------------------
    def record_frame(self, rec: FrameRecord, known_streams: int = 0) -> tuple[bool, dict[str, Any]]:
        """Count one frame; (False, totals) if (session, stream, seq) was counted before."""
        done = self.record_journaled_frame(rec, known_streams)
        return done.counted, done.totals

    def record_journaled_frame(self, rec: FrameRecord, known_streams: int = 0, mark: int = 0) -> FrameWrite:
        """Count one frame; counted False if (session, stream, seq) was counted before. `mark` is its journal
        record number (0: none); the journal marker Redis held before comes back.

        The session's totals after the write come back in the same round trip; with several
        streams also `streams`: {stream: its totals}, every stream's unless the caller already
        holds `known_streams` of them (all but this frame's change nothing), then this one's.
        """
        return _frame_write(self._record(args=self._frame_args(rec, known_streams, mark)))

    def record_journaled_frames(self, frames: list[tuple[FrameRecord, int, int]]) -> list[FrameWrite]:
        """record_journaled_frame for each (record, known_streams, mark), in order, in one round trip: frames that
        arrived together cost Redis and the caller one exchange, not one each. Not a transaction: on a RedisError
        some may have been counted, which a later write of them sees (counted False)."""
        pipe = self.r.pipeline(transaction=False)
        for rec, known_streams, mark in frames:
            self._record(args=self._frame_args(rec, known_streams, mark), client=pipe)
        return [_frame_write(done) for done in pipe.execute()]

    def _frame_args(self, rec: FrameRecord, known_streams: int, mark: int) -> list[Any]:
        preds = []
        for p in rec.predictions:
            # The timeline entry is encoded here, not in Lua: cjson would round times to 14 digits.
            entry = timeline_entry(rec, p)
            states = entry.get("states")
            preds.append({"student": entry["student"], "level": entry["level"],
                          "entry": entry_json(entry), **({"states": states} if states else {})})
        t_media = "" if rec.t_media is None else repr(float(rec.t_media))
        m = rec.model or {}
        # Only plain fields reach Lua: a JSON null would turn into a truthy value there.
        model = {"name": str(m.get("name") or ""), "kind": str(m.get("kind") or ""),
                 "baseline": bool(m.get("baseline")), "affect": bool(m.get("affect")),
                 "labels": [str(x) for x in (m.get("labels") or [])],
                 "engine": str(m.get("engine") or ""), "device": str(m.get("device") or "")} if m else {}
        return [self.prefix, rec.session, rec.class_id, rec.stream, rec.seq, repr(float(rec.t_capture)), t_media,
                rec.faces, json.dumps(preds), json.dumps(model), int(known_streams), int(mark)]

    def end_session(self, session: str, ended: float, reason: str, class_id: str = "", stream: str = "") -> None:
        """Mark the session ended, and every stream of it still open (idempotent: a repeated call
        keeps the first end time). The reporter's way to close a session a crash cut short."""
        meta = f"{self._s(session)}:meta"
        pipe = self.r.pipeline(transaction=True)
        for open_stream in _members(self.r.smembers(f"{self._s(session)}:streams")):
            pipe.hsetnx(f"{self._s(session)}:stream:{open_stream}", "ended", repr(float(ended)))
            pipe.hsetnx(f"{self._s(session)}:stream:{open_stream}", "end_reason", reason)
        pipe.sadd(f"{self.prefix}:sessions", session)
        if class_id:
            pipe.hsetnx(meta, "class", class_id)
            pipe.sadd(f"{self.prefix}:class:{class_id}:sessions", session)
        if stream:
            pipe.hsetnx(meta, "stream", stream)
        pipe.hsetnx(meta, "ended", repr(float(ended)))
        pipe.hsetnx(meta, "end_reason", reason)
        pipe.sadd(f"{self.prefix}:reports_pending", session)
        pipe.execute()

    def end_stream(self, session: str, stream: str, ended: float, reason: str, expected: list[str],
                   class_id: str = "", source: str = "", mark: int = 0) -> StreamEnd:
        """Record one stream's end (see end_journaled_stream)."""
        return self.end_journaled_stream(session, stream, ended, reason, expected, class_id, source, mark)[0]

    def end_journaled_stream(self, session: str, stream: str, ended: float, reason: str, expected: list[str],
                             class_id: str = "", source: str = "", mark: int = 0) -> tuple[StreamEnd, int]:
        """Record one stream's end; whether the session has ended, the streams still open, and
        whether this was the stream's first end (not a repeated eos)."""
        # The session ends once every stream in `expected` and every stream seen has ended; with
        # `expected` empty (a one-camera class) this eos ends it. Idempotent: a repeated eos keeps
        # the first end time and reason, and says again that the session has ended.
        done, still_open, first, prev_mark = self._end_stream(args=[
            self.prefix, session, class_id, stream, repr(float(ended)), reason, source, json.dumps(list(expected)),
            int(mark)])
        return StreamEnd(bool(done), sorted(still_open), bool(first)), int(prev_mark)

    def journal_mark(self, session: str) -> int:
        """The highest journal record number Redis has applied for the session (0: none)."""
        return int(self.r.hget(f"{self._s(session)}:journal", "n") or 0)

    def note_refill(self, session: str, frames: int, when: float) -> None:
        """Say in the session's meta that Redis lost it and it was refilled from the journal (the report says so)."""
        meta = f"{self._s(session)}:meta"
        pipe = self.r.pipeline(transaction=True)
        pipe.hincrby(meta, "refills", 1)
        pipe.hincrby(meta, "refilled_frames", frames)
        pipe.hset(meta, "refilled_at", repr(float(when)))
        pipe.execute()

    def add_set_aside(self, session: str, counts: dict[str, int], min_seconds: float) -> None:
        """Count detections set aside (facedetect, at a stream's end) under their reasons."""
        key = f"{self._s(session)}:set_aside"
        pipe = self.r.pipeline(transaction=True)
        for reason, n in counts.items():
            pipe.hincrby(key, reason, int(n))
        pipe.hset(key, "min_seconds", repr(float(min_seconds)))
        pipe.execute()

    def set_aside(self, session: str) -> dict[str, Any]:
        """{reason: count, ..., "min_seconds": s}; {} when nothing was set aside."""
        raw = _hash(self.r.hgetall(f"{self._s(session)}:set_aside"))
        return {k: (float(v) if k == "min_seconds" else int(v)) for k, v in raw.items()}

    def streams(self, session: str) -> list[dict[str, Any]]:
        """Each stream's own start, end and totals, sorted by id."""
        ids = sorted(_members(self.r.smembers(f"{self._s(session)}:streams")))
        pipe = self.r.pipeline(transaction=False)
        for stream in ids:
            pipe.hgetall(f"{self._s(session)}:stream:{stream}")
            pipe.hgetall(f"{self._s(session)}:stream:{stream}:totals")
        done = pipe.execute()
        return [{"stream": stream, "source": raw.get("source", ""), "started": _float_or_none(raw.get("started")),
                 "ended": _float_or_none(raw.get("ended")), "end_reason": raw.get("end_reason", ""),
                 "totals": _totals_from_hash(totals)}
                for stream, raw, totals in zip(ids, done[::2], done[1::2], strict=True)]

    def stream_ends(self, session: str) -> dict[str, tuple[float, str]]:
        """The streams of `session` that have ended: id -> (when, why). Their totals are not read (the web
        asks twice a second; `streams` parsed every stream's totals hash for it)."""
        ids = sorted(_members(self.r.smembers(f"{self._s(session)}:streams")))
        pipe = self.r.pipeline(transaction=False)
        for stream in ids:
            pipe.hmget(f"{self._s(session)}:stream:{stream}", ["ended", "end_reason"])
        ends = {}
        for stream, (ended, reason) in zip(ids, pipe.execute() if ids else [], strict=True):
            when = _float_or_none(ended)
            if when is not None:
                ends[stream] = (when, reason or "")
        return ends

    def sessions(self) -> list[str]:
        """Every session counted (sorted), ended or not."""
        return sorted(_members(self.r.smembers(f"{self.prefix}:sessions")))

    def reports_pending(self) -> list[str]:
        """Sessions marked ended whose report no reporter has written yet."""
        return sorted(_members(self.r.smembers(f"{self.prefix}:reports_pending")))

    def report_written(self, session: str) -> None:
        self.r.srem(f"{self.prefix}:reports_pending", session)

    # --- reads (reporter, tests, Grafana helpers) -----------------------------------------
    def session_totals(self, session: str) -> dict[str, Any]:
        return _totals_from_hash(_hash(self.r.hgetall(f"{self._s(session)}:totals")))

    def class_totals(self, class_id: str) -> dict[str, Any]:
        totals = _totals_from_hash(_hash(self.r.hgetall(f"{self.prefix}:class:{class_id}:totals")))
        totals["sessions"] = int(self.r.scard(f"{self.prefix}:class:{class_id}:sessions"))
        return totals

    def session_meta(self, session: str) -> dict[str, Any]:
        raw = _hash(self.r.hgetall(f"{self._s(session)}:meta"))
        return {
            "session": session,
            "class": raw.get("class", ""),
            "stream": raw.get("stream", ""),
            "started": _float_or_none(raw.get("started")),
            "ended": _float_or_none(raw.get("ended")),
            "end_reason": raw.get("end_reason", ""),
            "refills": int(raw.get("refills", 0)), "refilled_frames": int(raw.get("refilled_frames", 0)),
            "model": {"name": raw.get("model_name", ""), "kind": raw.get("model_kind", ""),
                      "baseline": raw.get("baseline") == "1", "affect": raw.get("affect") == "1",
                      "labels": _labels(raw.get("labels")),
                      "engine": raw.get("engine", ""), "device": raw.get("device", "")},
        }

    def students(self, session: str) -> list[dict[str, Any]]:
        """One row per (stream, student), sorted by stream then id; each row carries its stream."""
        default_stream = cast(str, self.r.hget(f"{self._s(session)}:meta", "stream") or "")
        members = sorted(_members(self.r.smembers(f"{self._s(session)}:students")),
                         key=lambda m: split_student_key(m, default_stream))
        pipe = self.r.pipeline(transaction=False)
        for member in members:
            pipe.hgetall(f"{self._s(session)}:student:{member}")
        rows: list[dict[str, Any]] = []
        for member, raw in zip(members, pipe.execute(), strict=True):
            stream, student = split_student_key(member, default_stream)
            rows.append({"stream": stream, "student": student, "predictions": int(raw.get("predictions", 0)),
                         "levels": {str(i): int(raw.get(f"level:{i}", 0)) for i in range(LEVELS)},
                         "first_seen": _float_or_none(raw.get("first_seen")),
                         "last_seen": _float_or_none(raw.get("last_seen")),
                         "first_media": _float_or_none(raw.get("first_media")),
                         "last_media": _float_or_none(raw.get("last_media")),
                         **({"states": _states_from_hash(raw)} if _states_from_hash(raw) else {})})
        return rows

    def timeline_json(self, session: str, batch: int = 5000) -> Iterator[str]:
        """Each prediction's entry as Redis holds it (JSON), in the order they were counted, `batch` a read."""
        start = "-"
        key = f"{self._s(session)}:timeline"
        while True:
            chunk = cast(list[tuple[str, dict[str, str]]], self.r.xrange(key, min=start, max="+", count=batch))
            yield from (fields["d"] for _entry_id, fields in chunk)
            if len(chunk) < batch:
                return
            start = "(" + chunk[-1][0]

    def timeline(self, session: str, batch: int = 5000) -> list[dict[str, Any]]:
        """Every prediction of the session, ordered by capture time (then seq, student)."""
        # msgspec shares the keys' strings between entries (json.loads makes each entry's own): an
        # hour of a 7x7 gallery's 352,800 entries are about 150 MB less.
        entries: list[dict[str, Any]] = [msgspec.json.decode(d) for d in self.timeline_json(session, batch)]
        entries.sort(key=lambda e: (e["t_capture"], e["seq"], e["student"]))
        return entries

    def timeline_entries(self, session: str, batch: int = 5000) -> list[TimelineEntry]:
        """`timeline` as the report's Structs, decoded straight from Redis: no dict of an entry is ever made
        (an hour of a 7x7 gallery is 352,800 entries: as dicts beside their Structs, about 240 MB)."""
        entries = [_ENTRY.decode(d) for d in self.timeline_json(session, batch)]
        entries.sort(key=lambda e: (e.t_capture, e.seq, e.student))
        return entries

    def last_prediction_time(self, session: str) -> float | None:
        """The capture time of the session's last prediction counted (None: none), read alone."""
        last = cast(list[tuple[str, dict[str, str]]], self.r.xrevrange(f"{self._s(session)}:timeline", count=1))
        return float(_ENTRY.decode(last[0][1]["d"]).t_capture) if last else None

    def load_session(self, session: str) -> dict[str, Any]:
        """Everything a report needs, read from Redis: the timeline as TimelineEntry Structs, or, past
        RAW_TIMELINE_AFTER predictions, as a RawTimeline (each entry's JSON and the columns the report
        computes from: 408 bytes an entry against 1094)."""
        long_class = int(self.r.xlen(f"{self._s(session)}:timeline")) > RAW_TIMELINE_AFTER
        timeline = RawTimeline(self.timeline_json(session)) if long_class else self.timeline_entries(session)
        return {"meta": self.session_meta(session), "totals": self.session_totals(session),
                "streams": self.streams(session), "students": self.students(session),
                "timeline": timeline, "set_aside": self.set_aside(session)}

    def delete_session(self, session: str) -> None:
        """Remove a session's keys (tests; a retention job). Class totals are left alone."""
        keys = list(self.r.scan_iter(match=f"{self._s(session)}:*", count=500))
        if keys:
            self.r.delete(*keys)
        self.r.srem(f"{self.prefix}:sessions", session)

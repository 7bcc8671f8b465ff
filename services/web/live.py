"""The class as it is now: the live session's totals and one entry per student.

A student is (stream, id): ids start at 1 in every stream of a class, so two cameras' #1
are two cards. The snapshot lists the session's streams, and each one's running totals when
there are several (the aggregator's updates carry them).

Fed by the reporter's updates (the `live` link) and, at start-up, by the session's timeline
in Redis, so a web service restarted mid-class shows the class again: nothing is on disk.
`LiveState` is written by the service's loop thread and read by the web server's threads,
under one lock.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from shared.levels import LEVEL_LABELS
from shared.model_card import BASELINE_NOTE
from shared.roster import Roster, name_of

HISTORY_SECONDS = 300.0  # the cards' charts: the last five minutes
HISTORY_MAX_POINTS = 3000  # a bound whatever the frame rate
ATTENTION_LEVEL = 2  # "time at level 2 or more" on each card
# A gap longer than this between two predictions of a student (the student left the frame)
# is not counted as time at any level.
MAX_GAP_SECONDS = 2.0


def numeric_signals(signals: Any) -> dict[str, float]:
    """The numbers among a prediction's signals (the baseline also sends a reason string)."""
    if not isinstance(signals, dict):
        return {}
    return {k: float(v) for k, v in signals.items()
            if isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)}


@dataclass
class Student:
    id: int
    stream: str = ""
    level: int = 0
    probs: list[float] = field(default_factory=list)
    last_seen: float = 0.0
    signals: dict[str, float] = field(default_factory=dict)
    seconds_at_attention_level: float = 0.0
    # (t_capture, level, signals): the chart, and what a mark of a past moment is compared with.
    history: deque = field(default_factory=lambda: deque(maxlen=HISTORY_MAX_POINTS))

    def add(self, t: float, level: int, probs: list[float], signals: dict[str, float]) -> None:
        if self.history and self.level >= ATTENTION_LEVEL:
            self.seconds_at_attention_level += max(0.0, min(t - self.last_seen, MAX_GAP_SECONDS))
        if t >= self.last_seen:
            self.level, self.probs, self.last_seen, self.signals = level, probs, t, signals
        self.history.append((t, level, signals))
        while self.history and self.history[0][0] < t - HISTORY_SECONDS:
            self.history.popleft()

    def at(self, t: float) -> tuple[int, dict[str, float]] | None:
        """The prediction nearest to capture time `t`, if one is within MAX_GAP_SECONDS."""
        best = min(self.history, key=lambda h: abs(h[0] - t), default=None)
        if best is None or abs(best[0] - t) > MAX_GAP_SECONDS:
            return None
        return best[1], best[2]

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "stream": self.stream, "level": self.level, "probs": self.probs,
                "last_seen": self.last_seen,
                "seconds_at_level_2_or_more": round(self.seconds_at_attention_level, 1)}


def _empty_totals() -> dict[str, Any]:
    return {"frames": 0, "frames_without_faces": 0, "faces": 0, "predictions": 0,
            "levels": {str(i): 0 for i in range(len(LEVEL_LABELS))}}


class LiveState:
    def __init__(self, class_level_only: bool, roster: Roster | None = None) -> None:
        self.class_level_only = class_level_only
        self.roster: Roster = {} if class_level_only else dict(roster or {})  # display names: on the box only
        self.lock = threading.Lock()
        self._reset(None)

    def _reset(self, session: str | None) -> None:
        self.session = session
        self.model: dict[str, Any] = {}
        self.totals = _empty_totals()
        self.students: dict[tuple[str, int], Student] = {}
        self.streams: set[str] = set()
        self.seq: int | None = None
        self.t_capture: float | None = None
        self.ended = False
        self.stream = ""  # the stream of the last update
        self.stream_ends: dict[str, dict[str, Any]] = {}  # stream -> {ended, end_reason}: ended, the class goes on

    # --- writes (the service's loop thread) ---------------------------------------------
    def load(self, session: str, meta: dict[str, Any], totals: dict[str, Any], timeline: list[dict[str, Any]]) -> None:
        """The state of `session` as Redis has it (start-up, or a session this process missed)."""
        with self.lock:
            self._reset(session)
            self.model = dict(meta.get("model") or {})
            self.totals = totals
            self.ended = meta.get("ended") is not None
            self.streams.update(str(st) for st in meta.get("streams") or [])
            for e in timeline:
                self._student(str(e["stream"]), int(e["student"])).add(
                    float(e["t_capture"]), int(e["level"]), [float(x) for x in e["probs"]], {})
                if self.t_capture is None or e["t_capture"] >= self.t_capture:
                    self.t_capture, self.seq = float(e["t_capture"]), int(e["seq"])

    def apply_update(self, session: str, seq: int, t_capture: float, fields: dict[str, Any]) -> dict[str, Any]:
        """One update from the reporter; returns the event pushed to the pages."""
        with self.lock:
            if session != self.session:
                self._reset(session)
            self.model = dict(fields.get("model") or self.model)
            self.totals = fields.get("totals") or self.totals
            self.seq, self.t_capture, self.ended = seq, t_capture, False
            self.stream = str(fields.get("stream") or self.stream)
            self.streams.add(self.stream)
            for p in fields.get("predictions") or []:
                self._student(self.stream, int(p["student"])).add(
                    t_capture, int(p["level"]), [float(x) for x in p["probs"]], numeric_signals(p.get("signals")))
            # Bounded memory over a long class: students long gone are forgotten here.
            for key in [k for k, st in self.students.items() if st.last_seen < t_capture - 2 * HISTORY_SECONDS]:
                del self.students[key]
            return self._snapshot(history=False)

    def set_stream_ends(self, session: str, ends: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        """The streams of the live session that have ended (from Redis); the event for the pages
        when that changed, else None."""
        with self.lock:
            if session != self.session or ends == self.stream_ends:
                return None
            self.stream_ends = ends
            self.streams.update(ends)
            # Not a new update: the page must not add a point to the charts or a latency for it.
            return {**self._snapshot(history=False), "status_only": True}

    def end(self, session: str) -> dict[str, Any] | None:
        with self.lock:
            if session != self.session:
                return None
            self.ended = True
            return self._snapshot(history=False)

    def _student(self, stream: str, sid: int) -> Student:
        if (stream, sid) not in self.students:
            self.streams.add(stream)
            self.students[(stream, sid)] = Student(sid, stream)
        return self.students[(stream, sid)]

    # --- reads (the web server) -----------------------------------------------------------
    def snapshot(self, history: bool = True) -> dict[str, Any]:
        with self.lock:
            return self._snapshot(history)

    def _snapshot(self, history: bool) -> dict[str, Any]:
        labels = self.model.get("labels") or list(LEVEL_LABELS)
        out: dict[str, Any] = {
            "session": self.session, "seq": self.seq, "t_capture": self.t_capture, "ended": self.ended,
            "model": {"name": self.model.get("name", ""), "baseline": bool(self.model.get("baseline")),
                      "labels": labels},
            "note": BASELINE_NOTE if self.model.get("baseline") else "",
            "class_level_only": self.class_level_only, "totals": self.totals, "students": [],
            "streams": sorted(self.streams),
            "stream_ends": dict(self.stream_ends),
        }
        if len(self.streams) > 1:  # several streams: each one's running totals (class level only too)
            per_stream = self.totals.get("streams") or {}
            out["stream_totals"] = {st: per_stream.get(st) or _empty_totals() for st in sorted(self.streams)}
        if self.class_level_only:
            return out
        for key in sorted(self.students):
            s = self.students[key]
            if self.t_capture is not None and s.last_seen < self.t_capture - HISTORY_SECONDS:
                continue  # gone for longer than the charts show: no card (the report keeps them)
            row = s.summary()
            name = name_of(self.roster, s.stream, s.id) if self.roster else None
            if name:
                row["name"] = name
            if history:
                row["history"] = [[round(t, 3), level] for t, level, _ in s.history]
            out["students"].append(row)
        return out

    def prediction_at(self, session: str, stream: str, student: int, t: float) -> tuple[int, dict[str, float]] | None:
        """The model's level and signals for a mark of the live session, or None. Without a
        stream (a page of a one-stream class) the student's id in any stream."""
        with self.lock:
            if session != self.session:
                return None
            s = self.students.get((stream, student)) if stream else next(
                (st for (_, sid), st in sorted(self.students.items()) if sid == student), None)
            return s.at(t) if s else None

    def has_stream(self, stream: str) -> bool:
        with self.lock:
            return stream in self.streams

    def is_live(self, session: str) -> bool:
        with self.lock:
            return session == self.session and not self.ended


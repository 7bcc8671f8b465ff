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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from services.web.attention import AttentionLog, alert_row
from shared.bus.messages import Update
from shared.data.lesson import DEFAULT_ALERT_SECONDS
from shared.data.levels import LEVEL_LABELS
from shared.data.model_card import BASELINE_NOTE
from shared.data.model_info import ModelInfo
from shared.data.roster import Roster, TileLabels, name_of
from shared.data.running_totals import Totals, no_totals

HISTORY_SECONDS = 300.0  # the cards' charts: the last five minutes
HISTORY_MAX_POINTS = 3000  # a bound whatever the frame rate
ATTENTION_LEVEL = 2  # "time at level 2 or more" on each card
# A gap longer than this between two predictions of a student (the student left the frame)
# is not counted as time at any level.
MAX_GAP_SECONDS = 2.0
CLASS_LINE_POINTS = 720  # the class line's bound: past it, every other point goes and the step doubles


def numeric_signals(signals: Any) -> dict[str, float]:
    """The numbers among a prediction's signals (the baseline also sends a reason string)."""
    if not isinstance(signals, dict):
        return {}
    return {k: float(v) for k, v in signals.items()
            if isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)}


class LiveRow(msgspec.Struct):
    """A prediction of the class under way as Redis has it: what the live state takes of its timeline entry
    (decoded from the entry's JSON, its other keys skipped: services/web/restore.py)."""
    stream: str
    seq: int
    student: int
    level: int
    probs: list[float]
    t_capture: float


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
    history: deque[tuple[float, int, dict[str, float]]] = field(
        default_factory=lambda: deque(maxlen=HISTORY_MAX_POINTS))

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


class LiveState:
    def __init__(self, class_level_only: bool, roster: Roster | None = None,
                 alert_seconds: float = DEFAULT_ALERT_SECONDS) -> None:
        self.class_level_only = class_level_only
        self.alert_seconds = alert_seconds
        self.roster: Roster = {} if class_level_only else dict(roster or {})  # display names: on the box only
        self.lock = threading.Lock()
        self._reset(None)

    def _reset(self, session: str | None) -> None:
        self.session = session
        self.model = ModelInfo()
        self.totals = no_totals()
        self.students: dict[tuple[str, int], Student] = {}
        self.streams: set[str] = set()
        self.seq: int | None = None
        self.t_capture: float | None = None
        self.ended = False
        self.stream = ""  # the stream of the last update
        self.stream_ends: dict[str, dict[str, Any]] = {}  # stream -> {ended, end_reason}: ended, the class goes on
        self.attention = AttentionLog(self.alert_seconds)
        self.tile_labels: TileLabels = {}  # the names facedetect read on the call tiles (GALLERY_NAMES=ocr)
        # The class line: [t_capture, share at level 0, 1, 2, 3] of the students seen then, a point
        # at most every `line_step` seconds over the whole lesson.
        self.class_line: list[list[float]] = []
        self.line_step = 1.0

    # --- writes (the service's loop thread) ---------------------------------------------
    def load(self, session: str, meta: dict[str, Any], totals: dict[str, Any], timeline: Iterable[LiveRow]) -> None:
        """The state of `session` as Redis has it (start-up, or a session this process missed); `timeline`: its
        predictions sorted by capture time (services/web/restore.py live_rows)."""
        with self.lock:
            self._reset(session)
            self.model = msgspec.convert(meta.get("model") or {}, ModelInfo)
            self.totals = Totals.of(totals)
            self.ended = meta.get("ended") is not None
            self.streams.update(str(st) for st in meta.get("streams") or [])
            previous = None  # the class line gets a point once all of a moment's predictions are in
            for e in timeline:
                if previous is not None and e.t_capture != previous:
                    self._class_point(previous)
                previous = e.t_capture
                self._add(e.stream, e.student, previous, e.level, e.probs, {})
                if self.t_capture is None or e.t_capture >= self.t_capture:
                    self.t_capture, self.seq = e.t_capture, e.seq
            if previous is not None:
                self._class_point(previous)

    def apply_update(self, update: Update) -> None:
        """One update from the reporter (the pages' event is `snapshot(history=False)`, made only for a page)."""
        t_capture = update.t_capture
        with self.lock:
            if update.session != self.session:
                self._reset(update.session)
            if update.model != ModelInfo():  # an update that carries no model keeps the one known
                self.model = update.model
            self.totals = update.totals.carried_forward(self.totals)  # its own stream's totals: the others kept
            self.seq, self.t_capture, self.ended = update.seq, t_capture, False
            self.stream = update.stream or self.stream
            self.streams.add(self.stream)
            for p in update.predictions:
                self._add(self.stream, p["student"], t_capture, p["level"], [float(x) for x in p["probs"]],
                          numeric_signals(p.get("signals")))
            self._class_point(t_capture)
            # Bounded memory over a long class: students long gone are forgotten here.
            for key in [k for k, st in self.students.items() if st.last_seen < t_capture - 2 * HISTORY_SECONDS]:
                del self.students[key]

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

    def _add(self, stream: str, sid: int, t: float, level: int, probs: list[float],
             signals: dict[str, float]) -> None:
        self._student(stream, sid).add(t, level, probs, signals)
        if not self.class_level_only:  # an alert names a student
            self.attention.observe(stream, sid, t, level)

    def _class_point(self, t: float) -> None:
        """The share of the students seen at `t` (within MAX_GAP_SECONDS) at each level."""
        if self.class_line and t - self.class_line[-1][0] < self.line_step:
            return
        counts = [0] * len(LEVEL_LABELS)
        for s in self.students.values():
            if abs(t - s.last_seen) <= MAX_GAP_SECONDS and 0 <= s.level < len(counts):
                counts[s.level] += 1
        total = sum(counts)
        if not total:
            return
        self.class_line.append([round(t, 3), *(n / total for n in counts)])
        if len(self.class_line) > CLASS_LINE_POINTS:
            self.class_line, self.line_step = self.class_line[::2], self.line_step * 2

    def set_tile_labels(self, session: str, labels: TileLabels) -> None:
        """The names read on the call tiles (from Redis, on this box); never in class-level mode."""
        with self.lock:
            if session == self.session and not self.class_level_only:
                self.tile_labels = dict(labels)

    def _name(self, stream: str, sid: int) -> str | None:
        """The display name: the roster's (by tile label or id), else the tile's own label."""
        if not (self.roster or self.tile_labels):
            return None
        return name_of(self.roster, stream, sid, self.tile_labels.get((stream, sid)))

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
        labels = self.model.labels or list(LEVEL_LABELS)
        totals = self.totals.as_map()
        out: dict[str, Any] = {
            "session": self.session, "seq": self.seq, "t_capture": self.t_capture, "ended": self.ended,
            "model": {"name": self.model.name, "baseline": self.model.baseline,
                      "labels": labels},
            "note": BASELINE_NOTE if self.model.baseline else "",
            "class_level_only": self.class_level_only, "totals": totals, "students": [],
            "streams": sorted(self.streams),
            "stream_ends": dict(self.stream_ends), "attention_alert_seconds": self.alert_seconds, "alerts": [],
        }
        # The class line names nobody: class level only too.
        out["class_line" if history else "class_point"] = (
            self.class_line if history else (self.class_line[-1] if self.class_line else None))
        if len(self.streams) > 1:  # several streams: each one's running totals (class level only too)
            # The maps converted with the session's above, not once more each (a class of 30 webcams)
            per_stream = totals.get("streams") or {}
            out["stream_totals"] = {st: per_stream.get(st) or no_totals().as_map() for st in sorted(self.streams)}
        if self.class_level_only:
            return out
        for key in sorted(self.students):
            s = self.students[key]
            if self.t_capture is not None and s.last_seen < self.t_capture - HISTORY_SECONDS:
                continue  # gone for longer than the charts show: no card (the report keeps them)
            row = s.summary()
            name = self._name(s.stream, s.id)
            if name:
                row["name"] = name
            if history:
                row["history"] = [[round(t, 3), level] for t, level, _ in s.history]
            out["students"].append(row)
        last_seen = {key: s.last_seen for key, s in self.students.items()}
        out["alerts"] = [alert_row(a, self._name(a.stream, a.student))
                         for a in self.attention.current(last_seen, self.t_capture)]
        return out

    def alerts(self) -> dict[str, Any]:
        """Every alert of the live session, open (`end` null) and ended, in the order raised."""
        with self.lock:
            rows = [] if self.class_level_only else [alert_row(a, self._name(a.stream, a.student))
                                                     for a in self.attention.log]
            return {"session": self.session, "attention_alert_seconds": self.alert_seconds, "alerts": rows}

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


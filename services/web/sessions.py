"""Past sessions: the reporter's JSON reports in REPORT_DIR, read-only, and in the fallback
folder the reporter writes to when REPORT_DIR refuses a report (a full or read-only disk): a
class reported there is still a past class to the pages and the marks.

A session id from a URL names a file only when it is a plain id (letters, digits, `.-_`),
so no request can read outside the report folder.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client import Counter

from services.web.lean_report import load_for_pages
from shared.data.report_doc import Report, ReportHead, load_report_head

SESSION_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
UNREADABLE = Counter("engagement_web_unreadable_reports_total",
                     "Report files in REPORT_DIR left out of the pages: not a report (one per file version)")
log = logging.getLogger("web")


class Reports:
    def __init__(self, report_dir: str | Path, fallback_dir: str | Path | None = None) -> None:
        self.dir = Path(report_dir)
        # REPORT_DIR first: a report rewritten there once it could be written again is the one shown.
        self.dirs = [self.dir] + ([Path(fallback_dir)] if fallback_dir and Path(fallback_dir) != self.dir else [])
        self._summaries: dict[Path, tuple[float, dict[str, Any]]] = {}  # path -> (mtime, summary)
        # The last report read, by its file's version: a mark on a past session read it two or three
        # times (its level, where to keep it), 2.3 s each for an hour of a 7x7 gallery (51 MB).
        # With it, whether its timeline is lean (services/web/lean_report.py).
        self._last: tuple[tuple[Path, int, int], Report, bool] | None = None
        # One read at a time: the session page asks for the report, its lesson and its marks at once,
        # and each request read its own copy in FastAPI's thread pool.
        self._reading = threading.Lock()
        self._unreadable: dict[Path, float] = {}  # path -> mtime already said (one line a file version)

    def path(self, session: str) -> Path | None:
        if not SESSION_ID.match(session):
            return None
        for folder in self.dirs:
            path = folder / f"{session}.json"
            if path.is_file():
                return path
        return None

    def load(self, session: str) -> Report | None:
        """The session's report as the pages read it (a long class's timeline lean: LEAN_AFTER); None when
        there is none or its file is not a report."""
        path = self.path(session)
        loaded = None if path is None else self._load_file(path)
        return None if loaded is None else loaded[0]

    def is_lean(self, session: str) -> bool:
        """Whether the session's report, as `load` gives it, has lean timeline entries (no probabilities,
        box, confidence, signals or states: `timeline_entries` reads them whole)."""
        path = self.path(session)
        loaded = None if path is None else self._load_file(path)
        return loaded is not None and loaded[1]

    def _load_file(self, path: Path) -> tuple[Report, bool] | None:
        with self._reading:
            try:
                stat = path.stat()
                version = (path, stat.st_mtime_ns, stat.st_size)
                if self._last is not None and self._last[0] == version:
                    return self._last[1], self._last[2]
                self._last = None  # let the one held go before the next is read: one report in memory
                report, lean = load_for_pages(path)
            except (OSError, ValueError) as exc:  # ReportError and msgspec's DecodeError are ValueErrors
                self._say_unreadable(path, exc)
                return None
            self._last = (version, report, lean)
            return report, lean

    def _report_files(self) -> list[Path]:
        """Each session's file, the first folder's where two hold one."""
        found: dict[str, Path] = {}
        for folder in self.dirs:
            for path in folder.glob("*.json") if folder.is_dir() else []:
                if SESSION_ID.match(path.stem):
                    found.setdefault(path.stem, path)
        return list(found.values())

    def _say_unreadable(self, path: Path, exc: Exception) -> None:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = -1.0
        if self._unreadable.get(path) != mtime:
            self._unreadable[path] = mtime
            UNREADABLE.inc()
            log.warning("report %s left out: not a report (%s)", path, str(exc).splitlines()[0][:200])

    def list(self) -> list[dict[str, Any]]:
        """One summary per report, newest first (a summary is re-read only when its file changes)."""
        out = []
        for path in self._report_files():
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            cached = self._summaries.get(path)
            if cached is None or cached[0] != mtime:
                try:
                    head = load_report_head(path)
                except (OSError, ValueError) as exc:
                    self._say_unreadable(path, exc)
                    continue
                cached = (mtime, summarise(head))
                self._summaries[path] = cached
            out.append(cached[1])
        out.sort(key=lambda s: s.get("started") or 0, reverse=True)
        return out


def summarise(report: Report | ReportHead) -> dict[str, Any]:
    """The past sessions list's row of one report (/api/sessions)."""
    totals = report.totals
    return {"session": report.session, "class": report.class_, "started": report.started,
            "ended": report.ended, "model": report.model.name,
            "frames": totals.frames, "predictions": totals.predictions,
            "students": len(report.students), "class_level_only": report.class_level_only,
            "streams": [st.stream for st in report.streams]}


def class_level(report: Report) -> Report:
    """The report without anything per student (the web's CLASS_LEVEL_ONLY / EU_AI_ACT_MODE)."""
    streams = [msgspec.structs.replace(st, students=[], episodes=[]) for st in report.streams]  # totals stay
    return msgspec.structs.replace(report, students=[], timeline=[], episodes=[], marks=[], class_level_only=True,
                                   streams=streams)


def prediction_at(report: Report, stream: str, student: int, t: float, max_gap: float) -> int | None:
    """The report's level for (stream, student) nearest to capture time `t` (a mark on the session
    page); without a stream (a one-stream class) that id in any stream."""
    best = min((e for e in report.timeline if e.student == student and (not stream or e.stream == stream)),
               key=lambda e: abs(e.t_capture - t), default=None)
    if best is None or abs(best.t_capture - t) > max_gap:
        return None
    return best.level

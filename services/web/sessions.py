"""Past sessions: the reporter's JSON reports in REPORT_DIR, read-only.

A session id from a URL names a file only when it is a plain id (letters, digits, `.-_`),
so no request can read outside the report folder.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

SESSION_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")


class Reports:
    def __init__(self, report_dir: str | Path) -> None:
        self.dir = Path(report_dir)
        self._summaries: dict[Path, tuple[float, dict[str, Any]]] = {}  # path -> (mtime, summary)

    def path(self, session: str) -> Path | None:
        if not SESSION_ID.match(session):
            return None
        path = self.dir / f"{session}.json"
        return path if path.is_file() else None

    def load(self, session: str) -> dict[str, Any] | None:
        path = self.path(session)
        if path is None:
            return None
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return report if isinstance(report, dict) else None

    def list(self) -> list[dict[str, Any]]:
        """One summary per report, newest first (a summary is re-read only when its file changes)."""
        out = []
        for path in self.dir.glob("*.json") if self.dir.is_dir() else []:
            session = path.stem
            if not SESSION_ID.match(session):
                continue
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue
            cached = self._summaries.get(path)
            if cached is None or cached[0] != mtime:
                report = self.load(session)
                if report is None:
                    continue
                cached = (mtime, summarise(report))
                self._summaries[path] = cached
            out.append(cached[1])
        out.sort(key=lambda s: s.get("started") or 0, reverse=True)
        return out


def summarise(report: dict[str, Any]) -> dict[str, Any]:
    totals = report.get("totals") or {}
    return {"session": report.get("session"), "class": report.get("class"), "started": report.get("started"),
            "ended": report.get("ended"), "model": (report.get("model") or {}).get("name", ""),
            "frames": totals.get("frames", 0), "predictions": totals.get("predictions", 0),
            "students": len(report.get("students") or []), "class_level_only": bool(report.get("class_level_only")),
            "streams": [st["stream"] for st in report.get("streams") or []]}


def class_level(report: dict[str, Any]) -> dict[str, Any]:
    """The report without anything per student (the web's CLASS_LEVEL_ONLY / EU_AI_ACT_MODE)."""
    streams = [{**st, "students": [], "episodes": []} for st in report.get("streams") or []]  # totals stay
    return {**report, "students": [], "timeline": [], "episodes": [], "marks": [], "class_level_only": True,
            **({"streams": streams} if "streams" in report else {})}


def report_csv(report: dict[str, Any]) -> str:
    """The report's timeline as CSV: one row per prediction (per frame when class-level only).

    To be replaced by shared/report_export.report_csv (issue 12) once it lands.
    """
    buf = io.StringIO()
    w = csv.writer(buf)
    session = report.get("session", "")
    if report.get("timeline"):
        w.writerow(["session", "student", "stream", "seq", "t_capture", "t_media", "level", "p0", "p1", "p2", "p3"])
        for e in report["timeline"]:
            w.writerow([session, e["student"], e["stream"], e["seq"], e["t_capture"], e["t_media"], e["level"],
                        *e["probs"]])
    else:
        w.writerow(["session", "stream", "seq", "t_capture", "t_media", "level0", "level1", "level2", "level3"])
        for r in report.get("class_timeline") or []:
            w.writerow([session, r["stream"], r["seq"], r["t_capture"], r["t_media"], *r["levels"]])
    return buf.getvalue()


def prediction_at(report: dict[str, Any], stream: str, student: int, t: float, max_gap: float) -> int | None:
    """The report's level for (stream, student) nearest to capture time `t` (a mark on the session
    page); without a stream (a one-stream class) that id in any stream."""
    best = min((e for e in report.get("timeline") or []
                if e["student"] == student and (not stream or e["stream"] == stream)),
               key=lambda e: abs(e["t_capture"] - t), default=None)
    if best is None or abs(best["t_capture"] - t) > max_gap:
        return None
    return int(best["level"])

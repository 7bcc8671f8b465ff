"""A whole report as its file holds it (a dict), for tests that build one part by hand.

Readers take the typed Report (shared/data/report_doc.py), which has every section; a test that
cares about one (the timeline, the marks) puts its own into a real report file's and converts it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

MODEL = {"name": "attention-baseline", "kind": "frame", "baseline": True}  # the default model's
BASE = Path(__file__).parents[1] / "shared" / "data" / "reports" / "one-stream-named.json"


def report_dict(**parts: Any) -> dict[str, Any]:
    """A real report file's document with `parts` (top-level keys) put in its place."""
    doc: dict[str, Any] = json.loads(BASE.read_text(encoding="utf-8"))
    return {**doc, **parts}


def write_built_report(folder: Path, session: str, *, students: int = 2, frames: int = 20,
                       started: float = 1_700_000_000.0, level_every: int = 1,
                       class_level_only: bool = False) -> dict[str, Any]:
    """A report the reporter's own build_report made, written as its file: one stream (cam0) of class c1,
    `students` faces in every one of `frames` frames at 2 FPS, each student's level turning every
    `level_every` frames. Returns the file's document."""
    from services.reporter.report import build_report  # noqa: PLC0415 (a reporter's report, as the web reads it)
    from shared.data.report_doc import to_dict  # noqa: PLC0415

    everyone = range(1, students + 1)
    timeline = [{"stream": "cam0", "seq": i, "student": s, "level": (i // level_every + s) % 4, "probs": [0.25] * 4,
                 "t_capture": started + i * 0.5, "t_media": i * 0.5} for i in range(frames) for s in everyone]
    last = (frames - 1) * 0.5
    data = {"meta": {"session": session, "class": "c1", "stream": "cam0", "started": started,
                     "ended": started + frames * 0.5, "end_reason": "end_of_file", "model": MODEL},
            "totals": {"frames": frames, "frames_without_faces": 0, "faces": frames * students,
                       "predictions": frames * students, "levels": {str(i): frames * students // 4 for i in range(4)}},
            "students": [{"student": s, "predictions": frames, "levels": {str(i): frames // 4 for i in range(4)},
                          "first_seen": started, "last_seen": started + last, "first_media": 0.0, "last_media": last}
                         for s in everyone],
            "timeline": timeline}
    report = to_dict(build_report(data, class_level_only, time.time()))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{session}.json").write_text(json.dumps(report))
    return report

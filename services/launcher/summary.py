"""The end of a run: where the session's report was written (the asked folder or the fallback)
and the summary printed after it (frames, speed, the streams that failed, the recording)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared.config import report_fallback_dir


def find_report(values: dict[str, Any], session: str) -> tuple[Path, Path] | None:
    """The session's report, where it was asked for or in the fallback folder."""
    for folder in (Path(values["report_dir"]), report_fallback_dir(values.get("report_fallback_dir", ""))):
        txt, js = folder / f"{session}.txt", folder / f"{session}.json"
        if txt.exists() and js.exists():
            return txt, js
    return None


def print_summary(js: Path, elapsed: float, failed_streams: list[str] | None = None,
                  crashed: set[str] | None = None) -> None:
    """Frames and speed of the session, each failed stream and why, the recording; nothing when the
    report cannot be read (its paths are printed anyway)."""
    try:
        report = json.loads(js.read_text())
        frames = report.get("totals", {}).get("frames", 0)
        print(f"session {report.get('session')}: {frames} frames in {elapsed:.1f} s "
              f"({frames / elapsed:.2f} frames/s including start-up)")
        for stream in failed_streams or []:
            reason = _stream_end_reason(report, stream)
            why = "its capture crashed" if stream in (crashed or set()) else "its source could not be read"
            print(f"stream {stream} failed: {why}" + (f" ({reason})" if reason else "") + "; the other streams went on")
        if report.get("recording"):
            print(f"recording: {report['recording']}")
    except (OSError, ValueError, AttributeError):
        pass


def _stream_end_reason(report: dict[str, Any], stream: str) -> str:
    """The end reason the report recorded for `stream` (its per-stream section), if any."""
    streams = report.get("streams")
    entry = streams.get(stream) if isinstance(streams, dict) else next(
        (s for s in streams if isinstance(s, dict) and s.get("stream") == stream), None) if isinstance(
        streams, list) else None
    if isinstance(entry, dict):
        end = entry.get("end")
        return str(entry.get("end_reason") or entry.get("reason") or (end.get("reason") if isinstance(end, dict)
                                                                       else "") or "")
    return ""

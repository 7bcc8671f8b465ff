"""Times as a person reads them: a moment of the class as mm:ss, a wall-clock time in UTC.

One place, so the text report, the HTML report, the demo's grade and the pages say a moment
the same way ("01:05.5", never "65.5" in one file and "00:01:05.5" in another).
"""

from __future__ import annotations

from datetime import datetime, timezone


def offset_clock(seconds: float | None) -> str:
    """Seconds into the class as mm:ss.s (h:mm:ss.s from an hour on); "-" when unknown.

    Tenths stay: at 2 FPS two predictions half a second apart are different moments.
    """
    if seconds is None:
        return "-"
    tenths = round(max(0.0, float(seconds)) * 10)  # rounded once, so 59.96 reads 01:00.0, not 00:60.0
    minutes, tenths_left = divmod(tenths, 600)
    hours, minutes = divmod(minutes, 60)
    secs = f"{tenths_left // 10:02d}.{tenths_left % 10}"
    return f"{hours}:{minutes:02d}:{secs}" if hours else f"{minutes:02d}:{secs}"


def wall_clock(t: float | None) -> str:
    """Epoch seconds as "YYYY-MM-DD HH:MM:SS UTC"; "-" when unknown."""
    return "-" if t is None else datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds_into(t_capture: float | None, t_media: float | None, started: float | None) -> float | None:
    """Where a moment is in the class: media time for files, else capture time minus the start."""
    if t_media is not None:
        return float(t_media)
    if t_capture is not None and started is not None:
        return float(t_capture) - float(started)
    return None
